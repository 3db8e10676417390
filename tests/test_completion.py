"""Shell completion of `git exp …`, through the shells' own git completion: bash's
(git's `git-completion.bash`, which calls `_git_exp`) and zsh's (zsh's `_git`, which calls
`_git-exp`), typed into a real interactive zsh over a pty."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import exp, git
from tests.services._util import require_binaries

GIT_BASH = "/usr/share/bash-completion/completions/git"
RUN = "train-1201-1400-k7qx"

BASH = r"""
source "$GIT_BASH"
source "$SCRIPT"
COMP_LINE=$1 COMP_POINT=${#1}
read -ra COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMPREPLY=()
$2
printf '%s\n' "${COMPREPLY[@]}"
"""

# An interactive zsh on a pty (zsh/zpty): type the line and a TAB, read the screen until the
# expected text shows (or 60 s), print it without the terminal's escape sequences.
ZSH = r"""
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z "PS1='> '; autoload -Uz compinit; compinit -u -D; source ${(q)3}"
zpty -w z 'print READY''READY'
zpty -r z line '*READYREADY*'
zpty -n -w z "$1"$'\t'
out= ; deadline=$((SECONDS + 60))
while (( SECONDS < deadline )) && [[ $out != *$2* ]]; do
    zpty -rt z chunk && out+=$chunk || sleep 0.1
done
zpty -d z
print -r -- ${out//$'\e'\[[0-9;?]#[a-zA-Z]/}
"""


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The scripts as `git exp completion SHELL` prints them (once: each is a Python start)."""
    out = tmp_path_factory.mktemp("completion")
    for shell in ("bash", "zsh"):
        (out / shell).write_text(exp("completion", shell, cwd=out).stdout)
    return {shell: out / shell for shell in ("bash", "zsh")}


@pytest.fixture
def runs_repo(repo: Path) -> Path:
    git("update-ref", f"refs/experiments/{RUN}", "HEAD", cwd=repo)
    # a ref anyone could push: a valid ref name that is no run id is never offered
    git("update-ref", "refs/experiments/Evil-Name", "HEAD", cwd=repo)
    git("remote", "add", "team", "https://example.invalid/x.git", cwd=repo)
    return repo


def bash_complete(scripts: dict[str, Path], repo: Path, line: str,
                  function: str = "__git_wrap__git_main") -> list[str]:
    require_binaries("bash completion of git", GIT_BASH)
    proc = subprocess.run(["bash", "-c", BASH, "bash", line, function], cwd=repo, check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "GIT_BASH": GIT_BASH, "SCRIPT": str(scripts["bash"])})
    return proc.stdout.split()


def zsh_screen(scripts: dict[str, Path], repo: Path, line: str, expect: str) -> str:
    require_binaries("zsh", "zsh")
    proc = subprocess.run(["zsh", "-f", "-c", ZSH, "zsh", line, expect, str(scripts["zsh"])],
                          cwd=repo, check=True, capture_output=True, text=True, timeout=90)
    return proc.stdout


def test_bash_completes_verbs_options_run_ids_and_remotes(scripts: dict[str, Path],
                                                         runs_repo: Path) -> None:
    def complete(line: str, function: str = "__git_wrap__git_main") -> list[str]:
        return bash_complete(scripts, runs_repo, line, function)

    assert complete("git exp l") == ["logs", "ls"]
    assert "--sort" in complete("git exp ls --so")
    assert complete("git exp show tr") == [RUN]
    assert complete("git -C . exp diff ") == [RUN]  # git's own options before `exp`
    assert complete("git exp push ") == ["team", RUN]
    assert complete("git exp hooks ") == ["install", "uninstall", "status"]
    assert complete("gitexp sh", "_gitexp") == ["show"]


def test_forged_ref_names_are_never_offered(scripts: dict[str, Path], runs_repo: Path) -> None:
    assert bash_complete(scripts, runs_repo, "git exp show ") == [RUN]  # not Evil-Name
    assert bash_complete(scripts, runs_repo, "git exp show E") == []


def test_zsh_completes_git_exp_through_zshs_own_git_completion(scripts: dict[str, Path],
                                                              runs_repo: Path) -> None:
    screen = zsh_screen(scripts, runs_repo, "git exp l", "List runs")
    assert "logs" in screen and "List runs" in screen  # the two verbs, with their help
    assert f"git exp show {RUN}" in zsh_screen(scripts, runs_repo, "git exp show tr", RUN)


def test_an_unknown_shell_is_one_line_with_a_hint(repo: Path) -> None:
    proc = exp("completion", "fish", cwd=repo, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: no completion for 'fish'",
        "hint: `git exp completion bash` or `git exp completion zsh`"]

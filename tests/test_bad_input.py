"""Bad input of every kind: one clear line (plus a hint), a non-zero exit, no traceback, and
nothing half-made. Repositories in odd states (empty, detached, mid-merge, shallow, with
submodules) still run, and what a run receives is exactly what was typed.

tests/test_cli_errors.py has the first cases for the core; these extend them (see `KINDS` at
the end of this file for the list)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitexp.cli import main
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.model.record import decode_run
from gitexp.service.launch import LaunchRequest, record_runs
from tests.conftest import make_repo, use_home
from tests.helpers import (
    assert_user_error,
    copy_repo,
    exp,
    exp_json,
    git,
    seal_key,
    wait_done,
)

COMMANDS = [
    ["run", "--", "true"], ["ls"], ["show", "x"], ["logs", "x"], ["cancel", "x"],
    ["diff", "x"], ["rerun", "x"], ["checkout", "x"], ["rm", "x"], ["gc", "--failed"],
    ["outputs", "x"], ["targets"], ["image", "build"], ["plot", "x"], ["report"],
    ["watch", "--until-idle"], ["hooks", "status"], ["push"], ["fetch"],
]
ARGV_SCRIPT = "import json, sys\nprint('ARGV=' + json.dumps(sys.argv[1:]))\n"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`git exp ARGS` in this process, through the same `main` the executable calls: for
    the many one-line refusals, where a new Python per case would only cost time. Cases
    where the process itself matters (signals, stdout, git's dispatch) run `exp`."""
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(["git", "exp", *args], code, out.getvalue(),
                                       err.getvalue())


def refuses(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user error: exit 1 exactly (not a usage error, not a crash), one line, no traceback."""
    assert_user_error(proc, *needles)
    assert proc.returncode == 1, proc


def run_refs(repo: Path) -> str:
    return git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=repo)


def run_id(repo: Path, name: str) -> str:
    return exp("run", "-d", "-n", name, "--force", "--", "true", cwd=repo).stdout.strip()


@pytest.fixture(scope="module")
def _good_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A repository with one finished run `good`, launched and waited for once per module;
    and the seal key it was launched with."""
    root = tmp_path_factory.mktemp("good")
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, root)
        repo = make_repo(root / "repo")
        good = run_id(repo, "good")
        assert wait_done(good, repo)["status"] == "succeeded"
        return repo, seal_key(repo), good


@pytest.fixture
def good_run(_good_template: tuple[Path, Path, str], tmp_path: Path) -> tuple[Path, str]:
    """This test's copy of the module's repository with its finished run `good`, the user's
    own as if launched here."""
    template, key, good = _good_template
    repo = copy_repo(template, tmp_path / "repo", key)
    assert json.loads(cli("show", good, "--json", cwd=repo).stdout)["own"] is True
    return repo, good


def forge(repo: Path, ref: str, message: str) -> str:
    """Point `ref` at a commit (of HEAD's tree) carrying `message`: a hand-made run record."""
    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    commit = git("commit-tree", tree, cwd=repo, input=message.encode()).strip()
    git("update-ref", ref, commit, cwd=repo)
    return commit


def record_json(run: str, **changes: object) -> str:
    record = {"id": run, "argv": ["true"], "cwd": "", "base": None, "branch": None,
              "user": "u", "launched_at": 1.0, "target": "local", "backend": "local",
              "store": "file:///nowhere", "env": {"python": "3", "platform": "p"}}
    record.update(changes)
    return json.dumps(record)


# -- repositories in odd states ---------------------------------------------------------------
def test_every_command_outside_a_repository(tmp_path: Path):
    refuses(exp("ls", cwd=tmp_path, check=False), "not a git repository", str(tmp_path))
    for args in COMMANDS:
        refuses(cli(*args, cwd=tmp_path), "not a git repository", str(tmp_path))


def test_every_command_in_a_repository_without_work_tree_or_inside_git_dir(tmp_path: Path):
    central = tmp_path / "central.git"
    git("init", "-q", "--bare", str(central), cwd=tmp_path)
    refuses(exp("run", "--", "true", cwd=central, check=False), "is a bare repository")
    for args in COMMANDS:
        refuses(cli(*args, cwd=central), "is a bare repository", "clone it")
    repo = make_repo(tmp_path / "r")
    for where in (repo / ".git", repo / ".git" / "refs"):
        refuses(exp("run", "--", "true", cwd=where, check=False), "inside .git", "work tree")
    for args in COMMANDS:
        refuses(cli(*args, cwd=repo / ".git"), "cannot run from inside .git")


def test_empty_repository_runs_and_diff_says_there_is_no_base(tmp_path: Path):
    repo = make_repo(tmp_path / "r", {"a.py": "print(1)\n"}, commit=False)
    assert exp("ls", cwd=repo).stderr.startswith("no runs yet")
    proc = exp("run", "-n", "first", "--", sys.executable, "a.py", cwd=repo)
    assert "1" in proc.stdout
    shown = exp_json("show", "first", cwd=repo)
    assert shown["status"] == "succeeded" and shown["record"]["base"] is None
    diff = exp("diff", "first", cwd=repo).stdout
    assert "(no commits)" in diff and "a.py" in diff
    assert "(no commits)" in exp("show", "first", cwd=repo).stdout
    assert git("rev-parse", "-q", "--verify", "HEAD", cwd=repo, check=False) == ""


def test_diff_against_a_base_commit_this_repository_lacks(repo: Path):
    """A run fetched from a teammate whose base commit never arrived here."""
    forge(repo, "refs/experiments/theirs-1", "t\n\n" + json.dumps(
        {"schema": 1, "record": json.loads(record_json("theirs-1", base="ab" * 20)),
         "result": {"status": "succeeded"}}))
    refuses(cli("diff", "theirs-1", cwd=repo), "base commit abababababab", "not in this "
            "repository", "git fetch")


def test_detached_head_runs_and_records_no_branch(repo: Path):
    (repo / "README.md").write_text("two\n")
    git("commit", "-qam", "two", cwd=repo)
    git("checkout", "-q", "--detach", "HEAD~1", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    exp("run", "-n", "det", "--", "true", cwd=repo)
    record = exp_json("show", "det", cwd=repo)["record"]
    assert record["branch"] is None and record["base"] == head
    assert git("rev-parse", "HEAD", cwd=repo).strip() == head  # still detached, unmoved


def _conflict(repo: Path, how: str) -> None:
    (repo / "f.txt").write_text("base\n")
    git("add", "f.txt", cwd=repo)
    git("commit", "-qm", "base", cwd=repo)
    git("checkout", "-q", "-b", "side", cwd=repo)
    (repo / "f.txt").write_text("side\n")
    git("commit", "-qam", "side", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    (repo / "f.txt").write_text("main\n")
    git("commit", "-qam", "main", cwd=repo)
    if how == "merge":
        git("merge", "side", cwd=repo, check=False)
    else:
        git("checkout", "-q", "side", cwd=repo)
        git("rebase", "main", cwd=repo, check=False)


@pytest.mark.parametrize("how", ["merge", "rebase"])
def test_mid_merge_or_rebase_runs_the_conflicted_files_and_leaves_the_conflict(repo: Path,
                                                                              how: str):
    """The choice: a run in the middle of a conflict snapshots the files as they are on disk
    (markers and all; the conflicted index entries are resolved only in the private index)
    and the user's merge/rebase state is left exactly as it was."""
    _conflict(repo, how)
    unmerged = git("ls-files", "-u", cwd=repo)
    assert unmerged  # the conflict is real
    state = "MERGE_HEAD" if how == "merge" else "rebase-merge"
    assert (repo / ".git" / state).exists()
    index = (repo / ".git" / "index").read_bytes()
    out = exp("run", "-n", how, "--", "cat", "f.txt", cwd=repo).stdout
    assert "<<<<<<<" in out and ">>>>>>>" in out
    assert git("ls-files", "-u", cwd=repo) == unmerged
    assert (repo / ".git" / "index").read_bytes() == index
    assert (repo / ".git" / state).exists()


def test_shallow_clone_runs_locally_and_ships_its_snapshot_to_a_store(tmp_path: Path):
    from gitexp.stores import transport
    from gitexp.stores.file import FileStore
    from gitexp.worker import workspace

    origin = make_repo(tmp_path / "origin", {"train.py": "v1\n"})
    (origin / "train.py").write_text("v2\n")
    git("commit", "-qam", "v2", cwd=origin)
    clone = tmp_path / "clone"
    git("clone", "-q", "--depth", "1", f"file://{origin}", str(clone), cwd=tmp_path)
    assert (clone / ".git" / "shallow").exists()
    (clone / "train.py").write_text("v3 uncommitted\n")
    assert exp("run", "-n", "sh", "--", "cat", "train.py", cwd=clone).stdout == "v3 uncommitted\n"
    snap = exp_json("show", "sh", cwd=clone)["snapshot"]
    # The same snapshot through a store, as a remote worker gets it: no history needed.
    store = FileStore(tmp_path / "store")
    assert transport.push_code(Repo.discover(clone), store, snap) > 0
    source = transport.fetch_code(store.url, snap, tmp_path / "cache")
    checkout = workspace.checkout(source, snap, tmp_path / "work")
    assert (checkout / "train.py").read_text() == "v3 uncommitted\n"


def _with_submodule(tmp_path: Path) -> tuple[Path, str]:
    sub = make_repo(tmp_path / "lib", {"lib.txt": "lib\n"})
    repo = make_repo(tmp_path / "r")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "lib",
        cwd=repo)
    git("commit", "-qm", "add lib", cwd=repo)
    return repo, git("rev-parse", "HEAD", cwd=sub).strip()


def test_a_submodule_is_recorded_by_its_commit_and_a_dirty_one_stops_the_launch(
        tmp_path: Path):
    repo, sub_head = _with_submodule(tmp_path)
    run = exp("run", "-d", "-n", "clean", "--", "true", cwd=repo).stdout.strip()
    snap = wait_done(run, repo)["snapshot"]
    assert git("ls-tree", snap, "lib", cwd=repo).split()[:3] == ["160000", "commit", sub_head]
    (repo / "lib" / "lib.txt").write_text("edited inside the submodule\n")
    refuses(exp("run", "--force", "--", "true", cwd=repo, check=False),
            "submodule lib has uncommitted changes", "git -C lib status")
    git("checkout", "--", "lib.txt", cwd=repo / "lib")
    (repo / "lib" / "new.txt").write_text("untracked inside\n")
    refuses(exp("run", "--force", "--", "true", cwd=repo, check=False), "submodule lib")
    assert run_refs(repo).strip() == f"refs/experiments/{run}"  # the refusals made nothing


def test_a_git_repository_inside_the_work_tree_stops_the_launch(repo: Path):
    """Like a submodule, but not declared: `git add -A` would record a bare gitlink and the
    job would find an empty directory."""
    make_repo(repo / "vendored", {"lib.py": "x = 1\n"})
    refuses(cli("run", "--", "true", cwd=repo), "vendored is a git repository inside the work "
            "tree", "submodule")
    (repo / ".gitignore").write_text("vendored/\n")
    exp("run", "-n", "ignored", "--", "true", cwd=repo)  # ignored: not part of the run


# -- unknown things ---------------------------------------------------------------------------
def test_unknown_run(repo: Path):
    for args in (["diff", "nope"], ["rerun", "nope"], ["checkout", "nope"], ["rm", "nope"],
                 ["outputs", "nope"], ["plot", "nope"], ["report", "nope"],
                 ["push", ".", "nope"], ["rm", "../heads/main"], ["diff", "a", "b"]):
        refuses(cli(*args, cwd=repo), "no run matches", "git exp ls")
    assert git("rev-parse", "-q", "--verify", "refs/heads/main", cwd=repo, check=False)


def test_unknown_targets_backends_and_store_schemes(repo: Path):
    run = run_id(repo, "base")
    wait_done(run, repo)
    refuses(exp("rerun", run, "-t", "nowhere", cwd=repo, check=False), "unknown target")
    refuses(cli("image", "build", "-t", "nowhere", cwd=repo), "unknown target")
    git("config", "exp.target.odd.backend", "teleport", cwd=repo)
    refuses(cli("run", "-t", "odd", "--", "true", cwd=repo), "backend 'teleport'",
            "one of: local")
    git("config", "exp.target.far.backend", "slurm", cwd=repo)
    for url, needle in [("ftp://host/path", "unknown store"), ("gs:///", "not a GCS store"),
                        ("file://relative/path", "not a local store")]:
        git("config", "exp.target.far.store", url, cwd=repo)
        refuses(cli("run", "-t", "far", "--force", "--", "true", cwd=repo), needle)
    assert run_refs(repo).strip() == f"refs/experiments/{run}"


def test_malformed_shared_config_for_other_commands(repo: Path):
    (repo / ".gitexp").mkdir()
    (repo / ".gitexp" / "config").write_text('[exp "target.a"\n\tbackend = ssh\n')
    for args in (["run", "--", "true"], ["targets"], ["show", "x"], ["gc", "--failed"]):
        refuses(cli(*args, cwd=repo), ".gitexp/config")


def test_a_bad_heartbeat_setting_stops_the_launch_before_any_run_exists(repo: Path):
    for value in ("abc", "-1", "nan", "inf"):
        git("config", "exp.heartbeat", value, cwd=repo)
        refuses(cli("run", "--", "true", cwd=repo), "exp.heartbeat")
    assert run_refs(repo) == ""  # no run left behind as "queued"


# -- invalid names, expressions and option values ------------------------------------------------
def test_an_empty_command_word(repo: Path):
    refuses(cli("run", "--", "", "arg", cwd=repo), "no command given")


INVALID_NAMES = ["a/b", "..", "a..b", "with space", "UPPER", "x" * 100, "-lead", "trail-", "",
                 "ünï", "$(id)", "a;b", "refs/heads/main", "a\nb"]


def test_invalid_run_names(repo: Path):
    refuses(exp("run", "-n", "a/b", "--", "true", cwd=repo, check=False), "invalid run name")
    for name in INVALID_NAMES:
        refuses(cli("run", "-n", name, "--", "true", cwd=repo), "invalid run name")
    assert run_refs(repo) == ""


BAD_WHERE = [
    ("(lr<1", "ends too early"),
    ("lr<1)", "unexpected ')'"),
    ("lr ~ 1", "unexpected '~'"),
    ("lr <> 1", "expected a value"),
    ("lr << 1", "expected a value"),
    ("__import__('os').system('touch pwned')", "bad --where"),
    ("lr<1 and", "ends too early"),
    ("lr", "expected a comparison"),
    ("lr < 1 or or x<2", "expected a name"),
    ("status == 'unterminated", "unexpected"),
    ("a=1 b=2", "unexpected 'b'"),
    ("(" * 5000 + "lr<1" + ")" * 5000, "nested more than"),
    ("not " * 5000 + "lr<1", "nested more than"),
    ("lr<1; rm -rf /", "unexpected ';'"),
    ("lr<`id`", "unexpected '`'"),
]


def test_invalid_where_expressions(repo: Path):
    refuses(exp("ls", "--where", "(lr<1", cwd=repo, check=False), "bad --where expression")
    for expr, needle in BAD_WHERE:
        proc = cli("ls", "--where", expr, cwd=repo)
        refuses(proc, "bad --where expression", needle)
        assert len(proc.stderr) < 1000  # a 10,000-character expression is not echoed whole
    assert not (repo / "pwned").exists()


def test_a_long_flat_where_expression_is_fine(repo: Path):
    exp("run", "-n", "one", "--", "true", cwd=repo)
    expr = " or ".join(["exit_code<0"] * 3000) + " or status==succeeded"
    assert "one-" in exp("ls", "--where", expr, cwd=repo).stdout


# Out-of-range numbers are usage errors (exit 2): tests/test_knobs.py.
BAD_OPTIONS = [
    (["ls", "--sort", "1abc"], "cannot sort by"),
    (["ls", "--sort", "lr;rm"], "cannot sort by"),
    (["ls", "--columns", "run,$(id)"], "cannot show column '$(id)'"),
    (["ls", "--columns", "run,a b"], "cannot show column"),
    (["ls", "--status", "sucess"], "unknown status 'sucess'"),
    (["gc", "--keep-best", "lr;x", "3"], "cannot sort by"),
    (["gc"], "gc needs at least one of"),
]


def test_invalid_option_values(repo: Path):
    exp("run", "-n", "keep", "--", "true", cwd=repo)  # gc must not touch it
    for args, needle in BAD_OPTIONS:
        refuses(cli(*args, cwd=repo), needle)
    assert run_refs(repo).count("refs/experiments/keep-") == 1


def test_a_non_number_option_is_a_usage_error_without_traceback(repo: Path):
    for args in (["ls", "--limit", "abc"], ["watch", "--interval", "x"]):
        proc = exp(*args, cwd=repo, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "Invalid value" in proc.stderr


def test_an_unknown_option_of_run_is_refused_not_run_as_the_command(repo: Path):
    # `-q` is no option of run: it must not become the command, taking `-d` along with it
    proc = exp("run", "-q", "-d", "--", "true", cwd=repo, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "error: no such option of `git exp run`: -q",
        "hint: run's options come first, then `--` and the command (`git exp run -h` lists "
        "them)"]
    assert run_refs(repo) == ""


# -- commands are argv, exactly --------------------------------------------------------------
WEIRD_ARGV = ["a b", "'q'", '"dq"', "line1\nline2", "$(touch pwned1)", "`touch pwned2`",
              "x; touch pwned3", "*", "", "\\", "--", "-n", "$HOME", "|", "&&", "ünï ✓",
              "tab\there", "--where=x"]


def test_a_command_runs_exactly_as_given_and_reruns_the_same(repo: Path):
    (repo / "argv.py").write_text(ARGV_SCRIPT)
    proc = exp("run", "-n", "argv", "--", sys.executable, "argv.py", *WEIRD_ARGV, cwd=repo)
    got = json.loads(proc.stdout.split("ARGV=", 1)[1].splitlines()[0])
    assert got == WEIRD_ARGV
    shown = exp_json("show", "argv", cwd=repo)
    assert shown["record"]["argv"][2:] == WEIRD_ARGV
    again = exp("rerun", shown["id"], cwd=repo).stdout
    assert json.loads(again.split("ARGV=", 1)[1].splitlines()[0]) == WEIRD_ARGV
    assert not list(repo.glob("pwned*"))  # nothing was ever run through a shell
    shown = exp("show", shown["id"], cwd=repo).stdout + exp("ls", cwd=repo).stdout
    assert "line1\\nline2" in shown  # one line per run: the newline is shown escaped


def test_markup_and_terminal_escapes_in_a_command_are_shown_inert(repo: Path):
    """(The log itself is the job's own output: shown as it is, colours and all.)"""
    exp("run", "-n", "inert", "--", "echo", "[/]", "[red]x", "\x1b[2Jcleared", cwd=repo)
    for args in (["show", "inert"], ["ls"]):
        proc = exp(*args, cwd=repo)
        line = next(ln for ln in proc.stdout.splitlines() if "echo" in ln)
        assert "'[/]' '[red]x'" in line and "\\x1b[2J" in line and "\x1b" not in line


# -- odd files in the work tree -----------------------------------------------------------------
def test_non_utf8_file_names_are_snapshotted_byte_for_byte(repo: Path):
    name = b"bad-\xff\xfe-name.txt"
    with open(os.path.join(os.fsencode(repo), name), "wb") as f:
        f.write(b"payload")
    out = exp("run", "-n", "bytes", "--", sys.executable, "-c",
              "import os; print([n for n in os.listdir(b'.') if n.startswith(b'bad')])",
              cwd=repo).stdout
    assert repr(name) in out
    snap = exp_json("show", "bytes", cwd=repo)["snapshot"]
    tree = subprocess.run(["git", "ls-tree", "-z", "--name-only", snap], cwd=repo,
                          capture_output=True, check=True).stdout.split(b"\0")
    assert name in tree
    assert "bad-" in exp("diff", "bytes", cwd=repo).stdout
    assert (repo / os.fsdecode(name)).read_bytes() == b"payload"


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked-modified"])
def test_a_5gb_file_stops_the_launch_quickly_without_being_read(repo: Path, tracked: bool):
    big = repo / "data.bin"
    if tracked:
        big.write_bytes(b"small\n")
        git("add", "data.bin", cwd=repo)
        git("commit", "-qm", "data", cwd=repo)
    with big.open("r+b" if tracked else "wb") as f:  # sparse: no disk, instant
        f.truncate(5 * 1000**3)
    started = time.monotonic()
    refuses(exp("run", "--", "true", cwd=repo, check=False), "data.bin (5 GB)",
            "would go into the snapshot")
    assert time.monotonic() - started < 15  # hashing 5 GB would take minutes
    assert run_refs(repo) == ""
    counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=repo).splitlines())
    assert int(counts["size"]) + int(counts["size-pack"]) < 1024  # KiB: nothing was hashed


def test_symlinks_out_of_the_repo_are_snapshotted_as_links_never_followed(repo: Path,
                                                                           tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("OUTSIDE-CONTENT\n")
    (repo / "to-file").symlink_to(outside / "secret.txt")
    (repo / "to-dir").symlink_to(outside)
    (repo / "up").symlink_to("../..")
    exp("run", "-n", "links", "--", "true", cwd=repo)
    snap = exp_json("show", "links", cwd=repo)["snapshot"]
    entries = {line.split("\t")[1]: line.split()[:3]
               for line in git("ls-tree", "-r", snap, cwd=repo).splitlines()}
    for link, target in (("to-file", outside / "secret.txt"), ("to-dir", outside),
                         ("up", "../..")):
        assert entries[link][0] == "120000", entries
        assert git("cat-file", "blob", entries[link][2], cwd=repo) == str(target)
    assert not any(p.startswith(("to-dir/", "up/")) for p in entries)
    outside_blob = git("hash-object", "--stdin", cwd=repo, input=b"OUTSIDE-CONTENT\n").strip()
    assert subprocess.run(["git", "cat-file", "-e", outside_blob], cwd=repo,
                          check=False).returncode != 0


# -- corrupted runs and stores ------------------------------------------------------------------
def test_corrupted_records_are_named_by_ls_and_refused_by_show(good_run: tuple[Path, str]):
    repo, good = good_run
    forge(repo, "refs/experiments/garbage-1", "gitexp run garbage-1\n\n{\"record\": {garb")
    forge(repo, "refs/experiments/typed-1", "t\n\n" + json.dumps(
        {"schema": 1, "record": json.loads(record_json("typed-1", launched_at="yesterday"))}))
    forge(repo, "refs/experiments/metrics-1", "t\n\n" + json.dumps(
        {"schema": 1, "record": json.loads(record_json("metrics-1")),
         "result": {"status": "succeeded", "metrics": [1, 2]}}))
    forge(repo, "refs/experiments/future-1", "t\n\n" + json.dumps(
        {"schema": 99, "record": {}}))
    for proc in (exp("ls", cwd=repo), cli("ls", "--json", cwd=repo),
                 cli("ls", "--where", "status==succeeded", "--sort", "-launched_at", cwd=repo)):
        assert proc.returncode == 0 and good in proc.stdout, proc
        warning = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning")]
        assert len(warning) == 1 and "4 run(s) cannot be read" in warning[0], proc.stderr
    for bad in ("garbage-1", "typed-1", "metrics-1"):
        refuses(cli("show", bad, cwd=repo), "unreadable record", f"git exp rm {bad}")
    refuses(cli("show", "future-1", cwd=repo), "unreadable record")
    for args in (["report"], ["gc", "--failed", "-n"], ["diff", good]):
        assert cli(*args, cwd=repo).returncode == 0
    assert cli("rm", "garbage-1", "typed-1", cwd=repo).stdout.count("removed") == 2
    assert "2 run(s) cannot be read" in cli("ls", cwd=repo).stderr
    cli("rm", "metrics-1", "future-1", cwd=repo)
    assert "cannot be read" not in exp("ls", cwd=repo).stderr


# Each forgery is valid JSON of the right overall shape, wrong in one typed field: the type
# check must refuse it where the record is read, or `show`, `diff` and `rerun --script` crash
# far away (`variables.items()`), or a boolean passes for a number (JSON `true` is no 1).
FORGERIES = {
    "env-variables-list": ({"env": {"python": "3", "platform": "p", "variables": [1, 2]}}, {}),
    "env-python-number": ({"env": {"python": 3, "platform": "p"}}, {}),
    "env-packages-list": ({"env": {"python": "3", "platform": "p", "packages": ["x"]}}, {}),
    "exit-code-true": ({}, {"exit_code": True}),
    "started-at-true": ({}, {"started_at": True}),
    "launched-at-false": ({"launched_at": False}, {}),
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_mistyped_environment_or_boolean_number_is_refused_everywhere(
        good_run: tuple[Path, str], forgery: tuple[dict[str, object], dict[str, object]]):
    record_changes, result_changes = forgery
    message = "gitexp run forged-1\n\n" + json.dumps({
        "schema": 1, "record": json.loads(record_json("forged-1", **record_changes)),
        "result": {"status": "failed", "exit_code": 2, "metrics": {"loss": 1.0},
                   **result_changes}})
    with pytest.raises(GitexpError, match="corrupted"):
        decode_run(message, ref="refs/experiments/forged-1", commit="5" * 40, parents=["4" * 40])
    repo, good = good_run
    forge(repo, "refs/experiments/forged-1", message)
    for args in (["show", "forged-1"], ["show", "forged-1", "--json"], ["diff", good, "forged-1"],
                 ["diff", "forged-1"], ["rerun", "--script", "forged-1"]):
        refuses(cli(*args, cwd=repo), "unreadable record", "git exp rm forged-1")
    # and through git's dispatch, as a user types it
    refuses(exp("rerun", "forged-1", "--script", cwd=repo, check=False), "unreadable record")
    assert "1 run(s) cannot be read" in cli("ls", cwd=repo).stderr


def test_odd_but_well_typed_data_and_packages_are_refused_at_the_door(
        good_run: tuple[Path, str]):
    """Found by fuzzing `usable`: a data entry without a hash is fine, but a package-list id
    that is no object id (a NUL, an option) is refused by the decoder: one line, removable."""
    repo, good = good_run
    forge(repo, "refs/experiments/odd-1", "t\n\n" + json.dumps({
        "schema": 1, "record": json.loads(record_json(
            "odd-1", data={"d.csv": {"size": 3}},
            env={"python": "3", "platform": "p", "packages": "--batch\u0000x"})),
        "result": {"status": "succeeded", "exit_code": 0}}))
    for args in (["show", "odd-1"], ["diff", good, "odd-1"], ["diff", "odd-1", good],
                 ["rerun", "--script", "odd-1"]):
        proc = cli(*args, cwd=repo)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc
        assert "packages is not an object id" in proc.stderr, proc.stderr
    forge(repo, "refs/experiments/odd-1", "t\n\n" + json.dumps({  # no hash: still fine
        "schema": 1, "record": json.loads(record_json("odd-1", data={"d.csv": {"size": 3}})),
        "result": {"status": "succeeded", "exit_code": 0}}))
    for args in (["show", "odd-1"], ["diff", good, "odd-1"], ["diff", "odd-1", good]):
        proc = cli(*args, cwd=repo)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc
    script = cli("rerun", "--script", "--trust", "odd-1", cwd=repo)
    assert script.returncode == 0 and "dvc pull" not in script.stdout, script


def test_refs_with_invalid_ids_are_named_and_removable_but_rm_stays_in_its_namespace(
        good_run: tuple[Path, str]):
    repo, good = good_run
    commit = git("rev-parse", f"refs/experiments/{good}", cwd=repo).strip()
    for ref in ("refs/experiments/Upper_Case", "refs/experiments/nested/deep"):
        git("update-ref", ref, commit, cwd=repo)
    git("update-ref", f"refs/experiments/alias-of-{good[:4]}", commit, cwd=repo)
    proc = exp("ls", cwd=repo)
    assert proc.stdout.count(good) == 1  # the alias is not a second copy of the run
    assert "3 run(s) cannot be read" in proc.stderr and "Upper_Case" in proc.stderr
    out = cli("rm", "Upper_Case", "nested/deep", f"alias-of-{good[:4]}", cwd=repo).stdout
    assert out.count("removed") == 3
    assert run_refs(repo).split() == [f"refs/experiments/{good}"]  # the real run is kept
    assert exp_json("show", good, cwd=repo)["status"] == "succeeded"


def _recorded(repo: Path) -> tuple[str, str, Path]:
    """A run recorded (ref and store status) but never started: its store is ours to fake."""
    rec = record_runs(Repo.discover(repo), Config.load(Repo.discover(repo)),
                      [LaunchRequest(argv=["true"], cwd=repo, force=True)]).records[0]
    return rec.id, rec.snapshot, repo / ".git" / "gitexp" / "store" / "runs" / rec.id


def test_a_store_result_for_another_run_is_refused_not_written_back(repo: Path):
    run, _, store = _recorded(repo)
    (store / "log").write_text("FOREIGN LOG\n")
    (store / "result.json").write_text(json.dumps(
        {"status": "succeeded", "exit_code": 0, "metrics": {"acc": 0.99},
         "run": run, "snapshot": "f" * 40}))
    shown = exp_json("show", run, cwd=repo)
    assert shown["status"] == "lost" and shown["result"]["metrics"] == {}
    assert "holds a result for snapshot" in shown["result"]["error"]
    log = git("cat-file", "blob", f"refs/experiments/{run}:.gitexp-results/log.txt",
              cwd=repo, check=False)
    assert "FOREIGN" not in log
    other, _, store2 = _recorded(repo)
    (store2 / "result.json").write_text(json.dumps({"status": "succeeded", "run": "elsewhere"}))
    assert exp_json("show", other, cwd=repo)["status"] == "lost"


def test_a_matching_stamped_result_is_taken_and_real_runs_stamp_theirs(repo: Path):
    run, snap, store = _recorded(repo)
    (store / "result.json").write_text(json.dumps(
        {"status": "succeeded", "exit_code": 0, "run": run, "snapshot": snap}))
    assert exp_json("show", run, cwd=repo)["status"] == "succeeded"
    real = run_id(repo, "real")
    wait_done(real, repo)
    stamped = json.loads((repo / ".git/gitexp/store/runs" / real / "result.json").read_text())
    assert stamped["run"] == real
    assert stamped["snapshot"] == exp_json("show", real, cwd=repo)["snapshot"]


def test_garbled_store_files_never_crash_a_reader(repo: Path):
    run, _, store = _recorded(repo)
    (store / "status.json").write_text(json.dumps({"status": "bogus", "started": "noon",
                                                   "host": ["x"]}))
    (store / "heartbeat").write_text(json.dumps({"time": "now", "interval": -1}))
    (store / "handle.json").write_text("{not json")
    for args in (["ls"], ["show", run], ["logs", run]):
        assert "Traceback" not in exp(*args, cwd=repo).stderr
    assert exp_json("show", run, cwd=repo)["status"] == "queued"
    (store / "result.json").write_text(json.dumps({"status": "succeeded", "metrics": [1]}))
    shown = exp_json("show", run, cwd=repo)
    assert shown["status"] == "lost" and "result.json" in shown["result"]["error"]


def test_records_with_absurd_numbers_still_render(repo: Path):
    forge(repo, "refs/experiments/far-1", "t\n\n" + json.dumps(
        {"schema": 1, "record": json.loads(record_json("far-1", launched_at=1e300)),
         "result": {"status": "failed", "started_at": -1e308, "ended_at": 1e308,
                    "metrics": {"loss": float("nan")}}}))
    for args in (["ls"], ["show", "far-1"], ["report"]):
        proc = exp(*args, cwd=repo)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


# -- the machine's faults -------------------------------------------------------------------------
def test_state_directory_that_is_a_file(repo: Path):
    """As root, permissions stop nothing; a file where `.git/gitexp/` should be does."""
    run = run_id(repo, "before")
    wait_done(run, repo)
    state = repo / ".git" / "gitexp"
    os.rename(state, repo / ".git" / "gitexp-moved")
    state.write_text("not a directory\n")
    refuses(exp("run", "--", "true", cwd=repo, check=False), ".git/gitexp")
    assert run in exp("ls", cwd=repo).stdout  # git is the truth: runs are still listed
    assert exp_json("show", run, cwd=repo)["status"] == "succeeded"


def test_a_full_disk_is_one_line(repo: Path):
    """/dev/full: every write fails with ENOSPC, as on a full disk."""
    run = exp("run", "-d", "-n", "full", "--", "echo", "some output", cwd=repo).stdout.strip()
    wait_done(run, repo)
    for args in (["ls"], ["show", run, "--json"], ["logs", run], ["report", "-o", "/dev/full"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run(["git", "exp", *args], cwd=repo, stdout=full, text=True,
                                  stderr=subprocess.PIPE, check=False, timeout=60)
        refuses(subprocess.CompletedProcess(args, proc.returncode, "", proc.stderr),
                "no space left on device")
    # a half-written output is removed, but never what is not a regular file
    assert stat.S_ISCHR(Path("/dev/full").stat().st_mode)


def test_an_output_path_that_cannot_be_written(repo: Path):
    refuses(exp("report", "-o", str(repo / "no" / "such" / "dir" / "r.html"), cwd=repo,
                check=False), "No such file or directory", "no/such/dir/r.html")


def test_ctrl_c_exits_130_without_a_traceback(repo: Path):
    run = exp("run", "-d", "-n", "slow", "--", "sleep", "30", cwd=repo).stdout.strip()
    try:
        for args in (["watch", "--interval", "0.3"], ["logs", "-f", run]):
            proc = subprocess.Popen(["gitexp", *args], cwd=repo, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            time.sleep(1.5)  # past start-up, inside the loop
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 130, (args, out, err)
            assert "Traceback" not in err
    finally:
        exp("cancel", run, cwd=repo, check=False)
        wait_done(run, repo)


# -- remotes and branches --------------------------------------------------------------------------
def test_push_and_fetch_to_a_missing_remote_say_why(repo: Path, tmp_path: Path):
    missing = str(tmp_path / "no-such-repo")
    for verb in ("push", "fetch"):
        proc = exp(verb, missing, cwd=repo, check=False)
        refuses(proc, f"git {verb}", "does not appear to be a git repository")
    refuses(exp("fetch", cwd=repo, check=False), "no remote", "git exp fetch REMOTE")
    refuses(exp("push", "--", "--receive-pack=/bin/touch", cwd=repo, check=False))


def test_checkout_to_a_bad_branch_name_touches_nothing(repo: Path):
    run = run_id(repo, "co")
    wait_done(run, repo)
    head = git("rev-parse", "HEAD", cwd=repo)
    for branch, needle in (("bad..name", "invalid branch name"), ("-x", "invalid branch name"),
                           ("main", "already exists"), ("a b", "invalid branch name")):
        refuses(cli("checkout", run, "-b", branch, cwd=repo), needle)
    assert git("rev-parse", "HEAD", cwd=repo) == head
    assert git("symbolic-ref", "HEAD", cwd=repo).strip() == "refs/heads/main"


# The kinds of bad input above, for the record (each is asserted by a test in this file):
KINDS = (
    "not a repository (19 commands)", "bare repository (19 commands)",
    "inside .git (19 commands)", "empty repository", "detached HEAD",
    "a base commit this repository lacks", "mid-merge", "mid-rebase",
    "shallow clone (local and through a store)", "clean submodule",
    "dirty submodule (tracked and untracked changes)", "a git repository inside the work tree",
    "an empty command word", "unknown run (10 commands)",
    "unknown target (run, rerun, image build)", "unknown backend", "unknown store scheme",
    "malformed store URLs (gs:///, file://relative)", "malformed .gitexp/config (4 commands)",
    "bad exp.heartbeat (abc, -1, nan, inf)", "invalid run names (14)",
    "invalid --where (15)", "a 3,000-term --where", "invalid --sort", "invalid --columns",
    "unknown --status", "negative --limit", "invalid --older-than (3x, -5d, nan, inf)",
    "invalid --keep-best (name, count)", "gc without criteria", "non-numeric option values",
    "argv with quotes, newlines, $(), backticks, ;, globs, empty and dash words",
    "markup and terminal escapes in a command", "non-UTF-8 file names",
    "5 GB untracked file", "5 GB tracked file, modified", "symlinks out of the repository",
    "garbage record JSON", "wrongly typed records", "a newer record schema",
    "refs with invalid ids", "a ref aliasing another run", "rm outside the namespace",
    "a store result for another snapshot", "a store result for another run id",
    "garbled status/heartbeat/handle in the store", "a corrupted result.json",
    "absurd numbers in a record", ".git/gitexp that is a file",
    "a full disk (4 commands)", "an unwritable output path", "Ctrl-C (watch, logs -f)",
    "push/fetch to a missing remote", "fetch without a remote",
    "option injection through push's remote", "invalid or existing checkout branch names",
)


def test_refs_that_cannot_be_written_stop_the_launch_at_once(repo: Path):
    """A ref namespace git cannot write (here a file where refs/experiments/ should be a
    directory: as a lock held or a read-only refs directory would) is said at the first try:
    no eight ids tried, no eight orphan commits, no run."""
    (repo / ".git" / "refs" / "experiments").write_text("in the way\n")
    proc = exp("run", "--", "true", cwd=repo, check=False)
    assert_user_error(proc, "cannot create refs/experiments/", "writable")
    unreachable = [line for line in git("fsck", "--unreachable", "--no-reflogs",
                                        cwd=repo, check=False).splitlines()
                   if line.startswith("unreachable commit")]
    assert len(unreachable) <= 1, unreachable  # the one snapshot commit git gc prunes

"""Install, remove and inspect gitexp's git hooks.

An installed hook is a small shell stub rendered from `stub.sh` beside this module: a marker
line says it is ours, and it calls back into the Python that installed it (`gitexp.hooks.run`,
by path). A hook that was already in place is renamed to `<hook>.gitexp-legacy` (bytes,
mode and all) and runs first; `uninstall` renames it back. Not `<hook>.legacy`: pre-commit's
own stub runs `<its dir>/<hook>.legacy`, so a pre-commit stub moved to that name would call
itself.

Hooks go where git looks for them: `core.hooksPath` if set, else the common git directory's
`hooks/` (shared by every linked worktree).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gitexp.errors import GitexpError
from gitexp.git import Repo

HOOKS = ("prepare-commit-msg", "post-commit", "post-rewrite", "pre-push")
MARKER = "# gitexp-hook v1"
LEGACY_SUFFIX = ".gitexp-legacy"
PRE_COMMIT_LEGACY = ".legacy"  # where pre-commit keeps the hook it replaced (maybe ours)
STUB = "stub.sh"


@dataclass(frozen=True)
class HookState:
    name: str
    path: Path
    state: str  # "installed", "missing" (not installed), "foreign" (someone else's hook only)
    python: str | None = None  # the interpreter our stub calls back into
    python_ok: bool = False
    also_runs: tuple[Path, ...] = ()  # other hooks git runs here besides ours (first)


def hooks_dir(repo: Repo) -> Path:
    """`core.hooksPath` (relative to the work tree root) or `<common dir>/hooks`."""
    raw = repo.git("rev-parse", "--git-path", "hooks").strip()
    return (repo.root / raw).resolve()  # an absolute `raw` stays as it is


def is_ours(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return MARKER.encode() in head.splitlines()[:3]


def stub_source() -> str:
    """The stub template, shipped beside this module."""
    stub = Path(__file__).resolve().with_name(STUB)
    if stub.is_file():
        return stub.read_text()
    raise GitexpError("gitexp's hook stub is missing from this installation",
                      hint="reinstall gitexp (`pip install --force-reinstall gitexp`)")


def render(hook: str, python: str) -> str:
    if hook not in HOOKS:
        raise GitexpError(f"unknown hook {hook!r}", hint=f"gitexp installs: {', '.join(HOOKS)}")
    impl = Path(__file__).resolve().with_name("run.py")
    values = {"hook": hook, "python": python, "impl": str(impl)}
    # One pass: a path that itself contains `{{impl}}` is never expanded a second time.
    return re.sub(r"\{\{(hook|python|impl)\}\}", lambda m: shlex.quote(values[m.group(1)]),
                  stub_source())


def install(repo: Repo, python: str = sys.executable) -> list[HookState]:
    folder = hooks_dir(repo)
    for hook in HOOKS:  # all checks first: a refusal changes nothing
        path, legacy = folder / hook, folder / (hook + LEGACY_SUFFIX)
        wrapped = is_ours(folder / (hook + PRE_COMMIT_LEGACY))  # pre-commit runs our stub
        if _present(path) and not is_ours(path) and _present(legacy) and not wrapped:
            raise GitexpError(
                f"both {path} and {legacy} exist, and neither is gitexp's",
                hint=f"merge them by hand, then remove {legacy.name} and run "
                     "`git exp hooks install` again")
    with _writable(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for hook in HOOKS:
            _install_one(folder, hook, python)
    return status(repo)


def _install_one(folder: Path, hook: str, python: str) -> None:
    path, legacy = folder / hook, folder / (hook + LEGACY_SUFFIX)
    behind_pre_commit = folder / (hook + PRE_COMMIT_LEGACY)
    if path.exists() and not is_ours(path) and is_ours(behind_pre_commit):
        # pre-commit (installed after us) runs our stub as its legacy hook: refresh it there.
        _write(behind_pre_commit, render(hook, python))
        return
    if _present(path) and not is_ours(path):
        path.replace(legacy)  # a rename keeps the exact bytes, mode and symlinks
    _write(path, render(hook, python))


def uninstall(repo: Repo) -> list[HookState]:
    folder = hooks_dir(repo)
    with _writable(folder):
        for hook in HOOKS:
            _uninstall_one(folder, hook)
    return status(repo)


def _uninstall_one(folder: Path, hook: str) -> None:
    path, legacy = folder / hook, folder / (hook + LEGACY_SUFFIX)
    behind_pre_commit = folder / (hook + PRE_COMMIT_LEGACY)
    if is_ours(path):
        path.unlink()
        if _present(legacy):
            legacy.replace(path)
    elif is_ours(behind_pre_commit):
        # pre-commit wraps us: give it back the hook we had wrapped (or nothing).
        behind_pre_commit.unlink()
        if _present(legacy):
            legacy.replace(behind_pre_commit)


def status(repo: Repo) -> list[HookState]:
    folder = hooks_dir(repo)
    out = []
    for hook in HOOKS:
        path, legacy = folder / hook, folder / (hook + LEGACY_SUFFIX)
        ours = next((p for p in (path, folder / (hook + PRE_COMMIT_LEGACY)) if is_ours(p)), None)
        if ours is None:
            state = "foreign" if path.exists() else "missing"
            out.append(HookState(hook, path, state))
            continue
        python = _recorded_python(ours)
        others = tuple(p for p in (path, legacy) if p != ours and p.exists())
        out.append(HookState(hook, ours, "installed", python=python,
                             python_ok=python is not None and os.access(python, os.X_OK),
                             also_runs=others))
    return out


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling symlink is still someone's hook


@contextlib.contextmanager
def _writable(folder: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise GitexpError(f"cannot change the hooks in {folder}: {exc.strerror or exc}",
                          hint="check that folder's owner and permissions") from None


def _recorded_python(stub: Path) -> str | None:
    for line in stub.read_text(errors="replace").splitlines():
        if line.startswith("gitexp_python="):
            words = shlex.split(line.partition("=")[2])
            return words[0] if words else None
    return None


def _write(path: Path, text: str) -> None:
    # Atomic: a commit running meanwhile sees the old hook or the new one, never half of one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        Path(tmp).chmod(0o755)  # a hook must be executable to run
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

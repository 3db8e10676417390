"""Fixtures: real git repositories in temp dirs, and a home directory that is never the real one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BIN, git

pytest_plugins = ["tests.services"]

# git's two object formats. The core suite (tests/test_core_*.py) runs on both, as its
# `repo` is parametrised over them; `--object-format sha256` makes every other repository
# made here SHA-256 too (a whole-suite run on that format).
OBJECT_FORMATS = ("sha1", "sha256")
_DEFAULT_FORMAT = ["sha1"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--object-format", choices=OBJECT_FORMATS, default="sha1",
                     help="object format of the tests' repositories (the core suite: both)")


def pytest_configure(config: pytest.Config) -> None:
    _DEFAULT_FORMAT[0] = config.getoption("--object-format")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if ("object_format" in metafunc.fixturenames
            and metafunc.definition.path.name.startswith("test_core_")):
        metafunc.parametrize("object_format", OBJECT_FORMATS)


@pytest.fixture
def object_format() -> str:
    """The object format of `repo` (both, in the core suite: see pytest_generate_tests)."""
    return _DEFAULT_FORMAT[0]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own HOME and global git config: nothing touches the real ones."""
    home = tmp_path_factory.mktemp("home")
    use_home(monkeypatch, home)
    yield home


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """HOME, git's global config and PATH as every test has them; also for module-scoped
    fixtures (made before the test's own home), so what they make reads the same."""
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GITEXP_METRICS"):
        monkeypatch.delenv(var, raising=False)


def make_repo(path: Path, files: dict[str, str] | None = None, commit: bool = True,
              object_format: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", f"--object-format={object_format or _DEFAULT_FORMAT[0]}", cwd=path)
    # Fast liveness in tests: beat every 0.3 s, lost after 3 s of silence.
    git("config", "exp.heartbeat", "0.3", cwd=path)
    git("config", "exp.lostAfter", "3", cwd=path)
    for name, text in (files or {"README.md": "hello\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if commit:
        git("add", "-A", cwd=path)
        git("commit", "-qm", "initial", cwd=path)
    return path


@pytest.fixture
def repo(tmp_path: Path, object_format: str) -> Path:
    """A fresh repository with one commit; the test may edit it freely."""
    return make_repo(tmp_path / "repo", object_format=object_format)

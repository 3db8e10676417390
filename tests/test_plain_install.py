"""The plain install (`pip install gitexp`, no extras) runs every command: a feature whose
extra is missing fails before anything is recorded, naming the extra; runs already recorded
on such a target are still listed, shown and removed.

The CLI runs from a real venv holding this package's wheel and its base dependencies only.
The dependencies are installed by pip once per machine (cached under the temp directory,
keyed by [project].dependencies); each session makes a fresh venv that sees them through a
`.pth` file and installs the wheel just built from this tree into it (seconds).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
import tomllib

from gitexp import extras
from tests.conftest import make_repo
from tests.helpers import assert_user_error, git
from tests.services._util import file_lock
from tests.test_report import frozen

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]

pytestmark = pytest.mark.xdist_group("plain-install")  # one venv, on one worker


def _site_packages(venv: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))


def _compile(where: Path) -> None:
    # PYTHONDONTWRITEBYTECODE may be set: compile once, or every `git exp` compiles anew
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(where)], check=True,
                   capture_output=True)


def _base_dependencies() -> Path:
    """A venv with [project].dependencies and nothing else (made once per machine)."""
    deps = sorted(PYPROJECT["project"]["dependencies"])
    key = hashlib.sha256(json.dumps([deps, sys.version]).encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"gitexp-plain-deps-{key}"
    with file_lock(venv.with_suffix(".lock")):
        if not (venv / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)],
                           check=True)
            subprocess.run([*PIP, "--python", str(venv / "bin" / "python"), "install", "-q",
                            *deps], check=True)
            _compile(_site_packages(venv))
            (venv / ".complete").touch()
    return _site_packages(venv)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a shell whose `git exp` is the plain install of this tree."""
    where = tmp_path_factory.mktemp("plain")
    subprocess.run([*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(where / "dist"), str(ROOT)], check=True, capture_output=True)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (_site_packages(venv) / "base-dependencies.pth").write_text(f"{_base_dependencies()}\n")
    wheel = next((where / "dist").glob("gitexp-*.whl"))
    subprocess.run([*PIP, "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    _compile(_site_packages(venv) / "gitexp")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def gx(env: dict[str, str], *args: str, cwd: Path, check: bool = True,
       extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", "exp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**env, "HOME": os.environ["HOME"],
                               "GIT_CONFIG_GLOBAL": os.environ["GIT_CONFIG_GLOBAL"],
                               **(extra or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"git exp {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def test_the_venv_really_has_no_extras(plain: dict[str, str]) -> None:
    probe = ("import importlib, sys\nfor m in sys.argv[1:]:\n    try:\n"
             "        importlib.import_module(m)\n        print('importable', m)\n"
             "    except ImportError:\n        pass\n")
    out = subprocess.run(["python", "-c", probe, *extras.EXTRAS], env=plain,
                         capture_output=True, text=True, check=True).stdout
    assert out == ""
    where = subprocess.run(["python", "-c", "import gitexp; print(gitexp.__file__)"], env=plain,
                           capture_output=True, text=True, check=True).stdout
    assert "site-packages" in where and str(ROOT / "src") not in where


def test_a_local_run_and_every_read_verb_work(plain: dict[str, str], tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "import gitexp\ngitexp.log(step=1, loss=.5)"
                                         "\nprint('trained')\n"})
    gx(plain, "run", "-n", "one", "--", "python", "train.py", cwd=repo)
    (run,) = json.loads(gx(plain, "ls", "--json", cwd=repo).stdout)
    shown = json.loads(gx(plain, "show", run["id"], "--json", cwd=repo).stdout)
    assert shown["status"] == "succeeded" and shown["result"]["metrics"] == {"loss": 0.5}
    assert "trained" in gx(plain, "logs", run["id"], cwd=repo).stdout
    assert_user_error(gx(plain, "plot", run["id"], cwd=repo, check=False),
                      "needs matplotlib", "pip install 'gitexp[plots]'")
    assert not list(repo.glob("*.png"))
    proc = gx(plain, "report", "-o", str(tmp_path / "r.html"), cwd=repo)
    assert "pip install" not in proc.stderr  # the browser draws the curves: no extra needed
    page = (tmp_path / "r.html").read_text()
    assert frozen(page)["series"][run["id"]]["metrics"] == {"loss": [0.5]}
    assert_user_error(gx(plain, "ui", "--no-open", cwd=repo, check=False),
                      "`git exp ui` needs aiohttp", "pip install 'gitexp[ui]'")
    assert gx(plain, "gc", "--failed", cwd=repo).returncode == 0
    gx(plain, "rm", run["id"], cwd=repo)
    assert git("for-each-ref", "refs/experiments", cwd=repo) == ""


TARGETS = {  # target: (settings, the module it lacks, its extra)
    "box": ({"backend": "ssh", "host": "gpu-box"}, "paramiko", "ssh"),
    "cloud": ({"backend": "gce", "project": "p", "zone": "z", "store": "gs://b/p"},
              "google.cloud.compute_v1", "gce"),
    "k8s": ({"backend": "kubernetes", "image": "i", "store": "file:///tmp/x"}, "kubernetes",
            "kubernetes"),
    "hpc": ({"backend": "slurm", "store": "ssh://login/scratch/gitexp"}, "paramiko", "ssh"),
}


def test_a_target_whose_extra_is_missing_is_refused_before_recording(
        plain: dict[str, str], tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    for name, (settings, _, _) in TARGETS.items():
        for key, value in settings.items():
            git("config", f"exp.target.{name}.{key}", value, cwd=repo)
    launches = [(name, ["run", "-t", name, "--", "true"]) for name in TARGETS]
    launches.append(("box", ["run", "-t", "box", "--sweep", "a=1,2", "--", "echo", "{a}"]))
    for name, launch in launches:
        _, needs, extra = TARGETS[name]
        proc = gx(plain, *launch, cwd=repo, check=False)
        assert_user_error(proc, f"target {name!r} needs {needs}", f"pip install 'gitexp[{extra}]'")
    assert "refs/experiments/" not in git("for-each-ref", cwd=repo)
    assert not (repo / ".git" / "gitexp" / "store" / "runs").exists()
    listed = json.loads(gx(plain, "targets", "--json", cwd=repo).stdout)
    assert {t["name"]: t["needs"] for t in listed} == {
        "local": None, **{name: f"gitexp[{extra}]" for name, (_, _, extra) in TARGETS.items()}}


def test_a_run_recorded_with_the_extra_is_listed_shown_and_removed_without_it(
        plain: dict[str, str], tmp_path: Path) -> None:
    """The wedge of issue 14: a run recorded on an ssh target (here by the full install,
    killed right after the ref, as a crash would leave it), then read by the plain one."""
    repo = make_repo(tmp_path / "repo")
    git("config", "exp.target.box.backend", "ssh", cwd=repo)
    git("config", "exp.target.box.host", "gpu-box.invalid", cwd=repo)
    killed = subprocess.run(["git", "exp", "run", "-t", "box", "--", "true"], cwd=repo,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "GITEXP_FAULT": "launch.ref"})
    assert killed.returncode != 0
    (ref,) = git("for-each-ref", "--format=%(refname:lstrip=2)", "refs/experiments",
                 cwd=repo).split()
    (row,) = json.loads(gx(plain, "ls", "--json", cwd=repo).stdout)
    assert row["id"] == ref and row["record"]["target"] == "box"
    assert "box (ssh)" in gx(plain, "show", ref, cwd=repo).stdout
    assert_user_error(gx(plain, "logs", ref, cwd=repo, check=False),
                      "target 'box' needs paramiko", "pip install 'gitexp[ssh]'")
    assert_user_error(gx(plain, "cancel", ref, cwd=repo, check=False), "gitexp[ssh]")
    assert gx(plain, "gc", "--older-than", "0s", "-n", cwd=repo).returncode == 0
    proc = gx(plain, "rm", ref, cwd=repo)
    assert "not stopped" in proc.stderr and "needs paramiko" in proc.stderr
    assert git("for-each-ref", "refs/experiments", cwd=repo) == ""


def test_every_extra_is_mapped_and_every_mapping_is_an_extra() -> None:
    declared = set(PYPROJECT["project"]["optional-dependencies"]) - {"all", "test"}
    assert set(extras.EXTRAS.values()) == declared
    assert extras.extra_of("google") in {"gcs", "gce"}  # Python names the outermost package
    assert extras.extra_of("paramiko.client") == "ssh"
    assert extras.extra_of("numpy") is None
    gone = extras.explain(ModuleNotFoundError("No module named 'paramiko'", name="paramiko"),
                          "`git exp ls`")
    assert gone is not None and gone.message == "`git exp ls` needs paramiko"
    assert gone.hint == "pip install 'gitexp[ssh]'"
    assert extras.explain(ModuleNotFoundError("no", name="numpy")) is None  # a bug: a crash
    assert extras.missing("json", "paramiko.nope.deeper") == "paramiko.nope.deeper"
    assert extras.missing("json", "os.path") is None

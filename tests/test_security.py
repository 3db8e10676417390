"""Security: nothing gitexp unpacks lands outside its directory, no id/name/setting becomes
shell code or a ref path, credential-like files stay home, and a job that prints a secret
does not leak it. (The scan of every artifact for configured secrets: test_secret_scan.py.)
"""

from __future__ import annotations

import ast
import binascii
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gitexp import secrets
from gitexp.backends import Launch
from gitexp.backends.kubernetes import KubernetesBackend
from gitexp.backends.slurm import SlurmBackend
from gitexp.errors import ConfigError, GitexpError, StoreError
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.hooks import install as hooks
from gitexp.model import ids
from gitexp.model.record import Environment, RunRecord
from gitexp.service import rerun
from gitexp.service.runs import Run, find
from gitexp.stores import transport
from gitexp.stores.file import FileStore
from gitexp.worker import workspace
from tests.conftest import make_repo
from tests.helpers import MemoryStore, assert_user_error, exp, exp_json, git, wait_done, wait_for

SRC = Path(__file__).resolve().parents[1] / "src" / "gitexp"
HOSTILE = ["$(touch {canary})", "`touch {canary}`", "; touch {canary}", "&& touch {canary}",
           "| touch {canary}", "\ntouch {canary}\n", "'; touch {canary}; '",
           "\"; touch {canary}; \"", "${{IFS}}touch${{IFS}}{canary}", "{{{{impl}}}}",
           "a\\", "-rf", "--", "*", "~", "#x", "\r\ntouch {canary}", "\\$(touch {canary})"]
# Text that is hard on quoting: shell metacharacters, quotes, newlines, unicode, never NUL.
SHELLY = st.text(
    alphabet=st.one_of(st.sampled_from(list("$`'\"\\;|&<>(){}[]*?!~#\n\t =%^.,:/@-_")),
                       st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
    max_size=24)
FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def hostile(canary: Path) -> list[str]:
    return [h.format(canary=canary) for h in HOSTILE]


def record(run_id: str = "train-1127-1200-abcd", **fields: Any) -> RunRecord:
    base: dict[str, Any] = {
        "id": run_id, "argv": ["python", "train.py"], "cwd": "", "base": None,
        "branch": "main", "user": "t", "launched_at": 0.0, "target": "t", "backend": "local",
        "store": "file:///s", "env": Environment(python="3.11", platform="linux")}
    return RunRecord(**{**base, **fields})


# -- 1. archives and bundles ----------------------------------------------------------------
def serve(monkeypatch: pytest.MonkeyPatch, objects: dict[str, bytes]) -> MemoryStore:
    """Make `gs://hostile/store` open as an in-memory store holding `objects`."""
    store = MemoryStore(objects, url="gs://hostile/store")
    monkeypatch.setattr(transport, "open_store", lambda url: store)
    return store


def test_gitexp_extracts_no_archive_itself() -> None:
    """Proof by inspection of the source: no tarfile, no shutil.unpack_archive, no zip read.
    The only archive gitexp touches is its own wheel, written (mode "w") and put on
    PYTHONPATH, never unpacked; code travels as git packs/bundles that git itself applies."""
    importers, calls = set(), []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if {"tarfile", "zipfile", "gzip", "lzma", "bz2"} & set(names):
                    importers.add(path.relative_to(SRC).as_posix())
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in ("extractall", "extract", "unpack_archive", "ZipFile", "open_zip"):
                    mode = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
                    calls.append((path.name, name, mode))
    assert importers == {"worker/bootstrap.py"}
    assert calls == [("bootstrap.py", "ZipFile", ["w"])]


def _bundle_with_prerequisite(prerequisite: bytes) -> bytes:
    return transport.BUNDLE_SIGNATURE + b"-" + prerequisite + b"\n" + \
        b"1" * 40 + b" refs/code/" + b"1" * 40 + b"\n\nPACK"


@pytest.mark.parametrize("prerequisite", ["../../../{outside}/evil", "/{outside}/evil",
                                          "..", "0" * 39 + "/"])
def test_bundle_naming_a_path_is_refused_before_anything_is_written(
        tmp_path: Path, prerequisite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile gs:// store's bundle lists a path instead of a commit as a prerequisite:
    the worker refuses it, and neither downloads to that path nor asks the store for it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = prerequisite.format(outside=str(outside).lstrip("/"))
    head = "1" * 40
    store = serve(monkeypatch, {f"{transport.BUNDLES}/{head}.bundle":
                                _bundle_with_prerequisite(evil.encode())})
    store.objects[f"{transport.BUNDLES}/{evil}.bundle"] = b"planted"  # would be fetched
    with pytest.raises(StoreError, match="not a valid git bundle"):
        transport.fetch_code("gs://hostile/store", head, tmp_path / "cache")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "outside"]


@pytest.mark.parametrize("commit", ["../../x", "1" * 39, "HEAD", "1" * 40 + "/.."])
def test_fetch_code_takes_only_a_commit_id(tmp_path: Path, commit: str) -> None:
    with pytest.raises(StoreError, match="not a commit id"):
        transport.fetch_code("gs://bucket/p", commit, tmp_path)


IDENTITY = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
            "GIT_COMMITTER_EMAIL": "a@b"}


def _hostile_commit(git_dir: Path, outside: Path, kind: str) -> str:
    """A commit whose tree tries to write outside its checkout (built with hash-object
    --literally: git's own tools refuse to make such trees)."""
    def run(*args: str, data: bytes) -> str:
        return subprocess.run(["git", "--git-dir", str(git_dir), *args], input=data,
                              env={**os.environ, **IDENTITY}, capture_output=True,
                              check=True).stdout.decode().strip()

    def tree(entries: list[tuple[bytes, bytes, str]]) -> str:
        data = b"".join(m + b" " + n + b"\0" + binascii.unhexlify(o) for m, n, o in entries)
        return run("hash-object", "-w", "-t", "tree", "--literally", "--stdin", data=data)

    blob = run("hash-object", "-w", "--stdin", data=b"pwned\n")
    link = run("hash-object", "-w", "--stdin", data=str(outside).encode())
    sub = tree([(b"100644", b"evil.txt", blob)])
    hook = tree([(b"40000", b"hooks", tree([(b"100755", b"post-checkout", blob)]))])
    entries = {
        "dotdot": [(b"40000", b"..", sub)],
        "dotgit": [(b"40000", b".git", hook)],
        "slash": [(b"100644", b"a/../../evil.txt", blob)],
        "absolute": [(b"100644", str(outside / "evil.txt").encode(), blob)],
        "symlink-then-file": [(b"120000", b"link", link), (b"40000", b"link", sub)],
        "symlink-dir": [(b"120000", b"link", link), (b"40000", b"link2", sub)],
    }[kind]
    message = json.dumps({"schema": 1, "record": record().to_dict()})
    return run("commit-tree", tree(entries), "-m", f"gitexp run x\n\n{message}", data=b"")


@pytest.mark.parametrize("kind", ["dotdot", "dotgit", "slash", "absolute",
                                  "symlink-then-file", "symlink-dir"])
def test_hostile_snapshot_from_a_store_never_writes_outside_the_checkout(
        tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile bundle in a store (path traversal `..`, `.git/hooks`, an absolute path,
    a symlink to a directory outside and then a file through it): the worker's fetch and
    checkout either refuse it with one line or write only inside the checkout."""
    outside, dev = tmp_path / "outside", tmp_path / "dev.git"
    outside.mkdir()
    git("init", "-q", "--bare", str(dev), cwd=tmp_path)
    commit = _hostile_commit(dev, outside, kind)
    ref = f"{transport.REF_PREFIX}{commit}"
    git("--git-dir", str(dev), "update-ref", ref, commit, cwd=tmp_path)
    bundle = tmp_path / "b.bundle"
    git("--git-dir", str(dev), "bundle", "create", str(bundle), ref, cwd=tmp_path)
    serve(monkeypatch, {f"{transport.BUNDLES}/{commit}.bundle": bundle.read_bytes()})
    dest = tmp_path / "work" / "code"
    try:  # what the agent does: fetch the snapshot from the store, check it out by hash
        source = transport.fetch_code("gs://hostile/store", commit, tmp_path / "cache")
        workspace.checkout(source, commit, dest)
    except GitexpError as exc:
        assert "\n" not in exc.message
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["b.bundle", "cache", "dev.git", "outside", "work"][:5 if dest.exists() else 4]
    assert not (dest / ".git" / "hooks" / "post-checkout").exists()
    assert not (tmp_path / "work" / "evil.txt").exists()
    for path in dest.rglob("*"):  # whatever was checked out resolves inside the checkout
        if ".git" not in path.relative_to(dest).parts:
            assert path.resolve().is_relative_to(dest.resolve()) or path.is_symlink()


def test_bundle_whose_ref_is_another_commit_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle filed under one snapshot but carrying another commit never stands in for it:
    the worker asks git for exactly the recorded hash."""
    real = git("rev-parse", "HEAD", cwd=make_repo(tmp_path / "real")).strip()
    dev = make_repo(tmp_path / "dev", {"f": "other\n"})
    other = git("rev-parse", "HEAD", cwd=dev).strip()
    pack = tmp_path / "p.pack"
    transport._write_pack(Repo.discover(dev), other, [], pack)
    bundle = tmp_path / "b.bundle"
    transport._write_bundle(bundle, pack, other, [])
    forged = bundle.read_bytes().replace(f"{other} refs/code/{other}".encode(),
                                         f"{other} refs/code/{real}".encode())
    serve(monkeypatch, {f"{transport.BUNDLES}/{real}.bundle": forged})
    with pytest.raises(StoreError, match="is not in gs://hostile/store"):
        transport.fetch_code("gs://hostile/store", real, tmp_path / "cache")


# -- 2. ids and names never become code or a ref path ---------------------------------------
@given(SHELLY)
@settings(max_examples=300, deadline=None)
def test_accepted_names_and_ids_are_plain_words(text: str) -> None:
    """Anything check_name/check_id accept is a safe shell word and a valid ref component."""
    for check in (ids.check_name, ids.check_id):
        try:
            check(text)
        except GitexpError:
            continue
        assert shlex.quote(text) == text
        assert text.isascii() and text.replace("-", "").isalnum() and text == text.lower()
        assert ".." not in text and "/" not in text and "@{" not in text
        assert not text.endswith(".lock") and not text.startswith("-")


BAD_NAMES = ["..", "a..b", "a/b", "../x", "a@{1}", "@", "x.lock", "a\x01b", "a\x7f", "-x",
             "x-", "a--b", "", " ", "a b", "A", "a\nb", "a\tb", "a:b", "a~1", "a^", "a?", "a*",
             "a[b", "a\\b", "$(touch x)", "`id`", "a;b", "x" * 64, ".hidden", "a.b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_ref_hazards_are_refused_as_names_and_ids(name: str) -> None:
    with pytest.raises(GitexpError):
        ids.check_name(name)
    with pytest.raises(GitexpError):
        ids.check_id(name)
    with pytest.raises(GitexpError):
        ids.ref_for(name)


def test_hostile_run_name_is_one_line_and_makes_no_ref(repo: Path, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    for name in ["a/b", "..", f"$(touch {canary})", "x.lock", "a@{1}"]:
        assert_user_error(exp("run", "-n", name, "--", "true", cwd=repo, check=False),
                          "invalid run name")
    assert git("for-each-ref", "refs/experiments", cwd=repo) == ""
    assert not canary.exists()


def _forge(repo: Path, ref_id: str, record_id: str) -> str:
    """A run ref whose record claims another id (as a hostile teammate could push)."""
    rec = record(record_id, argv=["true"])
    message = f"gitexp run {ref_id}\n\n" + json.dumps({"schema": 1, "record": rec.to_dict()})
    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    commit = git("commit-tree", tree, "-m", message, cwd=repo).strip()
    git("update-ref", f"refs/experiments/{ref_id}", commit, cwd=repo)
    return commit


def test_a_record_that_lies_about_its_id_is_not_trusted(repo: Path, tmp_path: Path) -> None:
    """A fetched run whose record id differs from its ref (here: shell code with newlines)
    is unreadable: never listed under that id, never rendered into a script, never a key."""
    canary = tmp_path / "pwned"
    _forge(repo, "train-1127-1200-abcd", f"x\ntouch {canary}\n#")
    _forge(repo, "train-1127-1200-abce", "../../../escape")
    assert all(r["id"].startswith("train-") for r in exp_json("ls", cwd=repo))
    for run_id in ("train-1127-1200-abcd", "train-1127-1200-abce"):
        assert_user_error(exp("rerun", "--script", run_id, cwd=repo, check=False),
                          "unreadable record")
    with pytest.raises(GitexpError):  # and the renderer itself refuses such an id
        rerun.script(Repo.discover(repo), Run(record(f"x\ntouch {canary}"), None, "0" * 40,
                                              False))
    assert not canary.exists()
    assert not (repo / ".git" / "escape").exists()


@pytest.fixture(scope="module")
def replay_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("replay")
    repo = make_repo(root / "repo", {"README.md": "x\n", "sub dir/keep": "k\n"})
    stub = root / "bin"
    stub.mkdir()
    (stub / "dvc").write_text("#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$DVC_ARGS\"\n")
    (stub / "dvc").chmod(0o755)
    return repo, git("rev-parse", "HEAD", cwd=repo).strip()


PRINT_ARGV = ("import json, os, sys; json.dump([sys.argv[1:], dict(os.environ)], "
              "open(os.environ['ARGV_OUT'], 'w'))")


@given(args=st.lists(st.one_of(SHELLY, st.sampled_from(HOSTILE)), max_size=5),
       env=st.dictionaries(st.sampled_from(["OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "é",
                                            "BAD NAME", "X;touch"]), SHELLY, max_size=3),
       data=st.lists(SHELLY.filter(lambda s: s.strip() != ""), max_size=2),
       remote=SHELLY, cwd=st.sampled_from(["", "sub dir"]))
@FAST
def test_run_sh_replays_hostile_values_exactly_and_runs_none(
        replay_repo: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory, *,
        args: list[str], env: dict[str, str], data: list[str], remote: str, cwd: str) -> None:
    """`rerun --script`'s run.sh, rendered from a record full of shell code (argv, recorded
    variables, DVC paths, the remote), parses with sh and bash and, run for real, passes
    every value through verbatim and executes none of it."""
    repo, head = replay_repo
    tmp = tmp_path_factory.mktemp("case")
    canary = tmp / "pwned"
    args = [a.format(canary=canary) if "{canary}" in a else a for a in args]
    rec = record(argv=[sys.executable, "-c", PRINT_ARGV, *args], cwd=cwd, snapshot=head,
                 env=Environment(python="3", platform="x", variables=env),
                 data={p: {"hash": "0" * 32} for p in data} or None)
    script = rerun.script(Repo.discover(repo), Run(rec, None, head, False), remote=remote)
    for shell in ("sh", "bash"):
        assert subprocess.run([shell, "-n"], input=script, text=True).returncode == 0
    (tmp / "run.sh").write_text(script)
    out, dvc_args = tmp / "argv.json", tmp / "dvc.args"
    path = f"{repo.parent / 'bin'}:{os.environ['PATH']}"
    proc = subprocess.run(["sh", str(tmp / "run.sh")], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "PATH": path, "ARGV_OUT": str(out),
                               "DVC_ARGS": str(dvc_args)})
    assert not canary.exists()
    assert proc.returncode == 0, proc.stderr
    got_args, got_env = json.loads(out.read_text())
    assert got_args == args
    assert {k: got_env.get(k) for k in env if k.isidentifier() and k.isascii()} == \
        {k: v for k, v in env.items() if k.isidentifier() and k.isascii()}
    if data:
        assert dvc_args.read_bytes().split(b"\0")[:-1] == \
            [b"pull", b"--", *(p.encode() for p in sorted(set(data)))]


@pytest.fixture(scope="module")
def agent_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'python' at a path full of shell code, recording the argv it gets."""
    folder = tmp_path_factory.mktemp("stub") / "py $(touch pwned) `id`;'\"&"
    folder.mkdir()
    stub = folder / "python3"
    stub.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "
                    f"{shlex.quote(PRINT_ARGV)} \"$@\"\n")
    stub.chmod(0o755)
    return stub


SETTING = SHELLY.filter(lambda s: "\n" not in s and "\r" not in s)


@given(options=st.dictionaries(st.sampled_from(["partition", "time", "cpus", "mem", "gpus",
                                                "gres", "account", "qos"]), SHELLY),
       extra=st.one_of(st.just(""), SETTING), workdir=st.one_of(st.just(""), SETTING),
       store_dir=SETTING.filter(lambda s: s.strip("./") != "" and "/" not in s))
@example(options={"partition": "a\ntouch pwned"}, extra="", workdir="", store_dir="s")
@example(options={}, extra="--comment='unbalanced", workdir="", store_dir="s")
@FAST
def test_sbatch_script_passes_hostile_settings_as_words(
        repo: Path, agent_stub: Path, tmp_path_factory: pytest.TempPathFactory, *,
        options: dict[str, str], extra: str, workdir: str, store_dir: str) -> None:
    """Target settings full of shell code (every sbatch option, extra #SBATCH options, the
    work directory, a store path, the python path) render to a script that bash parses and
    that, run for real, starts the agent with exactly those values and runs none of them."""
    tmp = tmp_path_factory.mktemp("sbatch")
    store = tmp / store_dir
    target = Target("hpc", "slurm", {**options, "store": store.as_uri(), "sbatch": extra,
                                     "workdir": workdir, "python": str(agent_stub)})
    rec = record(backend="slurm", snapshot="ab" * 20)
    launch = Launch(repo=Repo.discover(repo), record=rec, store=FileStore(store), heartbeat=2.0)
    try:
        script = SlurmBackend(target=target, repo=Repo.discover(repo)).script(
            [launch], max_parallel=0, wheel="")
    except ConfigError as exc:  # refused (one line), never a broken script
        assert "\n" not in exc.message
        return
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    out = tmp / "argv.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    proc = subprocess.run(["bash", "-c", script], cwd=tmp, capture_output=True, text=True,
                          env={**env, "ARGV_OUT": str(out), "TMPDIR": str(tmp)})
    assert not list(tmp.rglob("pwned")) and not (agent_stub.parent / "pwned").exists()
    assert proc.returncode == 0, (proc.stderr, (store / "runs").exists())
    argv, _ = json.loads(out.read_text())
    assert argv == ["-m", "gitexp.worker.agent", "--store", store.as_uri(),
                    "--code", f"{store}/code.git", "--run", rec.id, "--snapshot", rec.snapshot,
                    "--workdir", f"{workdir or tmp}/gitexp-{rec.id}", "--heartbeat", "2.0",
                    "--warm", "4", "--warm-dir", f"{workdir or '/tmp'}/gitexp-warm-{os.getuid()}"]
    header = [ln for ln in script.split("\n") if ln.startswith("#SBATCH")]  # bash's lines
    for key, value in ((k, v) for k, v in options.items() if v):  # one line, one word
        line = next(ln for ln in header if ln.startswith(f"#SBATCH --{key}") or
                    (key == "cpus" and ln.startswith("#SBATCH --cpus-per-task")))
        assert shlex.split(line.split("=", 1)[1]) == [value]


@given(values=st.fixed_dictionaries(dict.fromkeys(
    ("image", "namespace", "python", "workerstore", "cpu", "memory"), SHELLY)))
@FAST
def test_k8s_manifest_keeps_hostile_settings_as_values(repo: Path,
                                                       values: dict[str, str]) -> None:
    """Every setting lands as one string in the parsed manifest: no value adds a field,
    a container, a command word or a document."""
    target = Target("k8s", "kubernetes", {k: v for k, v in values.items() if v})
    rec = record(backend="kubernetes", snapshot="ab" * 20)
    launch = Launch(repo=Repo.discover(repo), record=rec, store=FileStore(Path("/s")),
                    heartbeat=2.0)
    if not values["image"]:
        return
    try:
        doc = KubernetesBackend(target=target, repo=Repo.discover(repo)).manifest(launch)
    except GitexpError:
        return
    container = doc["spec"]["template"]["spec"]["containers"]
    assert len(container) == 1 and container[0]["image"] == values["image"]
    assert doc["metadata"]["namespace"] == (values["namespace"] or "default")
    command = container[0]["command"]
    assert command[0] == (values["python"] or "python3") and len(command) == 15
    assert command[4] == (values["workerstore"] or "file:///s")
    assert doc["metadata"]["name"] == rec.id


def test_dockerfile_is_not_rendered_and_the_base_image_is_one_argument(
        repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """templates/Dockerfile has no placeholder; the base image goes to the engine as one
    `--build-arg` word (never through a shell)."""
    from gitexp.backends import docker, templates

    assert templates.PLACEHOLDER.search(templates.read("Dockerfile")) is None
    seen: list[Any] = []
    where = Repo.discover(repo)
    monkeypatch.setattr(docker.subprocess, "run",
                        lambda argv, **kw: seen.append((argv, kw)) or
                        subprocess.CompletedProcess(argv, 0))
    base = f"x; touch {tmp_path}/pwned $(id)"
    argv = docker.build_image(where, Target("box", "docker", {"engine": "podman"}),
                              base=base)
    assert seen[0][0] == argv and not seen[0][1].get("shell")
    assert f"BASE_IMAGE={base}" in argv


@given(name=SHELLY.filter(lambda s: s not in ("", ".", "..") and "/" not in s),
       args=st.lists(SHELLY, max_size=3))
@FAST
def test_hook_stub_runs_a_hostile_python_path_verbatim(
        tmp_path_factory: pytest.TempPathFactory, name: str, args: list[str]) -> None:
    """The installed hook stub, rendered with a Python whose path is shell code (even one
    holding `{{impl}}`), parses and calls exactly that file with git's arguments."""
    tmp = tmp_path_factory.mktemp("hook")
    python = tmp / name
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "
                      f"{shlex.quote(PRINT_ARGV)} \"$@\"\n")
    python.chmod(0o755)
    stub = tmp / "post-commit"
    stub.write_text(hooks.render("post-commit", str(python)))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    assert subprocess.run(["sh", "-n", str(stub)]).returncode == 0
    out = tmp / "argv.json"
    subprocess.run([str(stub), *args], cwd=tmp, env={**os.environ, "ARGV_OUT": str(out)},
                   check=True, capture_output=True)
    argv, _ = json.loads(out.read_text())
    impl = str(Path(hooks.__file__).resolve().with_name("run.py"))
    assert argv == ["-S", impl, "post-commit", *args]
    assert not list(tmp.rglob("pwned"))


def test_rendered_scripts_pass_shellcheck(repo: Path, agent_stub: Path) -> None:
    """No unquoted expansion in what gitexp renders or ships (shellcheck's warnings)."""
    from gitexp.backends import templates

    rec = record(argv=["python", "-c", "print(1)", "$(x)"], snapshot="ab" * 20,
                 env=Environment(python="3", platform="x", variables={"OMP_NUM_THREADS": "1"}))
    slurm = SlurmBackend(target=Target("hpc", "slurm", {"store": "file:///s x",
                                                        "partition": "a'b"}),
                         repo=Repo.discover(repo))
    launch = Launch(repo=Repo.discover(repo), record=rec, store=FileStore(Path("/s x")),
                    heartbeat=2.0)
    scripts = {
        "run.sh": rerun.script(Repo.discover(repo), Run(rec, None, rec.snapshot, False)),
        "sbatch.sh": slurm.script([launch], max_parallel=0, wheel=""),
        "gce-startup.sh": templates.read("gce-startup.sh"),
        "hook": hooks.render("pre-push", str(agent_stub)),
    }
    for name, text in scripts.items():
        proc = subprocess.run(["shellcheck", "-S", "warning", "-"], input=text, text=True,
                              capture_output=True)
        assert proc.returncode == 0, (name, proc.stdout)


# -- 4. credential-like files stay home unless tracked ---------------------------------------
SECRETISH = [".env", ".env.local", "dir/.env.prod", "server.pem", "dir/tls.KEY", "id_rsa",
             "dir/id_ed25519.pub", ".netrc", "conf/credentials.json", "keys/a.p12"]


def test_untracked_credential_files_are_not_shipped(repo: Path) -> None:
    for name in SECRETISH:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("SECRET=1\n")
    (repo / "train.py").write_text("print(1)\n")
    (repo / "environment.yml").write_text("x\n")  # near misses ship
    (repo / "keyboard.py").write_text("x\n")
    proc = exp("run", "-d", "--", "true", cwd=repo)
    assert "warning" not in proc.stderr
    run_id = proc.stdout.strip()
    tree = git("ls-tree", "-r", "--name-only", f"refs/experiments/{run_id}", cwd=repo).split()
    assert {"train.py", "environment.yml", "keyboard.py", "README.md"} <= set(tree)
    assert not set(SECRETISH) & set(tree)
    untracked = git("status", "--porcelain", "--untracked-files=all", cwd=repo)
    assert all(f"?? {name}" in untracked for name in SECRETISH)  # left as they were
    wait_done(run_id, repo)


def test_tracked_credential_file_ships_with_a_one_line_warning(repo: Path) -> None:
    (repo / ".env").write_text("A=1\n")
    (repo / "deploy.pem").write_text("k\n")
    git("add", ".env", "deploy.pem", cwd=repo)
    (repo / ".env").write_text("A=2\n")  # its current content ships, as for any tracked file
    proc = exp("run", "-d", "--", "true", cwd=repo)
    run_id = proc.stdout.strip()
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and ".env" in warnings[0] and "deploy.pem" in warnings[0]
    assert git("show", f"refs/experiments/{run_id}:.env", cwd=repo) == "A=2\n"
    assert wait_done(run_id, repo)["status"] == "succeeded"


NAMES = st.sampled_from(["a.txt", "dir/b.py", ".env", "dir/.env.x", "k.pem", "dir/id_rsa",
                         ".netrc", "e nv", "dir/x.key"])


@given(tracked=st.sets(NAMES, max_size=5), untracked=st.sets(NAMES, max_size=5))
@FAST
def test_snapshot_is_add_all_minus_untracked_credential_files(
        tmp_path_factory: pytest.TempPathFactory, tracked: set[str], untracked: set[str]) -> None:
    """The invariant, as docs/architecture.md states it: the snapshot's tree is `git add -A`
    on a copy of the index, minus untracked credential-like files; tracked ones are named."""
    from gitexp.git import snapshot

    root = make_repo(tmp_path_factory.mktemp("snap") / "r")
    for name in tracked | untracked:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    if tracked:
        git("add", "--", *tracked, cwd=root)
    index = tmp_path_factory.mktemp("idx") / "index"
    index.write_bytes((root / ".git" / "index").read_bytes())
    env = {"GIT_INDEX_FILE": str(index)}
    git("add", "-A", cwd=root, env=env)
    dropped = [n for n in untracked - tracked if secrets.secret_like_file(n)]
    if dropped:
        git("rm", "-q", "--cached", "--", *dropped, cwd=root, env=env)
    expected = git("write-tree", cwd=root, env=env).strip()
    snap = snapshot.take(Repo.discover(root))
    assert snap.tree == expected
    assert set(snap.secret_files) == {n for n in tracked if secrets.secret_like_file(n)}


# -- 3b. a job that prints a secret does not leak it ------------------------------------------
@given(secret_values=st.lists(st.text(min_size=4, max_size=12).filter(lambda s: "*" not in s),
                              min_size=1, max_size=3),
       pieces=st.lists(st.text(max_size=10), max_size=6), cuts=st.lists(st.integers(0, 200)))
@settings(max_examples=150, deadline=None)
def test_redactor_masks_values_split_anywhere(secret_values: list[str], pieces: list[str],
                                              cuts: list[int]) -> None:
    """Fed in arbitrary pieces, the streaming redactor masks every occurrence - the same
    bytes `redact` gives on the whole stream at once."""
    stream = "".join(p + secret_values[i % len(secret_values)]
                     for i, p in enumerate(pieces)).encode()
    redactor = secrets.Redactor(secret_values)
    out, start = b"", 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        out += redactor.feed(stream[start:cut])
        start = cut
    out += redactor.flush()
    assert out == secrets.redact_bytes(stream, secret_values)
    assert not any(v.encode() in out for v in secret_values)


def test_values_to_redact_are_the_configured_and_secret_named_ones(tmp_path: Path) -> None:
    """The worker masks the values of the names the launch published, gitexp's own and any
    variable named like a secret - not an author's name, an agent socket, or a short value."""
    store = FileStore(tmp_path)
    store.write("runs/r/secret-names.json", json.dumps(["MY_VAR"]).encode())
    env = {"MY_VAR": "value-one", "HF_TOKEN": 'tok"en\\x', "GITEXP_SMTP_PASSWORD": "smtp-pw",
           "GIT_AUTHOR_NAME": "Test User", "SSH_AUTH_SOCK": "/tmp/agent.1", "API_KEY": "abc",
           "HOME": "/home/me"}
    assert set(secrets.values_to_redact(store, "r", env)) == \
        {"value-one", 'tok"en\\x', 'tok\\"en\\\\x', "smtp-pw"}
    store.write("runs/r/secret-names.json", b"garbled")  # still masks what looks secret
    assert "smtp-pw" in secrets.values_to_redact(store, "r", env)


def test_job_printing_its_secret_leaves_only_a_mask(repo: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A configured secret the job prints - in two writes with a pause between, so the
    agent reads it in two pieces - and logs as a metric, is `***` in the log, the metrics,
    the results commit and on disk; the job itself still had the real value."""
    secret = "pa55-Word-8c1e7d"
    git("config", "exp.secrets", "DB_PASSWORD_X MY_VAR", cwd=repo)
    monkeypatch.setenv("MY_VAR", secret)
    job = ("import os, sys, time, json, hashlib; v = os.environ['MY_VAR'];"
           "sys.stdout.write('half ' + v[:7]); sys.stdout.flush(); time.sleep(0.6);"
           "print(v[7:] + ' end'); print('sha', hashlib.sha256(v.encode()).hexdigest());"
           "open(os.environ['GITEXP_METRICS'], 'a').write(json.dumps({'step': 1, 'note': v,"
           " 'loss': 0.5}) + '\\n')")
    run_id = exp("run", "-d", "--", "python", "-c", job, cwd=repo).stdout.strip()
    done = wait_done(run_id, repo)
    assert done["status"] == "succeeded"
    log = exp("logs", run_id, cwd=repo).stdout
    assert "half *** end" in log
    import hashlib
    assert f"sha {hashlib.sha256(secret.encode()).hexdigest()}" in log  # the job saw it
    everything = git("log", "-p", "--all", cwd=repo) + json.dumps(done)
    assert secret not in everything and "loss" in everything
    # The job's own scratch (its metrics spool) holds what it wrote until the agent, last
    # of all, removes it: only then is the disk scanned.
    wait_for(lambda: not (repo / ".git/gitexp/work" / run_id).exists(), what="agent cleanup")
    for path in (repo / ".git").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_run_of_a_run_id_resolves_only_its_own_ref(repo: Path) -> None:
    """`find` with a prefix or an exact id reads only refs/experiments/<that id>."""
    run_id = exp("run", "-d", "--", "true", cwd=repo).stdout.strip()
    wait_done(run_id, repo)
    assert find(Repo.discover(repo), run_id).id == run_id
    assert_user_error(exp("show", "../heads/main", cwd=repo, check=False))

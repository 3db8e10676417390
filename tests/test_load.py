"""Load: many launches at once (local target and Slurm), 10,000 runs in one repository, and
a log far bigger than the agent's memory bound.

Nothing here is mocked. The launches are real `git exp run -d` processes started together;
the 10,000 runs are the very commits gitexp writes, made with `git fast-import` by the
`bench_ls` generator; the log test drives `benchmarks/soak_log.py` (the 1 GB soak is
`make soak`). Time bounds are 10x the benchmarks' goals: they catch pathological
regressions, and the benchmarks check the goals themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from benchmarks import bench_ls

from gitexp.git import Repo, writeback
from gitexp.service import index
from gitexp.service.cores import MAX_WORKERS
from gitexp.stores import Store, read_range, size_of
from tests.helpers import BIN, exp, exp_json, git, wait_for
from tests.test_slurm_target import configure as configure_slurm
from tests.test_store_contract import store as contract_store

ROOT = Path(__file__).resolve().parent.parent
every_store = contract_store  # the store contract's fixture: file://, two GCS, ssh://
# The job: no Python start-up, so the launches and agents are what is measured. It leaves
# its metric in metrics.json (read by the agent) and says which run it is.
JOB = ["sh", "-c", 'echo "{\\"loss\\": $1}" > metrics.json; echo "job $1 done"', "job"]
TERMINAL_SUBJECT = (": succeeded", ": failed", ": cancelled", ": lost")


def launch_together(repo: Path, n: int, *extra: str) -> tuple[list[str], float]:
    """`git exp run -d [extra] -- JOB i` for i in 0..n-1, all started at once; the run ids
    in launch order and the wall time until the last launcher returned."""
    start = time.perf_counter()
    procs = [subprocess.Popen(["git", "exp", "run", "-d", "-n", "load", *extra, "--", *JOB,
                               str(i)], cwd=repo, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    took = time.perf_counter() - start
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, (p.returncode, out, err)
    return [out.strip() for out, _ in outs], took


def subjects(repo: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname:lstrip=2) %(contents:subject)",
              "refs/experiments/", cwd=repo)
    return dict(line.split(" ", 1) for line in out.splitlines())


def wait_written_back(repo: Path, ids: list[str], timeout: float) -> dict[str, str]:
    def done() -> dict[str, str] | None:
        subj = subjects(repo)
        return subj if all(subj.get(i, "").endswith(TERMINAL_SUBJECT) for i in ids) else None
    return wait_for(done, timeout=timeout, every=0.5, what=f"{len(ids)} runs written back")


def agents_of(repo: Path) -> list[int]:
    """Live gitexp agents working for `repo` (their command line names its store)."""
    needle = str(repo).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"gitexp.worker.agent" in cmd and needle in cmd:
            found.append(int(proc.name))
    return found


def tree_digest(root: Path) -> dict[str, str]:
    """Every file of the work tree (not .git) and its content hash."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts}


def metric_of(run: dict[str, Any]) -> float:
    return float(run["result"]["metrics"]["loss"])


def test_fifty_concurrent_local_launches(repo: Path) -> None:
    """50 `git exp run -d` at once from one dirty work tree: 50 distinct runs, each of the
    same snapshot tree, each written back `succeeded` with its own metric and log; the
    user's index, work tree, HEAD and branches byte-identical; `git fsck` clean; each run's
    mail in the one outbox; no agent, checkout, temporary index or half-written package
    cache left behind."""
    for key in ("exp.heartbeat", "exp.lostAfter"):  # the real defaults: 2 s, lost after 15 s
        git("config", "--unset", key, cwd=repo)
    (repo / "README.md").write_text("edited, not staged\n")
    (repo / "staged.txt").write_text("staged\n")
    git("add", "staged.txt", cwd=repo)
    (repo / "untracked.txt").write_text("untracked\n")
    index_before = (repo / ".git" / "index").read_bytes()
    files_before = tree_digest(repo)
    refs_before = git("for-each-ref", "refs/heads", "refs/tags", cwd=repo)
    head_before = (repo / ".git" / "HEAD").read_bytes()

    ids, took = launch_together(repo, 50)
    print(f"\n50 concurrent local launches returned in {took:.1f}s")
    assert len(set(ids)) == 50
    # Many live runs at once: `ls` observes each unfinished one in the store.
    start = time.perf_counter()
    exp("ls", cwd=repo)
    print(f"git exp ls with up to 50 live runs: {time.perf_counter() - start:.2f}s")
    subj = wait_written_back(repo, ids, timeout=300)
    assert all(subj[i].endswith(": succeeded") for i in ids), subj
    print(f"50 concurrent local runs written back {time.perf_counter() - start + took:.1f}s "
          "after launch")

    runs = {r["id"]: r for r in exp_json("ls", cwd=repo)}
    assert set(runs) == set(ids)
    for i, run_id in enumerate(ids):
        run = runs[run_id]
        assert run["status"] == "succeeded" and run["commit"] != run["snapshot"], run
        assert run["record"]["argv"] == [*JOB, str(i)]
        assert metric_of(run) == i
        log = git("show", f"refs/experiments/{run_id}:.gitexp-results/log.txt", cwd=repo)
        assert log == f"job {i} done\n"
    trees = {git("rev-parse", f"{r['snapshot']}^{{tree}}", cwd=repo).strip()
             for r in runs.values()}
    assert len(trees) == 1
    tree = trees.pop()
    for name in ("README.md", "staged.txt", "untracked.txt"):
        assert git("cat-file", "-p", f"{tree}:{name}", cwd=repo) == \
            (repo / name).read_text()

    assert (repo / ".git" / "index").read_bytes() == index_before
    assert tree_digest(repo) == files_before
    assert git("for-each-ref", "refs/heads", "refs/tags", cwd=repo) == refs_before
    assert (repo / ".git" / "HEAD").read_bytes() == head_before
    fsck = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=repo,
                          capture_output=True, text=True, check=False)
    assert fsck.returncode == 0 and not fsck.stdout.strip(), fsck
    wait_for(lambda: not agents_of(repo), timeout=60, what="every agent to exit")
    gitexp_dir = repo / ".git" / "gitexp"
    assert not list((gitexp_dir / "tmp").iterdir())  # no private index left
    assert not list((gitexp_dir / "work").iterdir())  # no checkout left
    assert not list((gitexp_dir / "cache").glob("*.tmp"))  # the environment's package cache
    # Each agent mailed its end into the one outbox (the default maildir sender), at once.
    mails = list(mailbox.Maildir(gitexp_dir / "outbox", create=False))
    assert sorted(m["X-Gitexp-Run"] for m in mails) == sorted(ids)
    assert {m["X-Gitexp-Event"] for m in mails} == {"succeeded"}


FLAKY_GIT = """#!/bin/sh
# The first object write of each kind by each caller fails as git does when a concurrent gc
# removed the object directory under it; everything else is the real git.
case " $* " in
  *" hash-object "*) verb=hash-object ;; *" mktree "*) verb=mktree ;;
  *" commit-tree "*) verb=commit-tree ;; *" update-index "*) verb=update-index ;;
  *) verb= ;;
esac
if [ -n "$verb" ] && [ ! -e "$FLAKY_DIR/$PPID-$verb" ]; then
  : > "$FLAKY_DIR/$PPID-$verb"
  echo "error: unable to create temporary file: No such file or directory" >&2
  echo "fatal: Unable to add (null) to database" >&2
  exit 128
fi
exec {git} "$@"
"""


def test_launch_and_write_back_retry_object_writes_lost_to_gc(repo: Path,
                                                             tmp_path: Path) -> None:
    """Every kind of object write gitexp makes (update-index, hash-object, mktree,
    commit-tree), in the launcher and in the agent, first fails the way the gc race makes it
    fail: the run still launches, succeeds and is written back."""
    real_git = shutil.which("git")
    assert real_git
    bin_dir, flaky = tmp_path / "bin", tmp_path / "flaky"
    bin_dir.mkdir()
    flaky.mkdir()
    (bin_dir / "git").write_text(FLAKY_GIT.replace("{git}", real_git))
    (bin_dir / "git").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FLAKY_DIR": str(flaky)}
    (repo / "new.txt").write_text("untracked, so the snapshot's `update-index` writes a blob\n")
    # `git-exp` itself: `git exp` would put git's exec-path ahead of the flaky git on PATH
    launch = subprocess.run(["git-exp", "run", "-d", "--", *JOB, "7"], cwd=repo,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=120, check=False)
    assert launch.returncode == 0, launch.stderr
    run_id = launch.stdout.strip()
    subj = wait_written_back(repo, [run_id], timeout=60)
    assert subj[run_id].endswith(": succeeded")
    assert git("show", f"refs/experiments/{run_id}:.gitexp-results/log.txt",
               cwd=repo) == "job 7 done\n"
    failed = {name.split("-", 1)[1] for name in os.listdir(flaky)}
    assert failed == {"update-index", "hash-object", "mktree", "commit-tree"}


def test_concurrent_first_pushes_create_the_store_repository_once(repo: Path,
                                                                 tmp_path: Path) -> None:
    """20 launches at once to a fresh file:// store each push their snapshot: the store's
    bare repository is created by one of them (concurrent `git init`s used to fail on
    config.lock: 5 of 20 here), and every snapshot arrives. Likewise 20 agents sharing a
    worker create their code cache at once."""
    from gitexp.git import Repo
    from gitexp.stores import transport
    from gitexp.stores.file import FileStore

    gitrepo = Repo.discover(repo)
    tree = gitrepo.rev_parse("HEAD^{tree}")
    assert tree
    commits = [gitrepo.commit_tree(tree, [], f"snapshot {i}\n") for i in range(20)]
    store = FileStore(tmp_path / "store")
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda c: transport.push_code(gitrepo, store, c), commits))
    assert transport.held_commits(store) == set(commits)
    code = tmp_path / "store" / transport.CODE_REPO
    assert git("--git-dir", str(code), "fsck", "--no-dangling", cwd=tmp_path) == ""

    cache = tmp_path / "worker" / transport.CODE_REPO
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda _: transport._init_bare(cache, "sha1"), range(20)))
    assert git("--git-dir", str(cache), "rev-parse", "--is-bare-repository",
               cwd=tmp_path).strip() == "true"
    assert [p.name for p in cache.parent.iterdir()] == [transport.CODE_REPO]  # no temp left


@pytest.mark.xdist_group("slurm")
def test_twenty_concurrent_slurm_launches(slurm_env: Any, repo: Path, tmp_path: Path) -> None:
    """20 `git exp run -t hpc -d` at once on the Slurm cluster: 20 distinct jobs, and all 20
    runs end `succeeded`, written back with their own metric."""
    store = tmp_path / "store"
    configure_slurm(repo, store.as_uri())
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "train", cwd=repo)
    ids, took = launch_together(repo, 20, "-t", "hpc")
    print(f"\n20 concurrent Slurm launches returned in {took:.1f}s")
    assert len(set(ids)) == 20
    jobs = {json.loads((store / "runs" / i / "handle.json").read_text())["job"] for i in ids}
    assert len(jobs) == 20
    start = time.perf_counter()

    def all_ended() -> list[dict[str, Any]] | None:
        listed = exp_json("ls", cwd=repo)  # writes back the runs that ended
        ended = [r for r in listed if r["status"] not in ("queued", "running")]
        return listed if len(ended) == 20 else None

    listed = wait_for(all_ended, timeout=300, every=1.0, what="20 Slurm runs to end")
    print(f"20 concurrent Slurm runs ended {time.perf_counter() - start + took:.1f}s "
          "after launch")
    by_id = {r["id"]: r for r in listed}
    for i, run_id in enumerate(ids):
        run = by_id[run_id]
        assert run["status"] == "succeeded", exp("logs", run_id, cwd=repo).stdout
        assert run["commit"] != run["snapshot"] and metric_of(run) == i  # written back
    assert subjects(repo) == {i: f"gitexp run {i}: succeeded" for i in ids}


# -- 10,000 runs ------------------------------------------------------------------------------
N = 10_000
WARM_LS, COLD_LS, DIFF, GC = 5.0, 30.0, 15.0, 15.0  # seconds: 10x the benchmarks' goals


def expected_metrics(i: int) -> tuple[float, float, str]:
    """What bench_ls.gitexp_stream gave run i: (loss, acc, status)."""
    lr, seed = bench_ls.params_of(i)
    loss, acc = round(lr * 2 + seed % 7 * 1e-3, 6), round(1 - lr, 6)
    return loss, acc, "failed" if i % 10 == 9 else "succeeded"


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One repository holding 10,000 written-back runs, made once per test process: xdist
    may tear module fixtures down between tests, so a second set-up finds it ready."""
    path = tmp_path_factory.getbasetemp() / "load10k" / "repo"
    if (path.parent / "complete").exists():
        yield path
        return
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir(parents=True)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(path.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": str(path.parent / "gitconfig")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # module scope: the per-test HOME is not set up yet
    try:
        base = bench_ls.make_repo(path, dvc=False)
        took = bench_ls.gen_gitexp(path, base, N)
        print(f"\ngenerated {N} runs in {took:.1f}s")
        (path.parent / "complete").touch()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield path


def timed_exp(*args: str, cwd: Path) -> tuple[str, float]:
    start = time.perf_counter()
    out = exp(*args, cwd=cwd, timeout=300).stdout
    return out, time.perf_counter() - start


def first_column(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:] if line.strip()]


@pytest.mark.xdist_group("load-10k")
def test_ls_at_ten_thousand_runs(big_repo: Path) -> None:
    """`ls` at 10,000 runs, cold and warm, with --limit, --where and --sort: the right runs
    in the right order, within 10x the benchmark goals."""
    (big_repo / ".git" / "gitexp" / "index.sqlite").unlink(missing_ok=True)
    table, cold = timed_exp("ls", "--all", cwd=big_repo)
    assert len(table.splitlines()) == N + 1
    table, warm = timed_exp("ls", "--limit", "5", cwd=big_repo)
    assert first_column(table) == [bench_ls.run_id(i) for i in range(N - 1, N - 6, -1)]
    print(f"\nls @ {N}: cold {cold:.2f}s (bound {COLD_LS}s), warm --limit {warm:.2f}s")
    assert cold < COLD_LS and warm < WARM_LS

    where = "loss < 0.0005 and status == succeeded"
    table, took = timed_exp("ls", "--where", where, "--columns", "run", cwd=big_repo)
    want = {bench_ls.run_id(i) for i in range(N)
            if expected_metrics(i)[0] < 0.0005 and expected_metrics(i)[2] == "succeeded"}
    assert want and set(first_column(table)) == want
    assert took < WARM_LS

    table, took = timed_exp("ls", "--sort", "-acc,loss", "--limit", "3", "--columns",
                            "run,acc,loss", cwd=big_repo)
    best = sorted((-acc, loss) for loss, acc, _ in map(expected_metrics, range(N)))[:3]
    got = [(-float(line.split()[1]), float(line.split()[2]))
           for line in table.splitlines()[1:]]
    assert got == best
    assert took < WARM_LS


INDEX_DUMP = """if True:
    import hashlib, os, sqlite3, sys
    from gitexp.git import Repo
    from gitexp.service import index
    repo = Repo.discover(sys.argv[1])
    index.path_of(repo).unlink(missing_ok=True)
    if sys.argv[2] == "serial":
        index.PARALLEL = 10**9
    worker, pids = index._index_in_worker, sys.argv[3]
    def spied(batch):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\\n")
        return worker(batch)
    index._index_in_worker = spied
    index.refresh(repo)
    db = sqlite3.connect(index.path_of(repo))
    for table, order in (("runs", "ref"), ("vals", "ref, kind, name")):
        rows = db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        print(table, len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
    print(sorted(db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")))
"""


@pytest.mark.xdist_group("load-10k")
def test_a_first_index_of_many_runs_is_read_on_every_core_and_is_the_same(
        big_repo: Path, tmp_path: Path) -> None:
    """A cold index of 10,000 runs is read by a process per core (forked, each with its own
    connection, `vals` filled without its indexes), and holds exactly what one process
    reading them all writes, indexes included."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    dumps = {}
    for how in ("parallel", "serial"):
        pids = tmp_path / f"{how}.pids"
        out = subprocess.run([sys.executable, "-c", INDEX_DUMP, str(big_repo), how, str(pids)],
                             capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        dumps[how] = out.stdout
        workers = set(pids.read_text().split()) if pids.exists() else set()
        cores = min(os.cpu_count() or 1, -(-N // index.BATCH), MAX_WORKERS)
        assert len(workers) == (cores if how == "parallel" and cores > 1 else 0)
    assert dumps["parallel"] == dumps["serial"]
    assert f"runs {N} " in dumps["serial"] and "('vals_ref',)" in dumps["serial"]


@pytest.mark.xdist_group("load-10k")
def test_ctrl_c_during_a_first_sync_on_every_core_ends_it_all_quietly(big_repo: Path) -> None:
    """Ctrl-C (SIGINT to the whole group, as a terminal sends it) while the index's workers
    read: `ls` ends 130 at once, no worker prints a traceback, no process is left."""
    index.path_of(Repo.discover(big_repo)).unlink(missing_ok=True)
    proc = subprocess.Popen([str(BIN / "git-exp"), "ls"], cwd=big_repo, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def workers() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _ppid(p) == proc.pid and b"git-exp" in _cmdline(p)]
    try:
        wait_for(lambda: len(workers()) >= 2, timeout=60, what="the index's workers")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.stderr is not None
    said = proc.stderr.read().decode(errors="replace")
    assert "Traceback" not in said, said
    wait_for(lambda: not workers(), timeout=10, what="the workers' end")


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.xdist_group("load-10k")
def test_gc_dry_run_at_ten_thousand_runs(big_repo: Path) -> None:
    """`gc --failed --older-than 100h --dry-run` at 10,000 runs selects exactly the failed
    runs launched more than 100 h ago, and removes nothing."""
    # Run i was launched (N - i) minutes before the fixture: failed and older than 100 h
    # means i % 10 == 9 and i < 4000 (the next failed run is 9 minutes younger).
    out, took = timed_exp("gc", "--failed", "--older-than", "100h", "--dry-run", cwd=big_repo)
    picked = {line.split()[2] for line in out.splitlines()}
    assert picked == {bench_ls.run_id(i) for i in range(N) if i % 10 == 9 and i < 4000}
    print(f"\ngc --dry-run @ {N}: {took:.2f}s (bound {GC}s), {len(picked)} selected")
    assert took < GC
    assert len(first_column(exp("ls", "--all", "--columns", "run", cwd=big_repo).stdout)) == N


@pytest.mark.xdist_group("load-10k")
def test_diff_at_ten_thousand_runs(big_repo: Path) -> None:
    """`diff` of two of 10,000 runs: their command, params, metrics and code differ as
    generated, quickly."""
    a, b = bench_ls.run_id(0), bench_ls.run_id(N - 1)
    out, took = timed_exp("diff", a, b, "--json", cwd=big_repo)
    report = json.loads(out)
    print(f"\ndiff @ {N}: {took:.2f}s (bound {DIFF}s)")
    assert took < DIFF
    assert report["command"]["a"][-1] == "0" and report["command"]["b"][-1] == str(N - 1)
    loss_a, _, _ = expected_metrics(0)
    loss_b, _, _ = expected_metrics(N - 1)
    assert report["metrics"]["loss"]["a"] == loss_a and report["metrics"]["loss"]["b"] == loss_b
    assert [f["path"] for f in report["code"]["files"]] == ["train.py"]
    assert report["params"]["seed"] == {"a": 0, "b": N - 1}


# -- a big log ----------------------------------------------------------------------------------
def test_capped_log_reads_only_head_and_tail_on_every_store(
        every_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write-back keeps a big log's head and tail in git (writeback.MAX_LOG_IN_GIT, here made
    small): every store says the log's size and reads just the two spans, which give the
    very bytes capping the whole log gives; a short log is kept whole."""
    store = every_store
    monkeypatch.setattr(writeback, "MAX_LOG_IN_GIT", 1000)
    log = b"".join(b"line %05d\n" % i for i in range(2000))  # 22,000 bytes
    store.write("runs/r/log", log)
    store.write("runs/r/short", log[:900])
    assert size_of(store, "runs/r/log") == len(log)
    assert size_of(store, "runs/r/missing") is None
    whole_reads: list[str] = []
    real_read = store.read
    monkeypatch.setattr(store, "read", lambda key, **kw: whole_reads.append(key) or
                        real_read(key, **kw))
    capped = writeback.capped_log(store, "runs/r/log")
    assert whole_reads == []
    assert capped == writeback._cap(log)
    assert capped.startswith(log[:500]) and capped.endswith(log[-500:])
    assert b"21000 bytes cut here" in capped
    assert read_range(store, "runs/r/log", len(log) - 5, 100) == log[-5:]
    assert writeback.capped_log(store, "runs/r/short") == log[:900]


def test_mail_reads_only_the_end_of_a_big_log(tmp_path: Path) -> None:
    """A failed/lost mail quotes the log's last lines: the agent's mailer (from its spool)
    and the dev side's `lost` mail (from the store) read only the log's end, and quote the
    same lines as from the whole log."""
    from gitexp.notify import content, dev, mailer
    from gitexp.stores.file import FileStore

    log = b"".join(b"line %07d\n" % i for i in range(400_000))  # 5.2 MB
    spool = tmp_path / "log"
    spool.write_bytes(log)
    store = FileStore(tmp_path / "store")
    store.write("runs/r/log", log)
    for end in (mailer._read_tail(spool), dev._log_tail(store, "r")):
        assert len(end) == mailer.LOG_TAIL_BYTES and log.endswith(end)
        assert content.tail(end) == content.tail(log)
    store.write("runs/short/log", b"only line\n")
    assert dev._log_tail(store, "short") == b"only line\n"


def test_big_log_streams_in_bounded_agent_memory(tmp_path: Path) -> None:
    """A job writes 100 MiB to stdout as fast as it can: the agent's RSS stays under
    150 MB (a log read whole at write-back would take it past that), every byte reaches the
    store in order, and git keeps the capped head and tail. `make soak` does 1 GB."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak_log.py"), "--size", "100M",
         "--bound-mb", "150", "--json", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    print(f"\n100 MiB log: {report['throughput_mb_s']:.0f} MiB/s, agent peak RSS "
          f"{max(report['max_vmrss_mb'], report['vmhwm_mb']):.1f} MB "
          f"({report['samples']} samples; wait4 {report['maxrss_with_children_mb']:.1f} MB)")
    assert report["problems"] == [] and proc.returncode == 0, report
    # The bound held by wait4's figure even when the job ended before the first sample.
    assert report["exit"] == 0 and report["maxrss_with_children_mb"] > 0

"""Team scale (issue 19): what `ls`, `fetch`, `push`, the pre-push hook, `gc` and `rm` cost
with 100,000 shared runs, each beside the same operation on plain one-ref-per-run git.

    .venv/bin/python benchmarks/bench_scale.py [--runs 100000] [--new 100] [--keep DIR]

Runs are generated with `git fast-import` as the very objects gitexp writes (bench_ls.py's
stream: snapshot commit, results commit with `.gitexp-results/`), `--runs` + `--new` of them,
in a producer repository that pushes them all to a bare remote (refs packed, as a server's
`git gc` leaves them). The newest `--new` then leave the remote (their objects stay) and two
clones fetch the rest: A through gitexp, B through plain git (the reference). Then the
`--new` runs come back and both fetch again. `--keep DIR` keeps the repositories, and a
second run with the same DIR reuses the producer and the remote (generating 100,000 runs
and pushing them takes a while).
Ref advertisement is counted from GIT_TRACE_PACKET: the bytes of ref lines the client
received. Goals (issue 19, at 100,000 runs): warm `ls` (default page, and a `--where`
matching 50) <= 0.3 s; cold `ls` <= 10 s; no-op fetch/push and the pre-push hook <= 0.5 s and
<= 100 KB of advertisement; gc and rm in time proportional to what they remove.
Each fetch of the new runs is also taken apart (`fetch_anatomy`): git's negotiation knobs
tried on copies of the clone, and where the wall time went by GIT_TRACE2 (docs/
architecture.md, "Team scale": why a fetch of 100 new runs cost what the clone holds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from bench_ls import ENV, gen_gitexp, make_repo, run_id

TRACE_LINE = re.compile(rb"packet:\s+(\S+)< (.*)$")
REF_LINE = re.compile(rb"^[0-9a-f]{40,64} refs/")
ROWS: list[tuple[str, str, str, str]] = []  # (what, gitexp, plain git, goal)
ARCHIVE_BATCH = 1000  # runs an archive ref holds (the layout measured at the end)
ARCHIVE_KEEP = 500  # the newest runs, one ref each


def sh(*argv: str, cwd: Path, stdin: bytes | None = None,
       env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env={**ENV, **(env or {})}, input=stdin,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-2000:]}")
    return proc.stdout.decode()


class Took(NamedTuple):
    """Wall and CPU seconds (the command's and its children's): on a loaded machine the
    wall time grows, the CPU time much less."""
    wall: float
    cpu: float


def timed(argv: list[str], cwd: Path, stdin: bytes | None = None) -> Took:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    sh(*argv, cwd=cwd, stdin=stdin)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Took(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def median(argv: list[str], cwd: Path, repeats: int = 3) -> Took:
    took = [timed(argv, cwd) for _ in range(repeats)]
    return Took(statistics.median(t.wall for t in took), statistics.median(t.cpu for t in took))


def advertised(argv: list[str], cwd: Path, scratch: Path) -> int:
    """Bytes of ref lines the client received while running `argv` (every git it started)."""
    trace = scratch / "trace"
    trace.unlink(missing_ok=True)
    sh(*argv, cwd=cwd, env={"GIT_TRACE_PACKET": str(trace)})
    total = 0
    for line in trace.read_bytes().splitlines() if trace.exists() else []:
        m = TRACE_LINE.search(line)
        if m and m.group(1) not in (b"upload-pack", b"receive-pack") and \
                REF_LINE.match(m.group(2)):
            total += len(m.group(2)) + 5  # the payload, its length prefix and newline
    return total


def objects_bytes(repo: Path) -> int:
    return sum(f.stat().st_size for f in (repo / ".git/objects").rglob("*") if f.is_file())


def row(what: str, ours: Took | str, plain: Took | str, goal: str = "") -> None:
    def fmt(v: Took | str) -> str:
        return f"{v.wall:.3f} s (CPU {v.cpu:.3f} s)" if isinstance(v, Took) else v
    ROWS.append((what, fmt(ours), fmt(plain), goal))
    print(f"  {what}: gitexp {fmt(ours)} | plain git {fmt(plain)} {goal}", flush=True)


def kb(n: int) -> str:
    return f"{n / 1000:.1f} KB"


# What a fetch of new runs into a clone holding many run commits spends its time on, and what
# git's own knobs change (issue 19's open problem: 51 s for 100 new runs in the archive layout).
FETCH_VARIANTS: list[tuple[str, list[str], list[str]]] = [  # (name, `git -c`s, fetch options)
    ("plain", [], []),
    ("--negotiation-tip=refs/heads/*", [], ["--negotiation-tip=refs/heads/*"]),
    ("negotiationAlgorithm=skipping", ["-c", "fetch.negotiationAlgorithm=skipping"], []),
    ("negotiationAlgorithm=noop (no haves)", ["-c", "fetch.negotiationAlgorithm=noop"], []),
    ("--no-write-fetch-head", [], ["--no-write-fetch-head"]),
]
NEGOTIATION = ("mark_complete_local_refs", "mark_common_remote_refs", "negotiation_v2")


def phases(trace: Path) -> dict[str, float]:
    """Wall seconds of a fetch's parts, from its GIT_TRACE2_EVENT file: the client's
    negotiation (its regions), the server's walk (pack-objects enumerating what to send),
    indexing the pack, and the connectivity check (`rev-list --objects --not --all`)."""
    out = dict.fromkeys(("negotiation", "server walk", "index-pack", "connectivity"), 0.0)
    argv: dict[tuple[str, int], str] = {}
    for line in trace.read_text().splitlines():
        e = json.loads(line)
        kind, key = e.get("event"), (e.get("sid", ""), e.get("child_id", -1))
        if kind == "region_leave" and e.get("label") in NEGOTIATION:
            out["negotiation"] += e["t_rel"]
        elif kind == "region_leave" and e.get("label") == "enumerate-objects":
            out["server walk"] += e["t_rel"]
        elif kind == "child_start":
            argv[key] = " ".join(e.get("argv", []))
        elif kind == "child_exit":
            started = argv.get(key, "")
            if "index-pack" in started or "unpack-objects" in started:
                out["index-pack"] += e["t_rel"]
            elif "rev-list" in started:
                out["connectivity"] += e["t_rel"]
    return out


def fetch_anatomy(label: str, clone: Path, fetch: list[str], scratch: Path) -> None:
    """`fetch` (a plain `git fetch ...` of new runs) tried with each of FETCH_VARIANTS on a
    copy of `clone` as it is (hard links: git writes by rename), each a row: wall and CPU,
    where the wall time went, and the bytes received."""
    for name, conf, opts in FETCH_VARIANTS:
        work = scratch / "fetch-anatomy"
        shutil.rmtree(work, ignore_errors=True)
        sh("cp", "-al", str(clone), str(work), cwd=scratch)
        trace = scratch / "trace2"
        trace.unlink(missing_ok=True)
        size = objects_bytes(work)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        sh("git", *conf, *fetch[1:], *opts, cwd=work, env={"GIT_TRACE2_EVENT": str(trace)})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        took = Took(time.perf_counter() - start, after.ru_utime - before.ru_utime
                    + after.ru_stime - before.ru_stime)
        parts = ", ".join(f"{k} {v:.2f}" for k, v in phases(trace).items())
        row(f"{label}: {name}", "", f"{took.wall:.3f} s (CPU {took.cpu:.3f} s); wall in "
            f"{parts}; {kb(objects_bytes(work) - size)} received")
    shutil.rmtree(scratch / "fetch-anatomy", ignore_errors=True)


def archive_layout(root: Path, prod: Path, held: list[str], new: int) -> None:
    """The layout issue 19 weighs (docs/architecture.md, "Team scale"), measured with plain
    git: finished runs folded into immutable archive refs of BATCH runs each, an archive
    commit having its runs' commits as parents (reachability: fetch, push and gc follow
    parents, never gitlinks) and one blob `runs` listing `<id> <commit>`; only the newest
    KEEP runs stay one ref each. What does a clone pay to share them?"""
    print(f"== the archive layout ({ARCHIVE_BATCH} runs an archive, the newest {ARCHIVE_KEEP} "
          "one ref each), plain git", flush=True)
    heads = [line.split() for line in sh(
        "git", "for-each-ref", "--sort=committerdate",
        "--format=%(objectname) %(refname:lstrip=2) %(committerdate:unix)", "refs/experiments/",
        cwd=prod).splitlines()]
    heads = [h for h in heads if f"refs/experiments/{h[1]}" not in held]
    folded, kept = heads[:-ARCHIVE_KEEP], heads[-ARCHIVE_KEEP:]
    start = time.perf_counter()
    archives = []
    for at in range(0, len(folded), ARCHIVE_BATCH):
        batch = sorted(folded[at:at + ARCHIVE_BATCH], key=lambda h: h[1])
        listing = "".join(f"{rid} {oid}\n" for oid, rid, _ in batch).encode()
        blob = sh("git", "hash-object", "-w", "--stdin", cwd=prod, stdin=listing).strip()
        tree = sh("git", "mktree", cwd=prod, stdin=f"100644 blob {blob}\truns\n".encode()).strip()
        parents = [arg for oid, _, _ in batch for arg in ("-p", oid)]
        # dated before its oldest run: an archive newer than its runs makes git's date-ordered
        # walks (the server's enumeration, the connectivity check) superlinear in the total
        date = f"{min(int(when) for _, _, when in batch) - 1} +0000"
        commit = sh("git", "commit-tree", tree, *parents, cwd=prod,
                    stdin=f"gitexp archive: {len(batch)} runs\n".encode(),
                    env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}).strip()
        archives.append(f"create refs/exp-archive/{batch[0][1]} {commit}\n")
    sh("git", "update-ref", "--stdin", cwd=prod, stdin="".join(
        f"delete {line.split()[0]}\n" for line in sh(  # an earlier run's, on --keep
            "git", "for-each-ref", "--format=%(refname)", "refs/exp-archive/", cwd=prod)
        .splitlines()).encode())
    sh("git", "update-ref", "--stdin", cwd=prod, stdin="".join(archives).encode())
    print(f"  folded {len(folded)} runs into {len(archives)} archives in "
          f"{time.perf_counter() - start:.1f}s", flush=True)
    remote, clone = root / "archived.git", root / "c"
    for path in (remote, clone):
        shutil.rmtree(path, ignore_errors=True)
    sh("git", "init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
    sh("git", "push", "-q", str(remote), "HEAD:refs/heads/main",
       "refs/exp-archive/*:refs/exp-archive/*",
       *(f"refs/experiments/{rid}:refs/experiments/{rid}" for _, rid, _ in kept), cwd=prod)
    sh("git", "pack-refs", "--all", cwd=remote)
    sh("git", "clone", "-q", str(remote), str(clone), cwd=root)
    fetch = ["git", "fetch", "-q", "origin", "+refs/exp-archive/*:refs/exp-archive/*",
             "+refs/experiments/*:refs/experiments/*"]
    row("archive layout: first fetch of every run", "", timed(fetch, clone))
    listings = [line.split()[0] + ":runs" for line in sh(
        "git", "for-each-ref", "--format=%(objectname)", "refs/exp-archive/",
        cwd=clone).splitlines()]
    row(f"archive layout: read every listing ({len(listings)} blobs, one cat-file)", "",
        timed(["git", "cat-file", "--batch"], clone, "".join(f"{x}\n" for x in listings)
              .encode()))
    row("archive layout: no-op fetch", "", median(fetch, clone), "(goal <= 0.5 s)")
    row("archive layout: no-op fetch, ref advertisement", "", kb(advertised(fetch, clone, root)),
        "(goal <= 100 KB)")
    sh("git", "push", "-q", str(remote), *(f"{r}:{r}" for r in held), cwd=prod)
    fetch_anatomy(f"archive layout: fetch of {new} new runs", clone, fetch, root)
    size = objects_bytes(clone)
    row(f"archive layout: fetch of {new} new runs", "", timed(fetch, clone))
    row(f"archive layout: fetch of {new} new runs, objects received", "",
        kb(objects_bytes(clone) - size))


def main() -> int:  # noqa: PLR0915 - one measurement after another, in order
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--keep", type=Path, help="build the repositories here and keep them")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    n, new = a.runs, a.new
    try:
        prod, remote, clone_a, clone_b = (root / x for x in ("prod", "remote.git", "a", "b"))
        if not (remote / "HEAD").exists():  # else: --keep DIR of an earlier run, reused
            base = make_repo(prod, dvc=False)
            took = gen_gitexp(prod, base, n + new)
            print(f"generated {n + new} runs in {took:.1f}s", flush=True)
            sh("git", "init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
            sh("git", "push", "-q", str(remote), "HEAD:refs/heads/main",
               "refs/experiments/*:refs/experiments/*", cwd=prod)
            sh("git", "pack-refs", "--all", cwd=remote)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        # The newest `new` runs leave the remote (their objects stay), to come back later.
        oids = dict(line.split()[::-1] for line in sh(
            "git", "for-each-ref", "--sort=-committerdate", f"--count={new}",
            "--format=%(objectname) %(refname)", "refs/experiments/", cwd=remote).splitlines())
        held = list(oids)
        sh("git", "update-ref", "--stdin", cwd=remote,
           stdin="".join(f"delete {r} {o}\n" for r, o in oids.items()).encode())
        n = len(sh("git", "for-each-ref", "refs/experiments/", cwd=remote).splitlines())
        for clone in (clone_a, clone_b):
            shutil.rmtree(clone, ignore_errors=True)
            sh("git", "clone", "-q", "--no-local", str(remote), str(clone), cwd=root)
        plain_fetch = ["git", "fetch", "-q", "origin", "+refs/experiments/*:refs/experiments/*"]
        plain_push = ["git", "push", "-q", "origin", "refs/experiments/*:refs/experiments/*"]

        row("start-up: `git exp ls -h` (the floor of every figure below)",
            median(["git", "exp", "ls", "-h"], clone_a), median(["git", "--version"], clone_b))
        print(f"== sharing, {n} runs on the remote", flush=True)
        row("first fetch of every run into a clone", timed(["git", "exp", "fetch"], clone_a),
            timed(plain_fetch, clone_b))
        row("no-op fetch", median(["git", "exp", "fetch"], clone_a), median(plain_fetch, clone_b),
            "(goal <= 0.5 s)")
        row("no-op fetch: ref advertisement", kb(advertised(["git", "exp", "fetch"], clone_a,
                                                            root)),
            kb(advertised(plain_fetch, clone_b, root)), "(goal <= 100 KB)")
        row("no-op push", median(["git", "exp", "push"], clone_a), median(plain_push, clone_b),
            "(goal <= 0.5 s)")
        row("no-op push: ref advertisement", kb(advertised(["git", "exp", "push"], clone_a,
                                                           root)),
            kb(advertised(plain_push, clone_b, root)), "(goal <= 100 KB)")
        sh("git", "exp", "hooks", "install", cwd=clone_a)
        pushes = []
        for clone in (clone_a, clone_b):
            sh("git", "fetch", "-q", "origin", cwd=clone)  # the other clone's commits
            sh("git", "reset", "-q", "--hard", "origin/main", cwd=clone)
            times = []
            for k in range(3):
                (clone / "train.py").write_text(f"# edit {k}\n")
                sh("git", "commit", "-qam", f"edit {k}", cwd=clone)
                times.append(timed(["git", "push", "-q", "origin", "HEAD:main"], clone))
            pushes.append(Took(statistics.median(t.wall for t in times),
                               statistics.median(t.cpu for t in times)))
        row("git push of a branch, pre-push hook on (A) / no hook (B)", *pushes,
            "(goal: hook <= 0.5 s more)")

        print(f"== {new} new runs", flush=True)
        sh("git", "update-ref", "--stdin", cwd=remote,
           stdin="".join(f"create {r} {o}\n" for r, o in oids.items()).encode())
        fetch_anatomy(f"fetch of {new} new runs, one ref per run", clone_b, plain_fetch, root)
        sizes = [objects_bytes(c) for c in (clone_a, clone_b)]
        row(f"fetch of {new} new runs", timed(["git", "exp", "fetch"], clone_a),
            timed(plain_fetch, clone_b))
        row(f"fetch of {new} new runs: objects received",
            kb(objects_bytes(clone_a) - sizes[0]), kb(objects_bytes(clone_b) - sizes[1]))

        total = n + new
        print(f"== ls, {total} runs", flush=True)
        plain_ls = ["git", "for-each-ref", "--count=50", "--sort=-committerdate",
                    "--format=%(refname) %(subject)", "refs/experiments/"]
        for extra in ("", "-wal", "-shm"):
            (clone_a / f".git/gitexp/index.sqlite{extra}").unlink(missing_ok=True)
        row("ls, cold (no index)", timed(["git", "exp", "ls"], clone_a),
            median(plain_ls, clone_b), "(goal <= 10 s)")
        row("ls, warm, default page", median(["git", "exp", "ls"], clone_a),
            median(plain_ls, clone_b), "(goal <= 0.3 s)")
        # run 0's loss: one of 97 x 7 (lr, seed) combinations, about total / 679 runs
        where = "loss == 0.0002"
        matched = len(sh("git", "exp", "ls", "--all", "--where", where, cwd=clone_a)
                      .splitlines()) - 1
        row(f"ls --where matching {matched}, warm",
            median(["git", "exp", "ls", "--where", where], clone_a),
            median(plain_ls, clone_b), "(goal <= 0.3 s)")
        row("ls --all, warm", median(["git", "exp", "ls", "--all"], clone_a),
            median(["git", "for-each-ref", "--format=%(refname) %(subject)",
                    "refs/experiments/"], clone_b))

        print("== removing", flush=True)
        doomed = [run_id(i) for i in range(new)]
        ours = timed(["git", "exp", "rm", *doomed], clone_a)
        row(f"rm of {new} runs", ours, timed(["git", "update-ref", "--stdin"], clone_b, "".join(
            f"delete refs/experiments/{i}\n" for i in doomed).encode()))
        # runs are a minute apart, a results commit 30 s after its launch: this age takes
        # the runs launched up to the one before run 2*new, the oldest `new` left
        last = sh("git", "log", "-1", "--format=%ct", f"refs/experiments/{run_id(2 * new - 1)}",
                  cwd=clone_a)
        age = time.time() - int(last)
        left = len(sh("git", "for-each-ref", "refs/experiments/", cwd=clone_a).splitlines())
        ours = timed(["git", "exp", "gc", "--older-than", f"{int(age)}s"], clone_a)
        gone = left - len(sh("git", "for-each-ref", "refs/experiments/", cwd=clone_a)
                          .splitlines())
        victims = [run_id(i) for i in range(new, new + gone)]
        row(f"gc removing {gone} runs", ours, timed(["git", "update-ref", "--stdin"], clone_b,
                                                    "".join(f"delete refs/experiments/{i}\n"
                                                            for i in victims).encode()))
        archive_layout(root, prod, held, new)
        print()
        print(f"| at {total} runs | gitexp | plain git (one ref per run) | goal |")
        print("|---|---|---|---|")
        for what, ours_s, plain_s, goal in ROWS:
            print(f"| {what} | {ours_s} | {plain_s} | {goal.strip('()')} |")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Team scale (issue 19): what `ls`, `fetch`, `push`, the pre-push hook, `gc` and `rm` cost
with 100,000 shared runs, gitexp's archive layout beside plain one-ref-per-run git.

    .venv/bin/python benchmarks/bench_scale.py [--runs 100000] [--new 100] [--chunk 1000]
        [--keep DIR] [--anatomy] [--migrate]

Runs are generated with `git fast-import` as the very objects gitexp writes (bench_ls.py's
stream: snapshot commit, results commit with `.gitexp-results/`), `--runs` + `--new` of them,
in a producer repository. Two bare remotes get all but the newest `--new`:
- `remote.git`, the reference: one plain glob push, one ref per run (refs packed, as a
  server's `git gc` leaves them);
- `archived.git`, gitexp's layout, made by gitexp: a producer holding `--chunk` runs at a
  time (and the chunk before) pushes them with `git exp push`, which folds the remote's
  oldest finished runs into `refs/exp-archive/*` once it holds more than exp.foldAt one ref
  each (service/archives.py); then repacked and its refs packed.
Clone A fetches from `archived.git` through `git exp fetch` (archives, one local ref per
run), clone B from `remote.git` through plain git. Then the producer pushes the `--new`
runs (`git exp push` / plain `git push`) and both clones fetch again. `--keep DIR` keeps the
repositories, and a second run with the same DIR reuses the producer and `remote.git`
(generating 100,000 runs takes a while; `archived.git` is made again).
Ref advertisement is counted from GIT_TRACE_PACKET: the bytes of ref lines the client
received (a `git push` of a branch: its own and its pre-push hook's). Goals (issue 19, at
100,000 runs): warm `ls` (default page, and a `--where` matching 50) <= 0.3 s; cold `ls` <=
10 s; no-op fetch/push and the pre-push hook <= 0.5 s and <= 100 KB of advertisement; a
fetch of 100 new runs about what they weigh; gc and rm in time proportional to what they
remove.
`--anatomy` takes the plain fetch of the new runs apart (`fetch_anatomy`: git's negotiation
knobs tried on copies of clone B, where the wall time went by GIT_TRACE2; docs/
architecture.md, "Team scale"). `--migrate` times the migration of an old remote: a copy of
`remote.git` folded by one `git exp push` from a clone holding every run (230 s at 100,000
runs; it was hours while each fold named its leases and deletions, git matching each of them
against every ref: 179 s an archive).
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


def producer(root: Path, prod: Path, name: str) -> Path:
    """An empty clone-to-be of the producer: its objects (an alternate), its branch, no run
    ref (the caller gives it the runs it should hold)."""
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    sh("git", "init", "-q", "-b", "main", str(path), cwd=root)
    (path / ".git/objects/info/alternates").write_text(f"{prod / '.git/objects'}\n")
    sh("git", "update-ref", "refs/heads/main", sh("git", "rev-parse", "HEAD", cwd=prod).strip(),
       cwd=path)
    sh("git", "reset", "-q", "--hard", cwd=path)
    return path


def hold(repo: Path, drop: list[str], take: list[str], oids: dict[str, str]) -> None:
    """Delete the run refs `drop` and create `take` (ref names) in `repo`, one transaction."""
    sh("git", "update-ref", "--stdin", cwd=repo, stdin="".join(
        [f"delete {r}\n" for r in drop] + [f"create {r} {oids[r]}\n" for r in take]).encode())


def build_archived(root: Path, prod: Path, remote: Path, runs: list[str],
                   oids: dict[str, str], *, chunk: int) -> list[Took]:
    """The archive layout, made by gitexp itself: a producer that holds CHUNK runs at a time
    (the previous CHUNK too, so that the newest 100 stay alike on both sides) pushes them with
    `git exp push`, which folds the remote's oldest runs once it holds more than exp.foldAt
    one ref each: what a team's pushes leave. Not one producer with every run: git matches
    each named refspec against every local ref (`count_refspec_match`), so a push of K runs
    from a clone of L refs costs K x L (see the report's "slowness" section)."""
    shutil.rmtree(remote, ignore_errors=True)
    sh("git", "init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
    for key, value in (("receive.autogc", "false"), ("gc.auto", "0")):
        sh("git", "config", key, value, cwd=remote)
    sh("git", "push", "-q", str(remote), "HEAD:refs/heads/main", cwd=prod)
    p = producer(root, prod, "p")
    pushes, held = [], []
    for at in range(0, len(runs), chunk):
        part = runs[at:at + chunk]
        hold(p, held[:-chunk] if len(held) > chunk else [], part, oids)
        held = held[-chunk:] + part
        pushes.append(timed(["git", "exp", "push", str(remote)], p))
    start = time.perf_counter()
    sh("git", "repack", "-adq", cwd=remote)  # what a server's `git gc` leaves
    sh("git", "pack-refs", "--all", cwd=remote)
    print(f"  the remote repacked, its refs packed in {time.perf_counter() - start:.1f}s",
          flush=True)
    return pushes


def namespaces(remote: Path) -> dict[str, int]:
    counts = {"refs/exp-archive/": 0, "refs/experiments/": 0}
    for ref in sh("git", "for-each-ref", "--format=%(refname)", cwd=remote).splitlines():
        for prefix in counts:
            counts[prefix] += ref.startswith(prefix)
    return counts


def commit(clone: Path, edit: str) -> list[str]:
    """A commit on the branch, and the `git push` of it (nothing else new)."""
    (clone / "train.py").write_text(f"# edit {edit}\n")
    sh("git", "commit", "-qam", f"edit {edit}", cwd=clone)
    return ["git", "push", "-q", "origin", "HEAD:main"]


def migrate(root: Path, prod: Path, remote: Path, runs: list[str],
            oids: dict[str, str]) -> None:
    """The migration of a remote in the old layout (one ref per run): a copy of it, folded by
    one `git exp push` from a clone that holds every run."""
    old = root / "migrated.git"
    shutil.rmtree(old, ignore_errors=True)
    sh("cp", "-a", str(remote), str(old), cwd=root)
    m = producer(root, prod, "m")
    hold(m, [], runs, oids)
    sh("git", "exp", "ls", cwd=m)  # the index, as a clone that fetched them has it
    took = timed(["git", "exp", "push", str(old)], m)
    after = namespaces(old)
    row(f"migration: the first `git exp push` to a remote of {len(runs)} runs one ref each, "
        f"folding them (then {after['refs/exp-archive/']} archives + "
        f"{after['refs/experiments/']} runs)", took, "")


def main() -> int:  # noqa: PLR0915 - one measurement after another, in order
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=1000,
                    help="runs each `git exp push` of the producer carries")
    ap.add_argument("--keep", type=Path, help="build the repositories here and keep them")
    ap.add_argument("--anatomy", action="store_true",
                    help="also take the plain fetch of the new runs apart (fetch_anatomy)")
    ap.add_argument("--migrate", action="store_true",
                    help="also time the fold of a remote in the old layout (~4 minutes at "
                         "100,000 runs)")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    n, new = a.runs, a.new
    try:
        prod, remote, archived = root / "prod", root / "remote.git", root / "archived.git"
        clone_a, clone_b = root / "a", root / "b"
        plain_build: Took | str = "(reused)"
        if not (remote / "HEAD").exists():  # else: --keep DIR of an earlier run, reused
            base = make_repo(prod, dvc=False)
            took = gen_gitexp(prod, base, n + new)
            print(f"generated {n + new} runs in {took:.1f}s", flush=True)
            sh("git", "init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
            plain_build = timed(["git", "push", "-q", str(remote), "HEAD:refs/heads/main",
                                 "refs/experiments/*:refs/experiments/*"], prod)
            sh("git", "pack-refs", "--all", cwd=remote)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        # The newest `new` runs leave the remote (their objects stay), to come back later.
        launched = [line.split() for line in sh(
            "git", "for-each-ref", "--sort=committerdate", "--format=%(objectname) %(refname)",
            "refs/experiments/", cwd=prod).splitlines()]
        oids = {ref: oid for oid, ref in launched}
        held = [ref for _, ref in launched[-new:]]
        runs = [ref for _, ref in launched[:-new]]
        there = dict(line.split()[::-1] for line in sh(
            "git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/experiments/",
            cwd=remote).splitlines())
        sh("git", "update-ref", "--stdin", cwd=remote, stdin="".join(
            f"delete {r} {there[r]}\n" for r in held if r in there).encode())
        n = len(runs)

        if a.keep and (archived / "HEAD").exists() and namespaces(archived)["refs/exp-archive/"]:
            print("== the archive layout of an earlier run, reused", flush=True)
            there = dict(line.split()[::-1] for line in sh(  # the new runs leave it again
                "git", "for-each-ref", "--format=%(objectname) %(refname)",
                "refs/experiments/", cwd=archived).splitlines())
            sh("git", "update-ref", "--stdin", cwd=archived, stdin="".join(
                f"delete {r} {there[r]}\n" for r in held if r in there).encode())
        else:
            print(f"== building the archive layout: a producer pushes {n} runs, {a.chunk} a "
                  "`git exp push`", flush=True)
            pushes = build_archived(root, prod, archived, runs, oids, chunk=a.chunk)
            built = Took(sum(t.wall for t in pushes), sum(t.cpu for t in pushes))
            row(f"pushing {n} runs to an empty remote: gitexp {len(pushes)} `git exp push` of "
                f"{a.chunk} (folding as they go) / plain git one glob push", built, plain_build)
            walls = sorted(t.wall for t in pushes)
            mid = statistics.median(walls)
            row(f"one `git exp push` of {a.chunk} runs (and its fold): median / max",
                f"{mid:.3f} / {walls[-1]:.3f} s", "")
        ours, plain = namespaces(archived), namespaces(remote)
        row("refs on the remote: archives / single runs",
            f"{ours['refs/exp-archive/']} / {ours['refs/experiments/']}",
            f"0 / {plain['refs/experiments/']}")

        for clone, origin in ((clone_a, archived), (clone_b, remote)):
            shutil.rmtree(clone, ignore_errors=True)
            sh("git", "clone", "-q", "--no-local", str(origin), str(clone), cwd=root)
        plain_fetch = ["git", "fetch", "-q", "origin", "+refs/experiments/*:refs/experiments/*"]
        plain_push = ["git", "push", "-q", "origin", "refs/experiments/*:refs/experiments/*"]

        row("start-up: `git exp ls -h` (the floor of every figure below)",
            median(["git", "exp", "ls", "-h"], clone_a), median(["git", "--version"], clone_b))
        print(f"== sharing, {n} runs on the remote: gitexp's archives (clone A) / one ref per "
              "run (clone B, plain git)", flush=True)
        row("first fetch of every run into a clone", timed(["git", "exp", "fetch"], clone_a),
            timed(plain_fetch, clone_b))
        got = len(sh("git", "for-each-ref", "refs/experiments/", cwd=clone_a).splitlines())
        row("runs in the clone after it", str(got),
            str(len(sh("git", "for-each-ref", "refs/experiments/", cwd=clone_b).splitlines())))
        row("no-op fetch", median(["git", "exp", "fetch"], clone_a), median(plain_fetch, clone_b),
            "(goal <= 0.5 s)")
        row("no-op fetch: ref advertisement", kb(advertised(["git", "exp", "fetch"], clone_a,
                                                            root)),
            kb(advertised(plain_fetch, clone_b, root)), "(goal <= 100 KB)")
        # The first compares the runs with the remote's (those the archives taken list alike
        # counted by the index: sharing._kept) and records the two sides in sync; the next
        # ones, in that same state, go by the record (sharing._settled_key). The index first
        # (untimed: the cold `ls` below is its figure), as any `ls` leaves it.
        sh("git", "exp", "ls", cwd=clone_a)
        time.sleep(2.5)  # a ref stamp younger than 2 s tells nothing (git.refs_stamp)
        row("no-op push, the first (no push in sync recorded yet)",
            timed(["git", "exp", "push"], clone_a),
            timed(plain_push, clone_b), "(goal <= 0.5 s)")
        row("no-op push, again", median(["git", "exp", "push"], clone_a),
            median(plain_push, clone_b), "(goal <= 0.5 s)")
        row("no-op push: ref advertisement", kb(advertised(["git", "exp", "push"], clone_a,
                                                           root)),
            kb(advertised(plain_push, clone_b, root)), "(goal <= 100 KB)")
        sh("git", "exp", "hooks", "install", cwd=clone_a)
        pushes = []
        for clone, verify in ((clone_a, []), (clone_a, ["--no-verify"]), (clone_b, [])):
            times = [timed(commit(clone, f"{k}{verify}") + verify, clone) for k in range(3)]
            pushes.append(Took(statistics.median(t.wall for t in times),
                               statistics.median(t.cpu for t in times)))
        row("git push of a branch (clone A): the pre-push hook on / `--no-verify`",
            f"{pushes[0].wall:.3f} / {pushes[1].wall:.3f} s", pushes[2],
            "(goal: hook <= 0.5 s more)")
        row("git push of a branch: ref advertisement (the hook's included)",
            kb(advertised(commit(clone_a, "adv"), clone_a, root)),
            kb(advertised(commit(clone_b, "adv"), clone_b, root)), "(goal <= 100 KB)")

        print(f"== {new} new runs", flush=True)
        # From the producer that holds every run (its index made first, untimed): git matches
        # each named refspec against every local ref, so this is K x L (the chunks' producer
        # holds 2 x --chunk runs). It takes the archives first: a push goes by the archives
        # its clone took, and one that took none pushes every archived run again.
        sh("git", "exp", "ls", cwd=prod)
        row(f"the producer takes the remote's archives (it holds their {n} runs): `git exp "
            "fetch`", timed(["git", "exp", "fetch", str(archived)], prod), "")
        row(f"the producer (holding all {n + new} runs) pushes {new} new runs",
            timed(["git", "exp", "push", str(archived)], prod),
            timed(["git", "push", "-q", str(remote), "refs/experiments/*:refs/experiments/*"],
                  prod))
        if a.anatomy:
            fetch_anatomy(f"fetch of {new} new runs, one ref per run", clone_b, plain_fetch, root)
        sizes = [objects_bytes(c) for c in (clone_a, clone_b)]
        row(f"fetch of {new} new runs", timed(["git", "exp", "fetch"], clone_a),
            timed(plain_fetch, clone_b))
        row(f"fetch of {new} new runs: objects received",
            kb(objects_bytes(clone_a) - sizes[0]), kb(objects_bytes(clone_b) - sizes[1]))
        ours = namespaces(archived)
        row("refs on the remote now: archives / single runs",
            f"{ours['refs/exp-archive/']} / {ours['refs/experiments/']}",
            f"0 / {namespaces(remote)['refs/experiments/']}")

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
        # A run launched here: its ref is loose and packed-refs as it was, so the index
        # reads that ref's file (index._loose_changes), not a listing of every ref
        sh("git", "exp", "run", "--force", "--", sys.executable, "-c", "pass", cwd=clone_a)
        time.sleep(2.5)  # a ref stamp younger than 2 s tells nothing (git.refs_stamp)
        row("ls, the first after a new run", timed(["git", "exp", "ls"], clone_a),
            median(plain_ls, clone_b), "(goal <= 0.3 s)")

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
        victim = run_id(n // 2)  # archived on the remote: its archive is replaced
        before = namespaces(archived)
        ours = timed(["git", "exp", "rm", "--remote", victim], clone_a)
        after = namespaces(archived)
        row(f"rm --remote of an archived run (archives {before['refs/exp-archive/']} -> "
            f"{after['refs/exp-archive/']})", ours,
            timed(["git", "push", "-q", "origin", f":refs/experiments/{victim}"], clone_b))
        if a.migrate:
            print("== migration", flush=True)
            migrate(root, prod, remote, runs, oids)
        print()
        print(f"| at {total} runs | gitexp (archives on the remote) | plain git (one ref per "
              "run) | goal |")
        print("|---|---|---|---|")
        for what, ours_s, plain_s, goal in ROWS:
            print(f"| {what} | {ours_s} | {plain_s} | {goal.strip('()')} |")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

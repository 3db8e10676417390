"""Issue 15 note: what a sweep's waiting runs cost. A sweep of --runs runs of `true` under
--max-parallel on the local target; every 0.1 s the agent processes of the repository are
counted and their resident memory summed (VmRSS, from /proc), until the last one is gone.

Printed: the peak number of agents, the peak total RSS of agents, how long the launch and
the whole sweep took, and the reference - before slots (issue 15), a sweep kept one agent
per run alive and waiting: 19 agents, ~400 MB for 20 runs (~20 GB for 1,000).

    python benchmarks/bench_sweep_agents.py [--runs 1000] [--max-parallel 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ENV, sh

REFERENCE = "before (issue 15): 19 agents, ~400 MB for 20 runs; ~20 GB for 1,000"


def agents(mark: bytes) -> dict[int, int]:
    """pid -> VmRSS in kB of every agent process whose argv holds `mark`. A child an agent
    forked shows its command line until it execs (the job, git): not counted."""
    found: dict[int, tuple[int, int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"gitexp.worker.agent" not in cmd or mark not in cmd:
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(fields.get("VmRSS", "0 kB").split()[0])
        found[int(proc.name)] = (int(fields.get("PPid", "0").strip()), rss)
    return {pid: rss for pid, (ppid, rss) in found.items() if ppid not in found}


class Sampler(threading.Thread):
    def __init__(self, mark: bytes) -> None:
        super().__init__(daemon=True)
        self.mark, self.stop = mark, threading.Event()
        self.peak_count = self.peak_rss = self.samples = 0
        self.per_agent: list[int] = []

    def run(self) -> None:
        while not self.stop.wait(0.1):
            seen = agents(self.mark)
            self.samples += 1
            self.peak_count = max(self.peak_count, len(seen))
            self.peak_rss = max(self.peak_rss, sum(seen.values()))
            self.per_agent.extend(seen.values())


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--max-parallel", type=int, default=2)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitexp-bench-sweep-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        sh("git", "init", "-q", cwd=repo)
        (repo / "README.md").write_text("bench\n")
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-qm", "init", cwd=repo)
        sampler = Sampler(str(repo / ".git").encode())
        sampler.start()
        start = time.monotonic()
        proc = subprocess.run(
            ["git", "exp", "run", "-d", "-n", "bench", "--sweep",
             "i=" + ",".join(map(str, range(a.runs))), "--max-parallel", str(a.max_parallel),
             "--", "true", "{i}"], cwd=repo, env=ENV, capture_output=True, text=True,
            check=False)
        launched = time.monotonic() - start
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        while agents(str(repo / ".git").encode()):
            time.sleep(0.5)
        total = time.monotonic() - start
        sampler.stop.set()
        sampler.join()
        rows = json.loads(sh("git", "exp", "ls", "--json", cwd=repo))
        ended: dict[str, int] = {}
        for row in rows:
            ended[row["status"]] = ended.get(row["status"], 0) + 1
    mean = sum(sampler.per_agent) / len(sampler.per_agent) if sampler.per_agent else 0
    print(f"sweep of {a.runs} runs of `true`, --max-parallel {a.max_parallel}, local target")
    print(f"peak agents at once: {sampler.peak_count} (goal <= {a.max_parallel})"
          f" {'ok' if sampler.peak_count <= a.max_parallel else 'OVER GOAL'}")
    print(f"peak RSS of all agents: {sampler.peak_rss / 1024:.1f} MB "
          f"(mean {mean / 1024:.1f} MB per agent; {sampler.samples} samples)")
    print(f"launch {launched:.1f} s, whole sweep {total:.1f} s; ended: {ended}")
    print(REFERENCE)
    return 0 if sampler.peak_count <= a.max_parallel and ended == {"succeeded": a.runs} else 1


if __name__ == "__main__":
    sys.exit(main())

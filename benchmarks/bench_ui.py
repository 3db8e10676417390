"""How fast is `git exp ui` at 10,000 runs with 5 metrics x 1,000 points each, measured in
headless Chromium: the first full paint of the runs table, and overlaying 50 runs' curves
on the compare page; and the server's memory (its peak RSS).

    .venv/bin/python benchmarks/bench_ui.py [--runs 10000] [--points 1000] [--keep DIR]

The runs are the commits gitexp writes (snapshot S, results commit R with `.gitexp-results/`,
both carrying `record.encode_message`), made with `git fast-import` as in bench_ls.py, each
with a metrics.jsonl of `--points` points of 5 metrics and `--lr`/`--bs` params in its argv.
Reference, in the same run: `git exp ls --all` (warm) on the same repository, the terminal's view.
Goals: table painted <= 1 s, 50 runs' curves overlaid <= 1 s (the first time: read from
git; again, the server keeps them encoded). Timed from navigation, until the frame after
the rows or charts were made (`window.gitexpPainted`, `window.gitexpCurves`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import compile_gitexp
from benchmarks.bench_ls import ENV, IDENT, _data, make_repo, run_id, timed

from gitexp.git import Repo
from gitexp.model.record import Environment, Result, RunRecord, encode_message

METRICS = ("loss", "val_loss", "acc", "val_acc", "lr_now")
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]
GOAL_TABLE, GOAL_CURVES = 1.0, 1.0


def series(i: int, points: int) -> bytes:
    """`points` lines as `gitexp.log` writes them: step, time and the 5 metrics."""
    rate = 0.002 + (i % 17) * 0.0005
    lines = []
    for step in range(points):
        decay = math.exp(-rate * step)
        lines.append(json.dumps({
            "step": step, "time": 1.7e9 + i * 60 + step * 0.5,
            "loss": round(decay + 0.05, 6), "val_loss": round(decay * 1.1 + 0.07, 6),
            "acc": round(1 - decay * 0.9, 6), "val_acc": round(1 - decay * 0.95, 6),
            "lr_now": round(0.1 * decay, 6)}))
    return ("\n".join(lines) + "\n").encode()


def stream(repo: Path, base: str, n: int, points: int, packages: str) -> bytes:
    """The fast-import stream of `n` written-back runs (see the module docstring)."""
    out = bytearray()
    now = time.time()
    for i in range(n):
        lr, bs = round(0.0001 * (1 + i % 97), 6), 16 * (1 + i % 4)
        launched = now - (n - i) * 60.0
        rid = run_id(i)
        rec = RunRecord(
            id=rid, argv=["python", "train.py", "--lr", str(lr), "--bs", str(bs)], cwd="",
            base=base, branch="main", user="Bench <bench@localhost>", launched_at=launched,
            target="local", backend="local", store=(repo / ".git/gitexp/store").as_uri(),
            env=Environment(python="3.11.7", platform="Linux-x86_64", packages=packages))
        data = series(i, points)
        final = json.loads(data.splitlines()[-1])
        metrics = {m: final[m] for m in METRICS}
        res = Result(status="failed" if i % 10 == 9 else "succeeded",
                     exit_code=1 if i % 10 == 9 else 0, started_at=launched + 0.2,
                     ended_at=launched + 30.0, host="bench", metrics=metrics)
        who = f"{IDENT} {int(launched)} +0000".encode()
        out += b"commit refs/experiments/%s\nmark :%d\nauthor %s\ncommitter %s\n" % (
            rid.encode(), i + 1, who, who)
        out += _data(encode_message(rec, None).encode()) + f"from {base}\n".encode()
        out += b"M 100644 inline train.py\n" + _data(f"# run {i}\n".encode())
        who = f"{IDENT} {int(launched) + 30} +0000".encode()
        out += b"commit refs/experiments/%s\nauthor %s\ncommitter %s\n" % (rid.encode(), who, who)
        out += _data(encode_message(rec, res).encode()) + b"from :%d\n" % (i + 1)
        files = {
            "log.txt": f"epoch 1 loss {metrics['loss']}\n".encode(), "metrics.jsonl": data,
            "record.json": json.dumps(rec.to_dict(), indent=2, sort_keys=True).encode(),
            "result.json": json.dumps(res.to_dict(), indent=2, sort_keys=True).encode(),
        }
        for name, blob in files.items():
            out += f"M 100644 inline .gitexp-results/{name}\n".encode() + _data(blob)
        out += f"M 100644 {packages} .gitexp-results/packages.txt\n\n".encode()
    return bytes(out)


def fabricate(path: Path, n: int, points: int) -> float:
    """A repository at `path` with `n` written-back runs; the seconds it took."""
    start = time.perf_counter()
    base = make_repo(path, dvc=False)
    packages = Repo.discover(path).hash_object(b"numpy==2.1.0\ntorch==2.5.1\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, env=ENV, check=True,
                   input=stream(path, base, n, points, packages))
    return time.perf_counter() - start


def start_ui(repo: Path) -> tuple[subprocess.Popen[str], str]:
    """`git exp ui --no-open` on a free port; its process and URL (its first stdout line)."""
    # git-exp itself, not `git exp`: its pid is the server's, whose memory is measured
    proc = subprocess.Popen(["git-exp", "ui", "--no-open"], cwd=repo, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        why = proc.stderr.read() if proc.stderr else ""
        raise SystemExit(f"git exp ui did not start: {url} {why}")
    return proc, url


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    now = int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status)[1])  # type: ignore[index]
    return now / 1024, peak / 1024


def measure(url: str, ids: list[str]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "#/")
        page.wait_for_function("() => window.gitexpPainted", timeout=60_000)
        figures["table_cold"] = page.evaluate("window.gitexpPainted") / 1000
        tables = []
        for _ in range(3):  # again: the server has listed them (and keeps that listing)
            page.goto("about:blank")
            page.goto(url + "#/")
            page.wait_for_function("() => window.gitexpPainted", timeout=60_000)
            tables.append(page.evaluate("window.gitexpPainted") / 1000)
        figures["table"] = sorted(tables)[1]
        figures["rows"] = page.locator(".grid .row").count()
        curves = []
        for _ in range(3):  # the first reads the 50 series from git; then the server has them
            page.goto("about:blank")
            page.goto(url + "#/compare?ids=" + ",".join(ids))
            page.wait_for_function("() => window.gitexpCurves", timeout=60_000)
            curves.append(page.evaluate("window.gitexpCurves") / 1000)
        figures["curves_cold"], figures["curves"] = curves[0], sorted(curves[1:])[0]
        figures["charts"] = page.locator(".chart canvas").count()
        browser.close()
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000)
    ap.add_argument("--compare", type=int, default=50)
    ap.add_argument("--keep", type=Path, help="build the repository here and keep it")
    a = ap.parse_args()
    compile_gitexp()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"bench_ui needs {CHROMIUM}: scripts/install-services.sh installs it")
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-ui-"))
    repo = root / "repo"
    try:
        if not (repo / ".git").exists():
            took = fabricate(repo, a.runs, a.points)
            print(f"generated {a.runs} runs x {len(METRICS)} metrics x {a.points} points "
                  f"in {took:.1f}s")
        timed(["git", "exp", "ls", "--all"], repo)  # the index, built once
        ls = sorted(timed(["git", "exp", "ls", "--all"], repo) for _ in range(3))[1]
        proc, url = start_ui(repo)
        try:
            ids = [run_id(i) for i in range(a.runs - 1, a.runs - 1 - a.compare, -1)]
            figures = measure(url, ids)
            now, peak = rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        print(f"runs table, first full paint: {figures['table']:.2f} s (goal <= "
              f"{GOAL_TABLE:.0f} s; {int(figures['rows'])} rows in the DOM; the very first, "
              f"as the server starts and lists every run: {figures['table_cold']:.2f} s)")
        print(f"compare, {a.compare} runs' curves overlaid in {len(METRICS)} charts, from "
              f"navigation: {figures['curves_cold']:.2f} s reading them from git (goal <= "
              f"{GOAL_CURVES:.0f} s), {figures['curves']:.2f} s once the server keeps them")
        print(f"server memory: {now:.0f} MB now, {peak:.0f} MB peak")
        print(f"reference: `git exp ls --all` warm on the same runs: {ls:.2f} s; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        ok = figures["table"] <= GOAL_TABLE and figures["curves_cold"] <= GOAL_CURVES
        print("goals met" if ok else "GOALS MISSED")
        return 0 if ok else 1
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())

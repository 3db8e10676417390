"""`git exp report -o runs.html`: one self-contained page, readable offline."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import make_repo
from tests.helpers import exp, exp_json, git

TRAIN = """\
import sys, gitexp
lr = float(sys.argv[1])
for step in range(20):
    gitexp.log(step=step, loss=1.0 / (1 + lr * step), acc=min(1.0, lr * step / 10))
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def frozen(page: str) -> dict[str, Any]:
    """The data a frozen page carries (its <script type="application/json"> block)."""
    text = page.split('<script type="application/json" id="gitexp-data">', 1)[1]
    return json.loads(text.split("</script>", 1)[0])


def test_the_report_is_one_offline_page_with_table_curves_and_records(tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN})
    git("config", "exp.notify.on", "none", cwd=repo)
    # Unasked (no -o), the page goes to gitexp's own folder, not into the next snapshot.
    proc = exp("report", cwd=repo)
    default = repo / ".git" / "gitexp" / "out" / "runs.html"
    assert frozen(default.read_text())["table"]["total"] == 0 and f"wrote {default}" in proc.stderr
    assert git("status", "--porcelain", cwd=repo) == ""
    exp("run", "--", "python", "train.py", "0.1", cwd=repo)
    exp("run", "--", "python", "train.py", "0.4", "2", cwd=repo, check=False)
    runs = exp_json("ls", cwd=repo)
    exp("report", "-o", "runs.html", cwd=repo)
    page = (repo / "runs.html").read_text()
    # Self-contained: nothing is fetched; the only scripts that run are its own, by hash.
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.DOTALL)
    assert not re.search(r"<(script|link|img)[^>]*\s(src|href)=['\"](?!data:|#)", markup)
    assert "@import" not in markup
    [csp] = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 3  # uPlot, ECharts, the app
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    data = frozen(page)
    # The runs table: every run, its status and its final metrics.
    table = data["table"]
    assert [(r["id"], r["status"]) for r in table["rows"]] == [(r["id"], r["status"])
                                                               for r in runs]
    assert {r["status"] for r in runs} == {"succeeded", "failed"}
    assert table["metrics"] == ["loss", "acc"]
    # Curves: every run's series, drawn in the page (tests/test_ui.py looks at them drawn).
    for run in runs:
        series = data["series"][run["id"]]
        assert series["step"] == list(range(20)) and len(series["metrics"]["loss"]) == 20
    # Each run's record, with its exact command and snapshot.
    for run in runs:
        detail = data["runs"][run["id"]]
        assert detail["snapshot"] == run["snapshot"] and detail["commit"] == run["commit"]
    assert data["runs"][runs[0]["id"]]["record"]["argv"] == ["python", "train.py", "0.4", "2"]
    # A report of chosen runs, with a title of its own.
    exp("report", runs[1]["id"], "-o", "one.html", "--title", "lr 0.1", cwd=repo)
    page = (repo / "one.html").read_text()
    data = frozen(page)
    assert "<title>lr 0.1</title>" in page and data["subtitle"].startswith("1 run(s)")
    assert list(data["runs"]) == [runs[1]["id"]] and runs[0]["id"] not in page

"""`git exp report -o runs.html`: one self-contained page, readable offline."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from PIL import Image

from tests.conftest import make_repo
from tests.helpers import exp, exp_json, git

TRAIN = """\
import sys, gitexp
lr = float(sys.argv[1])
for step in range(20):
    gitexp.log(step=step, loss=1.0 / (1 + lr * step), acc=min(1.0, lr * step / 10))
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def test_the_report_is_one_offline_page_with_table_curves_and_records(tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN})
    git("config", "exp.notify.on", "none", cwd=repo)
    # Unasked (no -o), the page goes to gitexp's own folder, not into the next snapshot.
    proc = exp("report", cwd=repo)
    default = repo / ".git" / "gitexp" / "out" / "runs.html"
    assert "No runs yet" in default.read_text() and f"wrote {default}" in proc.stderr
    assert git("status", "--porcelain", cwd=repo) == ""
    exp("run", "--", "python", "train.py", "0.1", cwd=repo)
    exp("run", "--", "python", "train.py", "0.4", "2", cwd=repo, check=False)
    runs = exp_json("ls", cwd=repo)
    exp("report", "-o", "runs.html", cwd=repo)
    page = (repo / "runs.html").read_text()
    # Self-contained: nothing is fetched, nothing runs.
    assert "<script" not in page
    assert not re.search(r"(src|href)=['\"](?!data:|#)", page), "an external reference"
    assert "@import" not in page and "url(" not in page
    # The runs table: every run, its status and its final metrics.
    table = page.split("<table class='runs'>", 1)[1].split("</table>", 1)[0]
    for run in runs:
        assert run["id"] in table and f">{run['status']}<" in table
    assert {r["status"] for r in runs} == {"succeeded", "failed"}
    assert "<th class='num'>loss</th>" in table
    # Curves: inline PNGs, one per metric, overlaying both runs.
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 2
    titles = set()
    for data in images:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert all(run["id"] in image.info["Description"] for run in runs)
        titles.add(image.info["Title"])
    assert titles == {"loss", "acc"}
    # Each run's record, with its exact command and snapshot.
    for run in runs:
        assert f"id='run-{run['id']}'" in page and run["snapshot"] in page
    assert json.dumps(["python", "train.py", "0.4", "2"], indent=2).replace("\n", "\n    ") \
        .replace('"', "&quot;") in page
    # A report of chosen runs, with a title of its own.
    exp("report", runs[1]["id"], "-o", "one.html", "--title", "lr 0.1", cwd=repo)
    page = (repo / "one.html").read_text()
    assert "<title>lr 0.1</title>" in page and "1 run(s)" in page
    assert runs[1]["id"] in page and runs[0]["id"] not in page

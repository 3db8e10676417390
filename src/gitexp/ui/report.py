"""`git exp report`: the web view frozen into one self-contained, offline HTML file.

The page is `git exp ui`'s own front end (`static/app.js`, the vendored chart libraries and
the stylesheet, all inlined) with its data in a `<script type="application/json">` block
instead of a server: the runs table (sortable, columns to choose, equal ones to hide),
compare (curves overlaid, parallel coordinates), and each run's page (record, metrics and
curves, declared plots, the end of its log). Nothing is fetched: a Content-Security-Policy
in the page allows exactly its own inline scripts (by hash) and no connection at all.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import time
from typing import Any

from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.model.row import row_of
from gitexp.printable import printable
from gitexp.service import where as w
from gitexp.service.runs import Run
from gitexp.ui import assets, data

MAX_SERIES_RUNS = 200  # runs whose curves the page carries: the first ones, as listed
MAX_DETAILED = 200  # runs whose own page (record, plots, log's end) it carries
MAX_PARALLEL_METRICS = 8
LOG_TAIL = 16 << 10
VENDOR = ("vendor/uPlot.iife.min.js", "vendor/echarts.min.js")
# Inside a <script> block, JSON must not close it (`</script>`), open a comment (`<!--`) or
# hold the separators old parsers took for line ends: written as \u escapes.
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
            "\u2029": "\\u2029"}


def embed(value: Any) -> str:
    """`value` as JSON that is safe inside an HTML <script> element."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return "".join(_ESCAPES.get(c, c) for c in text) if any(c in text for c in _ESCAPES) \
        else text


def collect(repo: Repo, config: Config, runs: list[Run], *, title: str) -> dict[str, Any]:
    """Everything the frozen page shows, for `runs` (newest first, as given)."""
    rows = [row_of(run.record, run.result, run.commit) for run in runs]
    w.add_file_params(repo, rows)
    slim = data.clean_rows([data.slim(row) for row in rows])
    table = data.Table(rows=slim, metrics=data.names(slim, "metrics"),
                       params=data.names(slim, "params"), same=data.same(slim))
    curves = data.series(repo, config, table, [run.id for run in runs[:MAX_SERIES_RUNS]])
    detailed: dict[str, Any] = {}
    for run in runs[:MAX_DETAILED]:
        page = data.run_page(repo, config, run)
        page["live"] = False  # a page of the past: nothing to follow or cancel
        page["log"] = data.log_chunk(repo, config, run, -1, tail=LOG_TAIL)["text"]
        detailed[run.id] = page
    return {
        "title": printable(title),
        "subtitle": f"{len(runs)} run(s), generated {time.strftime('%Y-%m-%d %H:%M')} by gitexp",
        "table": table.page(0, len(slim)), "series": curves["series"], "runs": detailed,
        "parallel": {m: data.parallel(table, m) for m in table.metrics[:MAX_PARALLEL_METRICS]},
    }


def render(repo: Repo, config: Config, runs: list[Run], *, title: str | None = None) -> str:
    """The one HTML file."""
    found = collect(repo, config, runs, title=title or f"gitexp runs: {repo.root.name}")
    scripts = [assets.read(name) for name in (*VENDOR, "app.js")]
    hashes = " ".join(f"'sha256-{_digest(s)}'" for s in scripts)
    csp = (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
           "img-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")
    style = assets.read("vendor/uPlot.min.css") + assets.read("style.css")
    head, body = _shell()
    return "".join([
        head.replace("{{csp}}", csp).replace("{{title}}", html.escape(found["title"])),
        f"<style>{style}</style>",
        f'<script type="application/json" id="gitexp-data">{embed(found)}</script>',
        body, *(f"<script>{s}</script>" for s in scripts), "</body></html>\n",
    ])


def _shell() -> tuple[str, str]:
    head = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta http-equiv="Content-Security-Policy" content="{{csp}}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,"><title>{{title}}</title>')
    body = ('</head><body><header id="top"><a class="brand" href="#/">gitexp</a><nav>'
            '<a href="#/">Runs</a><a href="#/compare" id="nav-compare">Compare</a></nav>'
            '<span id="where-am-i"></span></header><main id="main"></main>')
    return head, body


def _digest(script: str) -> str:
    """A CSP source hash: base64 of the SHA-256 of the script's text as the page holds it."""
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()

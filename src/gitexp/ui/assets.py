"""The front end shipped in `static/`: which files there are, and the page around them."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
# the only files served, by their URL name (and type): nothing else under static/ is
FILES = {
    "app.js": "text/javascript", "style.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript", "vendor/uPlot.min.css": "text/css",
    "vendor/echarts.min.js": "text/javascript",
}


def read(name: str) -> str:
    """The text of one of FILES (a KeyError for any other name: never a path from outside)."""
    if name not in FILES:
        raise KeyError(name)
    return (STATIC / name).read_text(encoding="utf-8")


def page(token: str) -> str:
    """The one HTML page of the live view: this session's token in a meta tag."""
    return (STATIC / "index.html").read_text(encoding="utf-8").replace("{{token}}", token)

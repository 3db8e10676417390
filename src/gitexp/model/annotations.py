"""Tags and notes given to a run after its launch: the format, and the one parser.

One event a line, `<unix time> tag|untag|note <text>`. Lines only ever add up, so the notes
of two clones merge line by line (sorted, time first) and replaying them in order gives the
run's tags and notes. What is read back may come from anyone with push access: only
well-formed lines count, and every text is checked before it is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitexp.model.checks import text_problem

MAX_NOTES = 64 << 10  # bytes of one run's lines read: more is damage or a forgery
MAX_TEXT = 1000  # characters of one note
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,62}")  # fullmatch
_LINE = re.compile(r"(\d{1,12}) (tag|untag|note) (.+)")


@dataclass(frozen=True)
class Annotations:
    tags: tuple[str, ...] = ()  # sorted
    notes: tuple[tuple[int, str], ...] = ()  # (unix time, text), oldest first


def line(kind: str, text: str, at: int) -> str:
    return f"{at:010d} {kind} {text}"


def parse(data: bytes) -> Annotations:
    tags: set[str] = set()
    notes: list[tuple[int, str]] = []
    events = []
    for raw in data[:MAX_NOTES].decode("utf-8", errors="replace").splitlines():
        match = _LINE.fullmatch(raw)
        if match:
            events.append((int(match[1]), match[2], match[3]))
    for at, kind, text in sorted(events, key=lambda e: e[0]):  # stable: same-second order kept
        if kind == "note" and len(text) <= MAX_TEXT and not text_problem(text, MAX_TEXT):
            notes.append((at, text))
        elif kind == "tag" and TAG.fullmatch(text):
            tags.add(text)
        elif kind == "untag":
            tags.discard(text)
    return Annotations(tuple(sorted(tags)), tuple(notes))

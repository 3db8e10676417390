"""The one rule for showing text that came from a run (a teammate's record, a store, a log, a
file name) on a terminal or in a mail: one line, nothing the terminal would obey, bounded.

It imports nothing: the git hooks print through it too, and a hook must start fast.
`cli._render.printable` is this very function.
"""

from __future__ import annotations

LIMIT = 4096  # characters of one value shown; the rest is counted, not printed
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, limit: int | None = LIMIT) -> str:
    """`text` with every character a terminal would act on written as Python writes it in
    a string literal (`\\x1b`, `\\x9b`, `\\u202e`, `\\n`...), and cut after `limit`
    characters with `… (N more bytes)`.

    Escaped: C0 and C1 controls, DEL, line and paragraph separators, format characters
    (bidi overrides and isolates, zero-width ones), lone surrogates, unassigned and private
    code points: whatever `str.isprintable` refuses. Letters of every script (`λ`, `日本`)
    stay as they are. Linear in the length of `text`."""
    more = ""
    if limit is not None and len(text) > limit:
        rest = text[limit:].encode("utf-8", errors="surrogatepass")
        more = f"… ({len(rest)} more bytes)"
        text = text[:limit]
    if not text.isprintable():  # at C speed: the common case ends here
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    return text + more


def _escape(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else (f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")

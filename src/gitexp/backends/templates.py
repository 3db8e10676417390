"""The files in `templates/` (run.sh, Dockerfile, gce-startup.sh, sbatch.sh, k8s-job.yaml):
found in the installed wheel or in a source checkout, and rendered safely.

Placeholders are `{{name}}`. Every value is quoted for the file's language before it goes in
(shell by default), so a value can never become code; a placeholder without a value, or a
value without a placeholder, is an error rather than a silently broken script.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

from gitexp.errors import GitexpError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
Value = str | int | float | bool
Quote = Callable[[str], str]


def templates_dir() -> Path:
    """`gitexp/templates` inside the wheel (hatch force-include), else `<checkout>/templates`."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "templates", here.parents[2] / "templates"):
        if candidate.is_dir():
            return candidate
    raise GitexpError("gitexp's templates are missing from this installation",
                      hint="reinstall gitexp (`pip install --force-reinstall gitexp`)")


def path(name: str) -> Path:
    found = templates_dir() / name
    if not found.is_file():
        raise GitexpError(f"template {name!r} is missing from {templates_dir()}",
                          hint="reinstall gitexp (`pip install --force-reinstall gitexp`)")
    return found


def read(name: str) -> str:
    return path(name).read_text(encoding="utf-8")


def shell_quote(value: str) -> str:
    return shlex.quote(value)


class ShellWord(str):
    """A word that is already a shell expression (`"$run"`): put into a command as it is."""

    __slots__ = ()


def shell_command(argv: list[str]) -> str:
    """`argv` as one shell command line: every word quoted, but for ShellWords."""
    return " ".join(a if isinstance(a, ShellWord) else shlex.quote(a) for a in argv)


def json_quote(value: str) -> str:
    """A JSON string literal: also a valid YAML scalar (for k8s-job.yaml)."""
    return json.dumps(value)


def render(name: str, values: Mapping[str, Value], *, quote: Quote = shell_quote) -> str:
    return render_text(read(name), values, quote=quote, what=name)


def render_text(text: str, values: Mapping[str, Value], *, quote: Quote = shell_quote,
                what: str = "template") -> str:
    wanted = set(PLACEHOLDER.findall(text))
    missing, unused = wanted - values.keys(), values.keys() - wanted
    if missing or unused:
        raise GitexpError(
            f"{what}: " + "; ".join(
                part for part in (
                    f"no value for {', '.join(sorted(missing))}" if missing else "",
                    f"no placeholder for {', '.join(sorted(unused))}" if unused else "",
                ) if part),
            hint="a customised template must keep gitexp's {{placeholders}}",
        )
    # One pass over the original text: a value that contains `{{x}}` is never expanded again.
    return PLACEHOLDER.sub(lambda m: quote(_text(values[m.group(1)])), text)


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

"""`git exp targets`: the named places to run, with their backend and settings."""

from __future__ import annotations

from typing import Any

from gitexp import secrets
from gitexp.backends import backend_for
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, JSON_OPTION, app
from gitexp.cli._common import open_repo, print_json
from gitexp.errors import GitexpError
from gitexp.extras import MissingExtraError
from gitexp.git.config import DEFAULT_TARGET


@app.command(help=HELP["targets"])
def targets(as_json: bool = JSON_OPTION) -> int:
    repo, config = open_repo()
    default = config.get("exp.defaulttarget") or DEFAULT_TARGET
    rows: list[dict[str, Any]] = []
    for name, target in sorted(config.targets().items()):
        needs = None
        try:
            store = backend_for(target, repo, check=False).store_url()
            backend_for(target, repo)
        except MissingExtraError as exc:
            needs = f"gitexp[{exc.extra}]"  # listed, and says what it lacks
        except (GitexpError, ImportError, KeyError, AttributeError):
            store = None  # unknown backend or missing setting: listed, with no store
        settings = {k: ("***" if secrets.looks_secret(k) else v)
                    for k, v in sorted(target.settings.items())}
        rows.append({"name": name, "backend": target.backend or None,
                     "default": name == default, "store": store, "needs": needs,
                     "settings": settings})
    if as_json:
        print_json(rows)
        return 0
    r.targets(rows)
    return 0

"""`git exp` / `gitexp`: parse, call the core, render. One thin module per subcommand.

Typer parses every command line (cli/_app.py), but for `git exp run` in its plain forms:
that one is read by cli/_ahead.py and launched without importing typer, the user's job
waiting on every millisecond of it (issue 17)."""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from gitexp import __version__, disk, extras
from gitexp.cli._common import fail
from gitexp.errors import GitexpError

__all__ = ["entry", "main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    shell = os.environ.get("_GITEXP_COMPLETE")
    if shell:  # the shell asks what may come next (cli/completion.bash, .zsh)
        completed: int = import_module("gitexp.cli._app").complete(shell, args)
        return completed
    if args[:1] in (["--version"], ["-V"]):
        print(f"gitexp {__version__}")
        return 0
    forget: Callable[[], None] = _nothing
    code: int
    # By name, as the verbs are (cli/_app.py): each loads only what it needs.
    try:
        if args[:1] == ["run"]:
            ahead = import_module("gitexp.cli._ahead")
            options = ahead.plain(args[1:])
            forget = ahead.start(options)
            if options is not None:  # read: launched with no typer at all
                code = import_module("gitexp.cli._run").run(options)
                return code
        code = import_module("gitexp.cli._app").main(args)
        return code
    except GitexpError as exc:
        fail(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `git exp ls | head`
        return 0
    except OSError as exc:  # the machine's trouble, not a bug: disk full, a path, permissions
        _quiet_stdout()
        full = disk.error_for(exc)
        if full is not None:
            fail(full.message, full.hint)
        else:
            fail(_os_error(exc), "check that path, its permissions and the free disk space")
        return 1
    except SystemExit as exc:  # typer's own exit on a closed pipe
        return exc.code if isinstance(exc.code, int) else 1
    except ModuleNotFoundError as exc:  # an extra's module, where no check caught it first
        verb = next((a for a in args if not a.startswith("-")), "")
        missing = extras.explain(exc, f"`git exp {verb}`")
        if missing is None:
            return _crash()
        fail(missing.message, missing.hint)
        return missing.exit_code
    except Exception:
        return _crash()
    finally:
        forget()


def _nothing() -> None:
    pass


def entry() -> None:
    """The `git-exp` program: `main`, then a quick exit. Tearing down the few hundred
    modules a verb imported costs the user tens of milliseconds after the last line (70 ms
    for `run`), for nothing: our files are closed by `with` and the index commits itself.
    So once the exit handlers ran and the output is flushed, the process just ends; with a
    thread still running, the usual exit waits for it."""
    code = main()
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    os._exit(code)


def _os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{what}: {' -> '.join(names)}" if names else f"{what} (writing the output)"


def _quiet_stdout() -> None:
    # Output that cannot be written (stdout on a full disk) must not fail again at exit,
    # where Python would print its own "Exception ignored" lines after ours.
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _crash() -> int:
    report = (f"gitexp {__version__}, Python {platform.python_version()}, "
              f"{platform.platform()}\nargv: {sys.argv!r}\n\n{traceback.format_exc()}")
    path = None
    try:
        fd, path = tempfile.mkstemp(prefix="gitexp-crash-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(report)
    except OSError as exc:  # a full disk: the report has nowhere to go but the screen
        if path is not None:
            Path(path).unlink(missing_ok=True)
        full = disk.error_for(exc, tempfile.gettempdir())
        fail("internal error (a bug in gitexp); its crash log could not be written: "
             + (full.message if full else _os_error(exc)),
             (full.hint + ", then rerun for the crash log") if full and full.hint
             else "set TMPDIR to a writable directory and rerun for the crash log")
        return 3
    fail(f"internal error (a bug in gitexp); details in {path}",
         "please attach that file to a bug report")
    return 3

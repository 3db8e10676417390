"""`git exp` / `gitexp`: parse, call the core, render. One thin module per subcommand."""

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

import typer
from typer import Abort
from typer._click import exceptions as click_exc
from typer.main import get_command

from gitexp import __version__, disk, extras
from gitexp.cli._app import GROUPS, HELP, app
from gitexp.errors import GitexpError
from gitexp.printable import printable

# Each subcommand module (cli/<verb>.py) registers itself on `app` when imported. Only the
# verb being run is imported, with the part of gitexp it needs: `git exp ls` never loads the
# code that launches runs, and `git exp -h` lists the verbs by their help alone (`HELP`).
# A verb that is a Python keyword lives in `<verb>_.py` (`import_.py`: `git exp import`).
_MODULES = {m.stem.removesuffix("_"): m.stem for m in Path(__file__).parent.glob("[!_]*.py")}
VERBS = tuple(sorted(_MODULES))

__all__ = ["app", "entry", "load", "load_all", "main"]


def load(args: list[str] | None = None) -> None:
    """Register the verb `args` names (their first word); without one (help, a typo), list
    every verb by name and help, importing none."""
    verb = next((a for a in args or [] if not a.startswith("-")), None)
    if verb in VERBS:
        import_module(f"gitexp.cli.{_MODULES[verb]}")
        return
    for name, text in HELP.items():
        if name in GROUPS:
            app.add_typer(typer.Typer(help=text), name=name)
        else:
            app.command(name=name, help=text)(_listed)


def load_all() -> None:
    """Register every verb, whole (for tools that inspect the real commands)."""
    for name in VERBS:
        import_module(f"gitexp.cli.{_MODULES[name]}")


def _listed() -> None:
    """Stands for a verb in the list of verbs; never runs (a named verb is imported)."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    shell = os.environ.get("_GITEXP_COMPLETE")
    if shell:  # the shell asks what may come next (cli/completion.bash, .zsh)
        return _complete(shell, args)
    if args[:1] in (["--version"], ["-V"]):
        print(f"gitexp {__version__}")
        return 0
    forget: Callable[[], None] = _nothing
    try:
        if args[:1] == ["run"]:  # by name, as the verbs are: for `run` alone
            forget = import_module("gitexp.cli._ahead").start(args[1:])
        load(args)
        rv = get_command(app).main(args, prog_name="git exp", standalone_mode=False)
    except GitexpError as exc:
        _fail(exc.message, exc.hint)
        return exc.exit_code
    except click_exc.NoArgsIsHelpError as exc:
        exc.show()  # the help: not an error to put in one line
        return exc.exit_code
    except click_exc.UsageError as exc:  # click's own: a bad option, a value not a number
        where = exc.ctx.command_path if exc.ctx else "git exp"
        _fail(exc.format_message(), f"`{where} -h` lists its options and what they take")
        return exc.exit_code
    except click_exc.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, Abort):
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `git exp ls | head`
        return 0
    except OSError as exc:  # the machine's trouble, not a bug: disk full, a path, permissions
        _quiet_stdout()
        full = disk.error_for(exc)
        if full is not None:
            _fail(full.message, full.hint)
        else:
            _fail(_os_error(exc), "check that path, its permissions and the free disk space")
        return 1
    except SystemExit as exc:  # typer's own exit on a closed pipe
        return exc.code if isinstance(exc.code, int) else 1
    except ModuleNotFoundError as exc:  # an extra's module, where no check caught it first
        verb = next((a for a in args if not a.startswith("-")), "")
        missing = extras.explain(exc, f"`git exp {verb}`")
        if missing is None:
            return _crash()
        _fail(missing.message, missing.hint)
        return missing.exit_code
    except Exception:
        return _crash()
    finally:
        forget()
    return rv if isinstance(rv, int) else 0


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


def _complete(shell: str, words: list[str]) -> int:
    # By name, as the verbs are: only a shell asking pays for it (run ids need model.ids).
    completer = import_module("gitexp.cli._completer")
    # A completion that fails offers nothing and says nothing: the user is typing.
    with contextlib.suppress(Exception):
        load(words[:-1])  # the verb being typed, or none (the verbs by their help)
        found = completer.candidates(get_command(app), words)
        sys.stdout.write(completer.render(found, shell))
    return 0


def _fail(message: str, hint: str | None) -> None:
    # A message may quote a run, a ref or a store's answer: one line each, shown inert.
    print(f"error: {printable(message)}", file=sys.stderr)
    if hint:
        print(f"hint: {printable(hint)}", file=sys.stderr)


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
        _fail("internal error (a bug in gitexp); its crash log could not be written: "
              + (full.message if full else _os_error(exc)),
              (full.hint + ", then rerun for the crash log") if full and full.hint
              else "set TMPDIR to a writable directory and rerun for the crash log")
        return 3
    _fail(f"internal error (a bug in gitexp); details in {path}",
          "please attach that file to a bug report")
    return 3

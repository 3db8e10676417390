"""Imported by every Python that `make mutate` starts (it is on PYTHONPATH then, never
otherwise). Most tests drive gitexp through `git exp`, a child process: mutmut only sees the
mutated functions its own process runs, so without this it would think those tests cover
nothing. While mutmut collects its stats, a child notes which functions it ran and leaves
the list in $GITEXP_MUTMUT_HITS for the test that started it (see mutmut_hits.py)."""

import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("GITEXP_MUTMUT_HITS"):
    import atexit

    try:
        import mutmut.mutation.trampoline as _trampoline
    except ImportError:  # a Python without mutmut (a test's bare interpreter): nothing to note
        pass
    else:
        _hits: set[str] = set()

        def _note(name: str, caller: str | None = None) -> None:
            _hits.add(name)  # mutmut's own recorder needs its config, read from the cwd

        def _leave() -> None:
            from pathlib import Path

            if _hits:
                out = Path(os.environ["GITEXP_MUTMUT_HITS"]) / f"{os.getpid()}.hits"
                out.write_text("\n".join(sorted(_hits)))

        _trampoline.record_trampoline_hit = _note  # type: ignore[assignment]
        atexit.register(_leave)

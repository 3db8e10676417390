"""Optional dependencies: which extra of pyproject.toml brings which module.

The plain install (`pip install gitexp`) runs every command. A feature whose module is
missing says which extra brings it, in one line, before anything is recorded; reading what
was recorded never needs one. This is the one place that knows the mapping: backends and
stores declare the modules they need (`needs`), everything else asks `require`, and a
`ModuleNotFoundError` that escapes anyway is turned into the same message by the CLI.
"""

from __future__ import annotations

from importlib.util import find_spec

from gitexp.errors import GitexpError

# module -> the extra that installs it (keep in step with [project.optional-dependencies])
EXTRAS: dict[str, str] = {
    "paramiko": "ssh",
    "google.cloud.storage": "gcs",
    "google.cloud.compute_v1": "gce",
    "kubernetes": "kubernetes",
    "matplotlib": "plots",
    "aiohttp": "ui",
    "dvc": "dvc",
    "dvc_data": "dvc",
    "dvc_objects": "dvc",
    "dvc_gs": "dvc",
    "fsspec": "dvc",
}


class MissingExtraError(GitexpError):
    """`what` cannot work without `module`: the hint is the pip command that brings it."""

    def __init__(self, what: str, module: str) -> None:
        self.module, self.extra = module, extra_of(module)
        super().__init__(f"{what} needs {module}",
                         hint=f"pip install 'gitexp[{self.extra}]'" if self.extra
                         else f"pip install {module.partition('.')[0]}")


def extra_of(module: str) -> str | None:
    """The extra that brings `module` (or a package under it, or the package above it:
    Python names the outermost missing one, e.g. `google`)."""
    for name, extra in EXTRAS.items():
        if module == name or module.startswith(name + ".") or name.startswith(module + "."):
            return extra
    return None


def missing(*modules: str) -> str | None:
    """The first of `modules` that cannot be imported here; None when all can. Looks, does
    not import (only the parent packages of a dotted name are imported)."""
    for module in modules:
        try:
            if find_spec(module) is None:
                return module
        except (ImportError, ValueError):  # a parent package is missing (or is a module)
            return module
    return None


def lacking(what: str, *modules: str) -> MissingExtraError | None:
    """What `require` would raise, for a feature that goes on without it (saying so)."""
    absent = missing(*modules)
    return None if absent is None else MissingExtraError(what, absent)


def require(what: str, *modules: str) -> None:
    """Fail with `what needs MODULE` and the extra to install, unless all are importable."""
    error = lacking(what, *modules)
    if error is not None:
        raise error


def explain(exc: ModuleNotFoundError, what: str = "this command") -> MissingExtraError | None:
    """The user-facing error for an optional module found missing at the point of use; None
    when `exc` is not about a module of an extra (a real bug, reported as one)."""
    if exc.name is None or extra_of(exc.name) is None:
        return None
    return MissingExtraError(what, exc.name)

"""One error family: every user-facing failure is a message plus a hint, never a traceback."""

from __future__ import annotations


class GitexpError(Exception):
    """A failure the user can act on: the CLI prints `message` and `hint` and exits 1."""
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(GitexpError):
    """The command line itself is wrong (as click's own usage errors: exit 2)."""
    exit_code = 2


class NotARepoError(GitexpError):
    def __init__(self, where: str) -> None:
        super().__init__(
            f"not a git repository: {where}",
            hint="cd into a git work tree, or create one with `git init`",
        )


class GitError(GitexpError):
    """A git command failed in a way the user did not cause directly."""


class UnknownRunError(GitexpError):
    def __init__(self, run: str, hint: str | None = None) -> None:
        super().__init__(
            f"no run matches {run!r}",
            hint=hint or "`git exp ls` lists the runs of this repository",
        )


class ConfigError(GitexpError):
    pass


class StoreError(GitexpError):
    pass


class BackendError(GitexpError):
    pass

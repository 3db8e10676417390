"""One error family: every user-facing failure is a message plus a hint, never a traceback."""

from __future__ import annotations

# gitexp's exit codes (README, "Exit codes"). A run's own ending decides the code of the
# commands that wait for it (`run`, `logs -f`, `run --sweep`): `exit_for`.
EXIT_FAILED = 1  # a user error, or a run that failed without an exit code of its own
EXIT_USAGE = 2  # a bad option or argument (the command line parser's own)
EXIT_INTERNAL = 3  # a bug in gitexp: a crash report was written
EXIT_ALREADY_SUCCEEDED = 4  # `run` refused: the same run already succeeded (nothing launched)
EXIT_CANCELLED = 5
EXIT_LOST = 6
EXIT_TIMEOUT = 7
EXIT_INTERRUPTED = 130  # Ctrl-C: stopped following (the run goes on)


def exit_for(status: str, exit_code: int | None) -> int:
    """The exit code of a command that waited for a run that ended as `status`: 0 when it
    succeeded, the job's own code when it failed with one (a signal N: 128+N, as shells
    say), else gitexp's code for the way it ended."""
    if status == "succeeded":
        return 0
    if status == "cancelled":
        return EXIT_CANCELLED
    if status == "lost":
        return EXIT_LOST
    if status == "timeout":
        return EXIT_TIMEOUT
    if exit_code is not None and exit_code < 0:
        return 128 + min(-exit_code, 127)
    return exit_code if exit_code and exit_code < 256 else EXIT_FAILED


class GitexpError(Exception):
    """A failure the user can act on: the CLI prints `message` and `hint` and exits 1."""
    exit_code = EXIT_FAILED

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

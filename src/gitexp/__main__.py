"""`python -m gitexp …` is the same as `gitexp …`."""

from gitexp.cli import entry

entry()

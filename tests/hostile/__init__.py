"""Helpers of the hostile-remote suite (tests/test_hostile.py): forged runs built with plain
git, and the tripwires a victim's commands must leave alone (canary files, listening sockets,
FIFOs that notice a reader, a listing of everything outside the victim's work tree)."""

"""`git exp tag` and `git exp note`: tags and notes on runs after launch, in git.

They live as git notes in `refs/notes/experiments`, on each run's snapshot commit (the run's
whatever its ref later points at), in the line format of `model.annotations`. `git exp push`
sends the notes ref with the runs, and `git exp fetch` merges a remote's into ours line by
line (`git notes merge -s cat_sort_uniq`): two people tagging the same run both keep theirs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from gitexp.errors import GitexpError
from gitexp.git import IDENTITY, Repo
from gitexp.model.annotations import MAX_NOTES, MAX_TEXT, TAG, Annotations, line, parse
from gitexp.model.checks import text_problem
from gitexp.service.runs import Run

NOTES_REF = "refs/notes/experiments"


def of(repo: Repo, runs: Iterable[Run]) -> dict[str, Annotations]:
    """Each run's tags and notes (by run id), from one `git cat-file --batch`."""
    wanted = list(runs)
    # no notes ref yet: git says so and lists nothing (one process either way)
    listed = repo.git("notes", "--ref", NOTES_REF, "list", check=False).split() if wanted else []
    blob_of = dict(zip(listed[1::2], listed[0::2], strict=True))  # annotated commit -> blob
    blobs = [blob_of.get(run.record.snapshot, "") for run in wanted]
    found = {obj.spec: obj for obj in repo.read_objects([b for b in blobs if b],
                                                         max_size=MAX_NOTES)}
    return {run.id: parse(found[b].data or b"") if b else Annotations()
            for run, b in zip(wanted, blobs, strict=True)}


def tag(repo: Repo, run: Run, names: list[str], *, remove: bool = False) -> Annotations:
    for name in names:
        if not TAG.fullmatch(name):
            raise GitexpError(f"invalid tag {name!r}",
                              hint="1-63 letters, digits and . _ + - (e.g. baseline, "
                                   "paper-fig3), starting with a letter or digit")
    now = int(time.time())
    return _add(repo, run, [line("untag" if remove else "tag", n, now) for n in names])


def note(repo: Repo, run: Run, text: str) -> Annotations:
    text = " ".join(text.split())  # one line: newlines and tabs become spaces
    if not text:
        raise GitexpError("an empty note", hint='e.g. `git exp note RUN "diverged at epoch 3"`')
    if why := text_problem(text, MAX_TEXT):
        raise GitexpError(f"this note is {why}", hint=f"at most {MAX_TEXT} plain characters")
    return _add(repo, run, [line("note", text, int(time.time()))])


def merge_from(repo: Repo, incoming: str) -> bool:
    """Merge fetched notes (commit `incoming`) into ours; True when ours changed."""
    old = repo.rev_parse(NOTES_REF)
    if old == incoming:
        return False
    if not old:
        repo.git("update-ref", NOTES_REF, incoming, "")
        return True
    repo.git("notes", "--ref", NOTES_REF, "merge", "-q", "-s", "cat_sort_uniq", incoming,
             env=_identity(repo))
    return repo.rev_parse(NOTES_REF) != old


def _add(repo: Repo, run: Run, lines: list[str]) -> Annotations:
    snapshot = run.record.snapshot
    old = repo.git("notes", "--ref", NOTES_REF, "show", snapshot, check=False)
    text = old.rstrip("\n") + "\n" + "\n".join(lines) + "\n" if old.strip() else \
        "\n".join(lines) + "\n"
    repo.git("notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", snapshot,
             input=text.encode(), env=_identity(repo))
    return parse(text.encode())


def _identity(repo: Repo) -> dict[str, str]:
    # A notes commit names its author; without a configured identity, gitexp's own.
    return {} if repo.ok("var", "GIT_COMMITTER_IDENT") else IDENTITY

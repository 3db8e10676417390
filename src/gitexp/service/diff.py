"""`git exp diff A [B]` as data: command, params, inputs, code, metrics, outputs, environment.

With one run, B is the run's base commit: the report then says what was uncommitted when
the run launched (code, params files, data), and the run-only sections are left out.
Code is compared snapshot to snapshot; results commits are never diffed, so
`.gitexp-results/` cannot show up (it is also excluded by pathspec, for safety).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

from gitexp.data import dev as data
from gitexp.data import is_dvc_project
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.writeback import RESULTS_DIR
from gitexp.model import dvcyaml
from gitexp.service import params as params_mod
from gitexp.service.runs import Run

PATHSPEC = ("--", ".", f":(exclude){RESULTS_DIR}")
Change = dict[str, Any]  # {"a": ..., "b": ...}


@dataclass(frozen=True)
class Code:
    a: str  # commit (snapshot, or the base)
    b: str
    files: list[dict[str, Any]]  # {"path", "added", "deleted"} (None for binary)
    stat: str
    patch: str | None = None
    patch_cut: bool = False  # the patch stops at the `max_patch` asked for


@dataclass(frozen=True)
class Report:
    a: str  # run id
    b: str  # run id, or the base commit
    against_base: bool
    code: Code
    params: dict[str, Change]
    data: dict[str, Change]
    command: Change | None = None  # None: the same command (or a diff against the base)
    cwd: Change | None = None
    metrics: dict[str, Change] = field(default_factory=dict)
    outputs: dict[str, Change] = field(default_factory=dict)  # changed ones only
    has_outputs: bool = False  # either run recorded any (so none changed means "same")
    has_inputs: bool = True  # either run read any recorded data
    environment: dict[str, Change] = field(default_factory=dict)
    bases: Change | None = None  # when the runs launched from different commits

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runs(repo: Repo, a: Run, b: Run, *, patch: bool = False,
         max_patch: int | None = None) -> Report:
    ra, rb = a.record, b.record
    pa, pb = params_mod.of_run(repo, ra), params_mod.of_run(repo, rb)
    return Report(
        a=ra.id, b=rb.id, against_base=False,
        code=code(repo, ra.snapshot, rb.snapshot, patch=patch, max_patch=max_patch),
        params=changed(pa, pb),
        data=changed(_hashes(dvcyaml.inputs(ra.data)), _hashes(dvcyaml.inputs(rb.data))),
        command=command(ra.argv, rb.argv),
        cwd=None if ra.cwd == rb.cwd else {"a": ra.cwd, "b": rb.cwd},
        metrics=metrics(a.result.metrics if a.result else {},
                        b.result.metrics if b.result else {}),
        outputs=changed(_hashes(a.outputs), _hashes(b.outputs)),
        has_outputs=bool(a.outputs or b.outputs),
        has_inputs=bool(dvcyaml.inputs(ra.data) or dvcyaml.inputs(rb.data)),
        environment=environment(repo, a, b),
        bases=None if ra.base == rb.base else {"a": ra.base, "b": rb.base},
    )


def against_base(repo: Repo, a: Run, *, patch: bool = False,
                 max_patch: int | None = None) -> Report:
    """Side a is the base commit, side b the run: what the run had that was not committed."""
    rec = a.record
    base_data: dict[str, Any] | None = None
    if rec.base and repo.rev_parse(f"{rec.base}^{{commit}}") is None:
        raise GitexpError(f"the base commit {rec.base[:12]} of run {rec.id} is not in this "
                          "repository", hint="fetch it (`git fetch origin`), or diff two runs: "
                                             f"`git exp diff {rec.id} OTHER`")
    if rec.base and (is_dvc_project(repo.root) or rec.data):
        base_data = data.version_of(repo, rec.base)
    base_params = params_mod.at_commit(repo, rec.base, rec.cwd) if rec.base else {}
    return Report(
        a=rec.base or "(no commits)", b=rec.id, against_base=True,
        code=code(repo, rec.base or repo.empty_tree, rec.snapshot, patch=patch,
                  max_patch=max_patch),
        params=changed(base_params, params_mod.at_commit(repo, rec.snapshot, rec.cwd)),
        data=changed(_hashes(base_data), _hashes(rec.data)),
    )


def code(repo: Repo, a: str, b: str, *, patch: bool, max_patch: int | None = None) -> Code:
    """The code's diff; with `max_patch` (the web view), at most that many bytes of patch,
    and a file larger than it diffed as binary: a forged snapshot of one 500 MB text file
    (a few KB once compressed) costs git a moment, not minutes and gigabytes."""
    big = ["-c", f"core.bigFileThreshold={max_patch}"] if max_patch else []
    base = [*big, "diff", "--no-color", "--no-ext-diff", "--no-renames", a, b]
    files = []
    for line in repo.git(*base[:-2], "--numstat", "-z", a, b, *PATHSPEC).split("\0"):
        if not line:
            continue
        added, deleted, path = line.split("\t", 2)
        files.append({"path": path, "added": None if added == "-" else int(added),
                      "deleted": None if deleted == "-" else int(deleted)})
    stat = repo.git(*base[:-2], "--stat=100", a, b, *PATHSPEC) if files else ""
    text, cut = None, False
    if patch and files and max_patch:
        text, cut = repo.git_head(*base, *PATHSPEC, limit=max_patch)
    elif patch and files:
        text = repo.git(*base, *PATHSPEC)
    return Code(a=a, b=b, files=files, stat=stat.rstrip("\n"), patch=text, patch_cut=cut)


def command(a: list[str], b: list[str]) -> Change | None:
    """Both argvs, and `span`: the arguments between the common head and the common tail,
    where they differ (`at` = the first index). Argument by argument, linear: a line diff of
    two 50,000-argument commands would not be."""
    if a == b:
        return None
    head = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        head += 1
    tail = 0
    for x, y in zip(reversed(a[head:]), reversed(b[head:]), strict=False):
        if x != y:
            break
        tail += 1
    return {"a": a, "b": b,
            "span": {"at": head, "a": a[head:len(a) - tail], "b": b[head:len(b) - tail]}}


def changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Change]:
    return {k: {"a": a.get(k), "b": b.get(k)} for k in sorted(a.keys() | b.keys())
            if not _same(a.get(k), b.get(k)) or (k in a) != (k in b)}


def _same(x: Any, y: Any) -> bool:
    # `--fast` (true) and `--fast 1` (1) are different params: Python's True == 1 is not
    return isinstance(x, bool) == isinstance(y, bool) and bool(x == y)


def metrics(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Change]:
    out: dict[str, Change] = {}
    for k in sorted(a.keys() | b.keys()):
        va, vb = a.get(k), b.get(k)
        delta = pct = None
        if _number(va) and _number(vb):
            delta = vb - va
            pct = delta / abs(va) * 100 if va else None
        out[k] = {"a": va, "b": vb, "delta": delta, "pct": pct}
    return out


def environment(repo: Repo, a: Run, b: Run) -> dict[str, Change]:
    ea, eb = a.record.env, b.record.env
    flat_a = {"python": ea.python, "platform": ea.platform, "target": a.record.target,
              "backend": a.record.backend, "host": a.result.host if a.result else None,
              **{f"variables.{k}": v for k, v in ea.variables.items()}}
    flat_b = {"python": eb.python, "platform": eb.platform, "target": b.record.target,
              "backend": b.record.backend, "host": b.result.host if b.result else None,
              **{f"variables.{k}": v for k, v in eb.variables.items()}}
    out = changed(flat_a, flat_b)
    if ea.packages != eb.packages:
        pkgs = changed(_packages(repo, ea.packages), _packages(repo, eb.packages))
        out.update({f"packages.{k}": v for k, v in pkgs.items()})
    return out


def _packages(repo: Repo, blob: str | None) -> dict[str, str]:
    if not blob or not repo.is_oid(blob):  # a forged record's text is no argv for git
        return {}
    (obj,) = repo.read_objects([blob], max_size=4 << 20)  # a `pip freeze` is a few KB
    text = obj.data.decode(errors="replace") if obj.type == "blob" and obj.data else ""
    pairs = (line.partition("==") for line in text.splitlines() if line.strip())
    return {name: version for name, _, version in pairs}


def _hashes(data: dict[str, Any] | None) -> dict[str, Any]:
    return {path: (info.get("hash") if isinstance(info, dict) else info)
            for path, info in (data or {}).items()}


def _number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)

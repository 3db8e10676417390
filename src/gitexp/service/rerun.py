"""Replay: did a rerun reproduce its run (`rerun --check`), the standalone replay script
(`rerun --script`), the "already succeeded" notice, and restoring a run's code.

A rerun itself is `launch.relaunch`: the same snapshot tree and parents, argv, subdirectory
and data version, recorded with `rerun_of`.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gitexp.backends import templates
from gitexp.data import compare, is_dvc_project, version
from gitexp.data import dev as data
from gitexp.data.outputs import Lock, check_restorable, restore_outputs, run_lock
from gitexp.data.status import local_cache_dir
from gitexp.errors import EXIT_ALREADY_SUCCEEDED, GitexpError
from gitexp.git import Repo
from gitexp.git.writeback import RESULTS_DIR
from gitexp.model import ids
from gitexp.model.record import encode_message
from gitexp.service import index
from gitexp.service.runs import Run

RTOL = 0.0  # by default reproducing means the very same numbers; --rtol/--atol loosen it
ATOL = 0.0


# -- rerun --check ----------------------------------------------------------------------------
def check(original: Run, rerun: Run, *, rtol: float = RTOL, atol: float = ATOL,
          repo: Repo | None = None) -> dict[str, Any]:
    """The verdict, metric by metric and output by output; JSON-safe (it is recorded).
    Outputs whose hashes differ are compared by content when `repo`'s DVC cache has them:
    JSON/YAML/CSV/TSV files field by field under the tolerance (`data.compare`)."""
    a_res, b_res = original.result, rerun.result
    a_status = original.status
    b_status = rerun.status
    a_mets = a_res.metrics if a_res else {}
    b_mets = b_res.metrics if b_res else {}
    mets = {name: {"a": a_mets.get(name), "b": b_mets.get(name),
                   "same": compare.close(a_mets.get(name), b_mets.get(name), rtol, atol)
                   if name in a_mets and name in b_mets else False}
            for name in sorted(a_mets.keys() | b_mets.keys())}
    a_outs = a_res.outputs if a_res else {}
    b_outs = b_res.outputs if b_res else {}
    cache = local_cache_dir(repo) if repo is not None and is_dvc_project(repo.root) else None
    outs = {path: _output(cache, path, a_outs.get(path), b_outs.get(path), rtol=rtol,
                          atol=atol)
            for path in sorted(a_outs.keys() | b_outs.keys())}
    same_status = a_status == b_status
    reproduced = (same_status and all(m["same"] for m in mets.values())
                  and all(o["same"] for o in outs.values()))
    return {"of": original.id, "reproduced": reproduced, "rtol": rtol, "atol": atol,
            "status": {"a": a_status, "b": b_status, "same": same_status},
            "metrics": mets, "outputs": outs, "checked_at": time.time()}


def _output(cache: Path | None, path: str, a: Any, b: Any, *, rtol: float,
            atol: float) -> dict[str, Any]:
    ha, hb = (None if e is None else _hash(e) for e in (a, b))
    entry: dict[str, Any] = {"a": ha, "b": hb, "same": ha is not None and ha == hb}
    if entry["same"] or cache is None or not isinstance(a, dict) or not isinstance(b, dict) \
            or not isinstance(a.get("hash"), str) or not isinstance(b.get("hash"), str):
        return entry
    entry["same"], entry["differs"] = compare.same_output(cache, path, a, b, rtol=rtol,
                                                          atol=atol)
    return entry


def _hash(entry: Any) -> str:
    return str(entry.get("hash")) if isinstance(entry, dict) else str(entry)


def record_verdict(repo: Repo, run: Run, verdict: dict[str, Any]) -> Run:
    """Put the verdict into the rerun's result: a verdict commit with parents [snapshot, old
    results commit] (so the ref fast-forwards, and a shared run only ever grows) whose tree
    adds `.gitexp-results/check.json` and whose message carries the result with `check`."""
    if not run.written_back or run.result is None:
        raise GitexpError(f"run {run.id} has no result in git yet",
                          hint=f"`git exp show {run.id}` writes it back once it ended")
    if run.result.check is not None:  # a shared run never changes: one verdict, for good
        raise GitexpError(f"run {run.id} already has a verdict",
                          hint=f"`git exp show {run.id}` shows it; a new rerun gets its own")
    result = replace(run.result, check=verdict)
    blob = repo.hash_object(json.dumps(verdict, indent=2, sort_keys=True).encode())
    top = repo.tree_entries(run.commit)
    results_tree = next((e.split()[2].split("\t")[0] for e in top
                         if e.endswith("\t" + RESULTS_DIR)), None)
    inner = repo.tree_entries(results_tree) if results_tree else []
    inner.append(f"100644 blob {blob}\tcheck.json")
    top = [e for e in top if not e.endswith("\t" + RESULTS_DIR)]
    top.append(f"040000 tree {repo.mktree(inner)}\t{RESULTS_DIR}")
    commit = repo.commit_tree(repo.mktree(top), [run.record.snapshot, run.commit],
                              encode_message(run.record, result))
    if not repo.update_ref(ids.ref_for(run.id), commit, run.commit,
                           f"gitexp: {run.id} checked against {verdict['of']}"):
        raise GitexpError(f"run {run.id} changed while its verdict was being recorded",
                          hint=f"retry `git exp rerun {verdict['of']} --check`")
    return replace(run, result=result, commit=commit)


# -- the "already succeeded" notice -----------------------------------------------------------
class AlreadySucceededError(GitexpError):
    exit_code = EXIT_ALREADY_SUCCEEDED  # scripts tell "nothing to do" from a failure

    def __init__(self, run: Run) -> None:
        res = run.result
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.record.launched_at))
        mets = ", ".join(f"{k}={_short(v)}" for k, v in sorted((res.metrics if res else {})
                                                              .items())[:6])
        super().__init__(
            f"run {run.id} already ran this (same code, command, directory and data) and "
            f"succeeded at {when}" + (f": {mets}" if mets else ""),
            hint=f"`git exp show {run.id}` shows it; `git exp run --force -- ...` runs again",
        )
        self.run = run


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def refuse_if_succeeded(repo: Repo, tree: str, argv: list[str], cwd: str) -> None:
    """Raise AlreadySucceededError if a run of this tree, argv, subdirectory and data version
    already succeeded."""
    candidates = index.succeeded_like(repo, argv, cwd)
    if not candidates:
        return
    version = data.version_of(repo, tree) if is_dvc_project(repo.root) else None
    for entry in candidates:
        same_data = (entry.record.data or None) == (version or None)
        if same_data and repo.rev_parse(f"{entry.record.snapshot}^{{tree}}") == tree:
            raise AlreadySucceededError(Run(record=entry.record, result=entry.result,
                                            commit=entry.commit, written_back=True))


# -- rerun --script -----------------------------------------------------------------------------
def default_remote(repo: Repo) -> str:
    """Where an auditor fetches the run from: `origin` if there is one, else this repository."""
    url = repo.git("remote", "get-url", "origin", check=False).strip()
    return url or str(repo.root)


_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # str.isidentifier() admits non-ASCII


def script(repo: Repo, run: Run, remote: str | None = None) -> str:
    """A POSIX shell script (templates/run.sh) that replays `run` with git and DVC alone."""
    rec = run.record
    ids.check_id(rec.id)  # it goes into a comment line and a directory name: never forged
    pulls = sorted(i.path for i in version.from_record(rec.data).values() if i.cached)
    data_step = ("dvc pull -- " + shlex.join(pulls)) if pulls else \
        ": # the run used no DVC-tracked data"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(rec.env.variables.items())
                      if _SHELL_NAME.fullmatch(k)) or ": # no recorded environment variables\n"
    values = {
        "run_id": rec.id, "snapshot": rec.snapshot, "remote": remote or default_remote(repo),
        "cwd": rec.cwd or ".", "command": shlex.join(rec.argv).replace("\n", " "),
    }
    quoted = {k: shlex.quote(v) for k, v in values.items()}
    quoted["command"] = values["command"]  # a comment line: shown, never executed
    return templates.render("run.sh", {**quoted, "argv": shlex.join(rec.argv),
                                       "data_step": data_step, "env_exports": exports.rstrip()},
                            quote=lambda s: s)


# -- git exp checkout -------------------------------------------------------------------------
def restore_code(repo: Repo, run: Run, branch: str | None = None, *,
                 outputs: bool = False) -> None:
    """Check out the run's snapshot (detached, or on a new branch `branch`). Refuses, having
    touched nothing, when the work tree has any change git would have to carry or clobber
    (or, with `outputs`, when the run recorded none it could restore safely afterwards)."""
    if outputs:  # none recorded, or a forged one, refuses the checkout too, up front
        check_restorable(repo, run.id, run.result.outputs if run.result else {},
                         snapshot=run.record.snapshot)
    if branch is not None:  # said plainly here, not as a failed `git switch` later
        if branch.startswith("-") or not repo.ok("check-ref-format", "--branch", branch):
            raise GitexpError(f"invalid branch name {branch!r}",
                              hint="e.g. `-b try-lr-3e-4` (see `git help check-ref-format`)")
        if repo.rev_parse(f"refs/heads/{branch}"):
            raise GitexpError(f"a branch named {branch!r} already exists",
                              hint="pick another name, or check it out without -b")
    _refuse_changes(repo, f"checking out run {run.id}")
    snap = run.record.snapshot
    if branch:
        repo.git("switch", "-q", "-c", branch, snap)
    else:
        repo.git("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", snap)


def checkout(repo: Repo, run: Run, branch: str | None = None, *,
             outputs: bool = False) -> list[str]:
    """`git exp checkout`: the run's code (`restore_code`), then with `outputs` its outputs
    and its `dvc.lock`. All or nothing: should restoring the outputs fail after the code
    moved, HEAD (and the branch made for it) go back to where they were. The outputs
    restored."""
    was_branch = repo.git("symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
    was_head = repo.rev_parse("HEAD")
    restore_code(repo, run, branch, outputs=outputs)
    if not outputs:
        return []
    try:
        return restore_outputs(repo, run.id, run.outputs, lock=lock_of(repo, run))
    except BaseException:
        if was_head is not None:  # the work tree was clean: going back loses nothing
            repo.git("-c", "advice.detachedHead=false", "checkout", "-q",
                     *([was_branch] if was_branch else ["--detach", was_head]))
            if branch:
                repo.git("branch", "-q", "-D", branch, check=False)
        raise


def lock_of(repo: Repo, run: Run) -> Lock | None:
    """The `dvc.lock` the run left, to restore with its outputs (None: none kept)."""
    return run_lock(repo, run.commit, run.record.cwd) if run.written_back else None


# -- git exp apply ----------------------------------------------------------------------------
def apply_code(repo: Repo, run: Run) -> list[str]:
    """Make the work tree the run's snapshot (as `dvc exp apply` does), leaving HEAD, the
    branch and the index where they are: the run's changes show as uncommitted ones. Refuses,
    having touched nothing, when the work tree has changes of its own. Returns what changed."""
    _refuse_changes(repo, f"applying run {run.id}")
    # --worktree only: the index stays HEAD's; tracked files the snapshot lacks are removed
    repo.git("restore", f"--source={run.record.snapshot}", "--worktree", "--", ":/")
    return repo.git("status", "--porcelain", "--untracked-files=all").splitlines()


def _refuse_changes(repo: Repo, doing: str) -> None:
    dirty = repo.git("status", "--porcelain", "--untracked-files=all").splitlines()
    if dirty:
        raise GitexpError(
            f"the work tree has {len(dirty)} uncommitted change(s); {doing} could overwrite "
            "them", hint="commit or stash them first (`git stash -u`), then retry")

"""`git exp import dvc`: DVC experiments (`dvc exp run`) become gitexp runs.

DVC keeps an experiment as a commit under `refs/exps/<baseline[:2]>/<baseline[2:]>/<name>`
whose first parent is its baseline and whose tree holds its params.yaml and dvc.lock; its
metrics files are in the tree or, as stage outputs, in the DVC cache. Each becomes a run
like any other (a snapshot commit with the experiment's tree on the baseline, then a results
commit) under a deterministic id `<name>-<commit[:8]>`, so importing again adds only what is
new. An imported run says so: target `dvc-exp`, no log, no environment, no seal (it was not
launched here, so `rerun` asks for --trust).

What is read from refs/exps is untrusted: names, YAML and metrics files are checked here,
and every record written goes through `decode_run` before its ref is made.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from gitexp.data import version
from gitexp.data.status import local_cache_dir
from gitexp.data.verify import cache_object, manifest
from gitexp.errors import GitexpError
from gitexp.git import NO_REF, Commit, Repo
from gitexp.git.writeback import RESULTS_DIR
from gitexp.model import checks, ids
from gitexp.model.record import Environment, Result, RunRecord, decode_run, encode_message

EXPS = "refs/exps/"
_EXP_REF = re.compile(r"refs/exps/([0-9a-f]{2})/([0-9a-f]{38}|[0-9a-f]{62})/([^/]+)")
TARGET = "dvc-exp"  # what marks an imported run
MAX_FILE = 1 << 20  # a metrics or DVC file bigger than this is no one's metrics
MAX_DEPTH = 16


@dataclass(frozen=True)
class Imported:
    added: list[tuple[str, str]]  # (experiment ref, run id)
    present: int  # imported before: left as they are
    refused: list[tuple[str, str]]  # (experiment ref, why)


def import_dvc(repo: Repo) -> Imported:
    """Import every DVC experiment not imported yet."""
    exps = [(ref, oid) for line in repo.git("for-each-ref", "--format=%(refname) %(objectname)",
                                            EXPS).splitlines()
            for ref, _, oid in [line.partition(" ")] if _EXP_REF.fullmatch(ref)]
    if not exps:
        raise GitexpError("no DVC experiments here (nothing under refs/exps/)",
                          hint="`dvc exp run` makes them; `dvc exp pull REMOTE` fetches a "
                               "team's")
    known = set(repo.git("for-each-ref", "--format=%(refname)", ids.PREFIX).splitlines())
    added, refused, present = [], [], 0
    commits = repo.read_objects(oid for _, oid in exps)
    for (ref, oid), obj in zip(exps, commits, strict=True):
        m = _EXP_REF.fullmatch(ref)
        assert m is not None  # filtered above
        run_id = _run_id(m.group(3), oid)
        if ids.PREFIX + run_id in known:
            present += 1
            continue
        try:
            if obj.type != "commit" or obj.data is None:
                raise GitexpError(f"{oid[:12]} is not a commit")
            commit = Commit.parse(obj.data)
            if not commit.parents or commit.parents[0] != m.group(1) + m.group(2):
                raise GitexpError("its first parent is not the baseline its ref names")
            _import_one(repo, run_id, m.group(3), oid, commit=commit, raw=obj.data)
        except GitexpError as exc:
            refused.append((ref, exc.message))
            continue
        added.append((ref, run_id))
    return Imported(added=added, present=present, refused=refused)


def _run_id(name: str, oid: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "dvc-exp"
    return f"{slug}-{oid[:8]}"


def _import_one(repo: Repo, run_id: str, name: str, oid: str, *, commit: Commit,
                raw: bytes) -> None:
    author, when = _author(raw)
    tree = commit.tree
    data = version.to_record(version.of_tree(repo, tree))
    result = Result(status="succeeded", ended_at=when, metrics=_metrics(repo, oid, data),
                    outputs=_outputs(data))
    slug = run_id.rsplit("-", 1)[0]
    record = RunRecord(
        id=run_id, argv=["dvc", "exp", "run"], cwd="", base=commit.parents[0], branch=None,
        user=author, launched_at=when, target=TARGET, backend="local",
        store=(repo.gitexp_dir / "store").as_uri(), env=Environment(python="", platform=""),
        data=data, name=slug[:40] if ids.is_valid_name(slug[:40]) else None,
        launched_from=f"dvc exp {name}"[:200] if not checks.text_problem(name) else "dvc exp")
    snapshot = repo.commit_tree(tree, [commit.parents[0]], encode_message(record, None))
    source = {"dvc_exp": name if not checks.text_problem(name) else None, "commit": oid}
    files = {"record.json": json.dumps(record.to_dict(), indent=2, sort_keys=True),
             "result.json": json.dumps(result.to_dict(), indent=2, sort_keys=True),
             "imported.json": json.dumps(source, indent=2, sort_keys=True)}
    inner = [f"100644 blob {repo.hash_object(text.encode())}\t{n}" for n, text in files.items()]
    top = [e for e in repo.tree_entries(tree) if not e.endswith("\t" + RESULTS_DIR)]
    top.append(f"040000 tree {repo.mktree(inner)}\t{RESULTS_DIR}")
    message = encode_message(record.with_snapshot(snapshot), result)
    results = repo.commit_tree(repo.mktree(top), [snapshot], message)
    # The one decoder says whether what we made of untrusted input is a run: before any ref.
    decode_run(message, ref=ids.ref_for(run_id), commit=results, parents=[snapshot])
    if not repo.update_ref(ids.ref_for(run_id), results, NO_REF,
                           f"gitexp: import dvc exp {run_id}"):
        raise GitexpError(f"run {run_id} appeared meanwhile")


def _author(raw: bytes) -> tuple[str, float]:
    for line in raw.split(b"\n\n", 1)[0].split(b"\n"):
        if line.startswith(b"author "):
            who, _, stamp = line[7:].decode(errors="replace").rpartition("> ")
            try:
                when = float(stamp.split()[0])
            except (ValueError, IndexError):
                break
            user = who + ">"
            return (user if not checks.text_problem(user) else "unknown"), when
    raise GitexpError("its commit has no readable author line")


def _outputs(data: dict[str, Any] | None) -> dict[str, Any]:
    """The stage outputs dvc.lock pins: what the experiment produced."""
    return {p: {k: v for k, v in e.items() if k != "source"} for p, e in (data or {}).items()
            if ":" in str(e.get("source", "")) and not e.get("dep") and not e.get("git")}


def _metrics(repo: Repo, oid: str, data: dict[str, Any] | None) -> dict[str, Any]:
    """Final metrics from the files dvc.yaml declares (`metrics:`, top level and per stage),
    read from the tree or, for a stage output, from the local DVC cache."""
    declared = _declared(repo, oid)
    found: dict[str, Any] = {}
    cache = local_cache_dir(repo)
    for path in declared:
        raw = _blob(repo, f"{oid}:{path}") or _cached(cache, path, data or {})
        if raw is None:
            continue
        try:
            parsed = version.load_yaml(path, raw) if path.endswith((".yaml", ".yml")) \
                else json.loads(raw)
        except (GitexpError, ValueError, RecursionError):
            continue
        found.update(_flatten(parsed))
    return found


def _declared(repo: Repo, oid: str) -> list[str]:
    raw = _blob(repo, f"{oid}:dvc.yaml")
    if raw is None:
        return []
    try:
        doc = version.load_yaml("dvc.yaml", raw)
    except GitexpError:
        return []
    paths = [m for m in doc.get("metrics") or [] if isinstance(m, str)]
    for stage in (doc.get("stages") or {}).values():
        if isinstance(stage, dict):
            for m in stage.get("metrics") or []:
                paths += [m] if isinstance(m, str) else [k for k in m if isinstance(k, str)] \
                    if isinstance(m, dict) else []
    return [p for p in dict.fromkeys(posixpath.normpath(p) for p in paths)
            if not checks.path_problem(p)]


def _blob(repo: Repo, spec: str) -> bytes | None:
    obj = repo.read_objects([spec], max_size=MAX_FILE)[0]
    return obj.data if obj.type == "blob" else None


def _cached(cache: Any, path: str, data: dict[str, Any]) -> bytes | None:
    """`path` from the DVC cache: an output itself, or a file of an output directory."""
    for out, entry in data.items():
        h = str(entry.get("hash", ""))
        try:
            if out == path and not h.endswith(".dir"):
                return _read(cache_object(cache, h))
            if path.startswith(out + "/") and h.endswith(".dir"):
                item = version.DataItem.from_dict(out, entry)
                md5 = (manifest(cache, item) or {}).get(path[len(out) + 1:])
                return _read(cache_object(cache, md5)) if md5 else None
        except (ValueError, OSError):
            return None
    return None


def _read(path: Any) -> bytes | None:
    if path.stat().st_size > MAX_FILE:
        return None
    data: bytes = path.read_bytes()
    return data


def _flatten(data: Any) -> dict[str, Any]:
    """`{"avg_prec": {"test": 0.9}}` -> `{"avg_prec.test": 0.9}`: numbers only, bounded
    depth, iteratively (a forged file cannot recurse)."""
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        prefix, value, depth = stack.pop()
        if isinstance(value, dict) and depth < MAX_DEPTH:
            stack += [(f"{prefix}{k}.", v, depth + 1) for k, v in value.items()
                      if isinstance(k, str) and not checks.text_problem(k)]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and prefix:
            out[prefix[:-1]] = value
    return out

"""Write-back: a finished run's result, log and metrics become a results commit on its ref.

The results commit's first parent is the snapshot and its tree is the snapshot's tree plus
one directory, `.gitexp-results/`, so code diffs between runs stay clean. A DVC pipeline's
`dvc.lock` and `dvc.yaml`, as the run left them, go to `.gitexp-results/dvc/`; the plots its
`dvc.yaml` declares (`model.dvcplots`) to `.gitexp-results/plots/`.
"""

from __future__ import annotations

import json

from gitexp import faults
from gitexp.git import Repo
from gitexp.model import dvcplots
from gitexp.model.ids import ref_for
from gitexp.model.record import Result, RunRecord, encode_message
from gitexp.model.runstate import RunState
from gitexp.stores import Store, read_range, run_key, size_of

RESULTS_DIR = ".gitexp-results"
MAX_LOG_IN_GIT = 32 << 20  # larger logs keep head and tail in git; the store keeps all


def write_back(repo: Repo, record: RunRecord, result: Result, store: Store | None) -> str:
    """Commit the result onto the run's ref. Idempotent: a second writer loses the race
    harmlessly and the ref keeps the first results commit."""
    ref = ref_for(record.id)
    current = repo.rev_parse(ref)
    if current is not None and current != record.snapshot:
        return current  # already written back (or the run was removed: nothing to do)
    files: dict[str, bytes] = {
        "record.json": json.dumps(record.to_dict(), indent=2, sort_keys=True).encode(),
        "result.json": json.dumps(result.to_dict(), indent=2, sort_keys=True).encode(),
    }
    if store is not None:
        files["log.txt"] = capped_log(store, run_key(record.id, "log"))
        series = store.read(run_key(record.id, "metrics.jsonl"))
        if series:
            files["metrics.jsonl"] = series
        files.update({f"plots/{name}": data for name, data in _plots(store, record).items()})
        # a DVC pipeline's dvc.lock (and dvc.yaml) as the run left them
        files.update({f"dvc/{name}": data
                      for name, data in RunState(store, record.id).pipeline().items()})
    tree = _results_tree(repo, record, files)
    commit = repo.commit_tree(tree, [record.snapshot], encode_message(record, result))
    faults.point("writeback.commit")
    if current is None:
        return commit  # the run's ref is gone (removed meanwhile): leave it gone
    repo.update_ref(ref, commit, record.snapshot, f"gitexp: {record.id} {result.status}")
    return repo.rev_parse(ref) or commit


def _plots(store: Store, record: RunRecord) -> dict[str, bytes]:
    """The declared plots the agent sent, decoded and encoded again: the results commit
    holds only what the decoder accepts (a damaged or forged store's plots are left out)."""
    try:
        return dvcplots.encode(RunState(store, record.id).plots())
    except dvcplots.PlotsError:  # a store out of reach is no reason to drop them: raised
        return {}


def _results_tree(repo: Repo, record: RunRecord, files: dict[str, bytes]) -> str:
    entries = []
    subdirs: dict[str, list[str]] = {}  # plots/, dvc/: one level below
    for name, data in sorted(files.items()):
        blob = repo.hash_object(data)
        sub, _, leaf = name.rpartition("/")
        if sub:
            subdirs.setdefault(sub, []).append(f"100644 blob {blob}\t{leaf}")
        else:
            entries.append(f"100644 blob {blob}\t{name}")
    for sub, listing in sorted(subdirs.items()):
        entries.append(f"040000 tree {repo.mktree(listing)}\t{sub}")
    if record.env.packages:
        entries.append(f"100644 blob {record.env.packages}\tpackages.txt")
    results = repo.mktree(entries)
    top = [e for e in repo.tree_entries(record.snapshot) if not e.endswith("\t" + RESULTS_DIR)]
    top.append(f"040000 tree {results}\t{RESULTS_DIR}")
    return repo.mktree(top)


def capped_log(store: Store, key: str) -> bytes:
    """The log as git keeps it (`_cap`), read in two bounded spans where the store can say
    its size: a worker writing back a gigabyte log must not hold it all in memory."""
    size = size_of(store, key)
    if size is None or size <= MAX_LOG_IN_GIT:
        return _cap(store.read(key) or b"")
    half = MAX_LOG_IN_GIT // 2
    head = read_range(store, key, 0, half) or b""
    tail = read_range(store, key, size - half, half) or b""
    return _joined(head, tail, size - 2 * half)


def _cap(log: bytes) -> bytes:
    if len(log) <= MAX_LOG_IN_GIT:
        return log
    half = MAX_LOG_IN_GIT // 2
    return _joined(log[:half], log[-half:], len(log) - 2 * half)


def _joined(head: bytes, tail: bytes, cut: int) -> bytes:
    note = f"\n[gitexp: {cut} bytes cut here; the store has the whole log]\n".encode()
    return b"".join((head, note, tail))

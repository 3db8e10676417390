"""The index: a SQLite cache of run records under `.git/gitexp/index.sqlite`.

Git refs are the source of truth. Each row is keyed by ref *and* commit, so a row is either
exactly right or stale, never subtly wrong: `refresh` lists `refs/experiments/` with names
and object ids only (no commit is read), re-reads just the commits that are new or moved, and
drops rows whose ref is gone. It does not even list them while the refs' storage is as it was
at the last refresh (`git.refs_stamp`: the loose refs' directory and packed-refs, unchanged).
Deleting the file loses nothing; the next refresh rebuilds it.

Pages of runs are answered by SQL (`page`): newest first by an index on `launched_at`, and a
`--where` narrowed first by the `vals` table (every metric and param of every run, indexed by
name and number: `service/narrow.py` turns the expression into a superset the exact rule
then filters), so `ls` at 100,000 runs reads the rows it shows, not all of them.

Several `git exp` processes may sync at once: WAL mode lets readers go on while one writes,
and a writer that finds the database busy retries; any trouble with the file (corrupt,
read-only, locked for too long) falls back to reading git directly.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitexp.errors import GitexpError
from gitexp.git import Commit, Repo, loose_refs, refs_stamp
from gitexp.model import ids
from gitexp.model.record import MAX_MESSAGE, DecodedRun, Result, RunRecord, decode_run
from gitexp.model.row import SUMMARY, as_json, json_text, row_of
from gitexp.service import cores, trust

FILE = "index.sqlite"
# bump when the table changes (3: records type-checked; 4: one decoder, `body` the whole
# message; 5: fields' contents checked, `own`; 6: `json`; 7: `vals`, `meta`, pages): an
# older file is rebuilt
VERSION = 7
MAX_COMMIT = MAX_MESSAGE + (64 << 10)  # the message, and a header of parents and signature
BUSY_MS = 5000
# A row is ~2 KB (its message, row and summary): two never fit a 4 KB page, so half of
# each page stayed empty and a cold `ls` wrote 4.8 KB a run (478 MB at 100,000); 16 KB
# pages hold seven (300 MB).
PAGE = 16384
RETRIES = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    ref TEXT PRIMARY KEY,
    commit_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    snapshot TEXT,
    launched_at REAL,
    status TEXT,
    target TEXT,
    argv TEXT,
    cwd TEXT,
    summary TEXT,      -- the part of `row` plain `ls` shows: the cheapest to decode
    row TEXT,          -- row.row_of(): what `ls` shows and filters on
    body TEXT,         -- the commit message; NULL: the commit is not a readable run
    own INTEGER,       -- sealed by this user (service/trust.py): launched here by them
    json TEXT          -- the run as `ls --json` prints it (row.json_text), NULL till then;
                       -- last, as the largest: the columns before it are read without it
);
CREATE INDEX IF NOT EXISTS runs_launched ON runs (launched_at);
CREATE INDEX IF NOT EXISTS runs_live ON runs (status, own);
CREATE TABLE IF NOT EXISTS vals (  -- every metric (kind 0) and param (1) of every run
    ref TEXT NOT NULL,
    kind INTEGER NOT NULL,
    name TEXT NOT NULL,
    leaf TEXT NOT NULL,  -- the name's last dotted part: `lr` finds `train.lr` too
    num REAL,            -- float(value) where Python's float() takes it (not a boolean)
    text TEXT            -- str(value) (not a boolean)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS params (
    snapshot TEXT NOT NULL,
    cwd TEXT NOT NULL,
    body TEXT NOT NULL,  -- params read from params.yaml/params.json at the snapshot
    PRIMARY KEY (snapshot, cwd)
);
"""


@dataclass(frozen=True)
class Entry:
    """One run as git has it: the ref's commit and the record/result its message carries."""
    ref: str
    commit: str
    record: RunRecord
    result: Result | None
    own: bool = False  # launched by this user here (its seal checked when it was indexed)

    @property
    def written_back(self) -> bool:
        return self.result is not None


@dataclass(frozen=True)
class Listed:
    """One run for `ls --json`: its text as printed, and, for an unfinished run, its entry
    (a look at its store may change what is printed)."""
    launched_at: float
    text: str
    entry: Entry | None


def path_of(repo: Repo) -> Path:
    return repo.gitexp_dir / FILE


def run_ids(repo: Repo) -> list[str]:
    """Every run id, readable or not, from the index brought up to date (no ref listed while
    the refs' storage is unchanged), else from ref names alone (no commit is read)."""
    try:
        with _connect(repo) as db:
            _refresh(repo, db)
            return [i for (i,) in db.execute("SELECT run_id FROM runs")]
    except (sqlite3.Error, OSError):
        return [ref[len(ids.PREFIX):] for ref in _ref_heads(repo)[0]]


Heads = dict[str, tuple[str, bool]]  # run ref -> (its commit, written back)


def finished_refs(repo: Repo, *, own: bool = False,
                  archived: Sequence[str] = ()) -> tuple[Heads, int] | None:
    """Every readable run's ref (`own`: of those this user launched here) -> (its commit,
    written back), after a refresh: what a push compares with the remote without reading a
    commit; None when the file is unusable. Less those that one of the archives `archived`
    (commits whose listings the file keeps: `keep_listings`) lists at their very commit:
    how many, beside them (a push at 100,000 runs compares the few others)."""
    try:
        with _connect(repo) as db:
            _refresh(repo, db)
            if not archived:  # nothing to leave out: no lookup a run
                return _heads(db.execute("SELECT ref, commit_id, status FROM runs WHERE "
                                         "snapshot IS NOT NULL AND own >= ?", (int(own),))), 0
            found = db.execute(
                "SELECT ref, commit_id, status FROM runs r WHERE snapshot IS NOT NULL AND "
                "own >= ? AND NOT EXISTS (SELECT 1 FROM listed l WHERE l.ref = r.ref AND "
                "l.commit_id = r.commit_id AND l.archive IN (SELECT value FROM json_each(?)))",
                (int(own), json.dumps(list(archived)))).fetchall()
            total = db.execute("SELECT count(*) FROM runs WHERE snapshot IS NOT NULL "
                               "AND own >= ?", (int(own),)).fetchone()[0]
    except (sqlite3.Error, OSError):
        return None
    return _heads(found), total - len(found)


def _heads(found: Iterable[tuple[str, str, str | None]]) -> Heads:
    return {ref: (commit, status is not None) for ref, commit, status in found}


def heads_of(repo: Repo, refs: Iterable[str], *, own: bool = False) -> Heads | None:
    """`finished_refs` of the readable runs among `refs` (the index as it is)."""
    try:
        with _connect(repo) as db:
            return _heads(db.execute(
                "SELECT ref, commit_id, status FROM runs WHERE ref IN (SELECT value FROM "
                "json_each(?)) AND snapshot IS NOT NULL AND own >= ?",
                (json.dumps(list(refs)), int(own))))
    except (sqlite3.Error, OSError):
        return None


# -- archives' listings (service/archives.py reads and checks them; the file only keeps
# them): an archive's commit names its listing, so what is kept is never stale ---------------
def kept_listings(repo: Repo, archives: Iterable[str]) -> set[str]:
    """Those of the archives (commits) `archives` whose listings the file keeps."""
    wanted = json.dumps(list(archives))
    with contextlib.suppress(sqlite3.Error, OSError), _connect(repo) as db:
        return {a for (a,) in db.execute(
            "SELECT DISTINCT archive FROM listed WHERE archive IN (SELECT value FROM "
            "json_each(?))", (wanted,))}
    return set()


def keep_listings(repo: Repo, listings: Mapping[str, Mapping[str, str]],
                  taken: Iterable[str]) -> None:
    """Keep `listings` (archive commit -> {run ref: commit}), checked when their archives
    were taken, and drop any kept of an archive no longer among `taken` (replaced)."""
    keep = json.dumps(list(taken))

    def write(db: sqlite3.Connection) -> None:
        with _transaction(db):
            db.execute("DELETE FROM listed WHERE archive NOT IN (SELECT value FROM "
                       "json_each(?))", (keep,))
            for archive, runs in listings.items():
                db.execute("DELETE FROM listed WHERE archive = ?", (archive,))
                db.executemany("INSERT INTO listed VALUES (?, ?, ?)",
                               [(archive, ref, commit) for ref, commit in runs.items()])
    with contextlib.suppress(sqlite3.Error, OSError), _connect(repo) as db:
        _retry(lambda: write(db))


def listed_in(repo: Repo, archives: Sequence[str],
              refs: Iterable[str]) -> list[tuple[str, str, str]] | None:
    """(archive, run ref, commit) for `refs` in the kept listings of `archives`."""
    try:
        with _connect(repo) as db:
            return db.execute(
                "SELECT archive, ref, commit_id FROM listed WHERE ref IN (SELECT value FROM "
                # `+archive`: found by ref, not by every run of the archives (1 ms, not 25)
                "json_each(?)) AND +archive IN (SELECT value FROM json_each(?))",
                (json.dumps(list(refs)), json.dumps(list(archives)))).fetchall()
    except (sqlite3.Error, OSError):
        return None


def launch_times(repo: Repo) -> dict[str, float]:
    """Every readable run's ref -> when it was launched (what folding orders runs by)."""
    return {ref: at for ref, _, _, _, at in _current(repo, "launched_at")}


def own_refs(repo: Repo) -> set[str]:
    """The refs of the runs this user launched here (sealed), no record decoded: what the
    pre-push hook may push."""
    return {ref for ref, _, _, own in _current(repo) if own}


def sync(repo: Repo) -> list[Entry]:
    """Every readable run under `refs/experiments/`, brought up to date with the refs."""
    out = []
    for ref, commit, snapshot, own, body in _current(repo, "body"):
        entry = _decode(ref, commit, snapshot, body, own=bool(own))
        if entry is not None:
            out.append(entry)
    return out


# What a text from the file may hold: `json_text` escapes everything else (ensure_ascii), so
# a text with more was not written by it, and is made again from the record (as is a text
# not made yet: the first `ls --json` makes them, so that `sync` and the table never pay the
# pure-Python encoder `indent` takes).
_SAFE = bytes([ord("\n"), *range(0x20, 0x7f)])


def _printable(text: object) -> bool:
    # bytes.translate, not a regex: 13 ms for 10,000 texts against 90
    return isinstance(text, str) and text.isascii() and \
        not text.encode().translate(None, _SAFE)


def listed(repo: Repo) -> list[Listed]:
    """Every readable run as `ls --json` prints it, in `sync`'s order: the texts the index
    keeps (no record decoded or encoded again), the unfinished runs' entries decoded."""
    out, made = [], []
    for ref, commit, snapshot, own, launched, status, body, text in _current(
            repo, "launched_at", "status", "body", "json"):
        fits = _printable(text) and isinstance(launched, float | int)
        if status is not None and fits:  # written back: nothing to look at
            out.append(Listed(launched_at=launched, text=text, entry=None))
            continue
        entry = _decode(ref, commit, snapshot, body, own=bool(own))
        if entry is None:  # as `sync` leaves it out
            continue
        live = entry if entry.result is None else None
        if fits:
            out.append(Listed(launched_at=launched, text=text, entry=live))
        else:  # not made yet, or not as written: made from the record
            new = json_text(as_json(entry.record, entry.result, commit, own=entry.own))
            out.append(Listed(launched_at=entry.record.launched_at, entry=live, text=new))
            made.append((new, ref, commit))
    if made:
        _remember(repo, made)
    return out


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (a reader never upgrades into a deadlock).
    Ctrl-C during the COMMIT's fsync is raised just after it: with nothing left to roll
    back, a ROLLBACK would fail and its sqlite3.Error, which callers suppress, would take
    the interrupt's place (`git exp watch` then ignored Ctrl-C)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _remember(repo: Repo, texts: list[tuple[str, str, str]]) -> None:
    """Keep `listed`'s texts (text, ref, commit) in rows still at that commit; harmless if
    the file is missing or busy."""
    def write(db: sqlite3.Connection) -> None:
        with _transaction(db):
            db.executemany("UPDATE runs SET json = ? WHERE ref = ? AND commit_id = ?", texts)
    with contextlib.suppress(sqlite3.Error, OSError), _connect(repo) as db:
        _retry(lambda: write(db))


def rows(repo: Repo, *, summary: bool = False) -> list[dict[str, Any]]:
    """`row.row_of` of every readable run, without decoding whole records (fast `ls`);
    with `summary`, only the fields in `row.SUMMARY` (faster still)."""
    texts = [row for *_, row in _current(repo, "summary" if summary else "row")]
    found: list[dict[str, Any]] = json.loads("[" + ",".join(texts) + "]")  # one call: faster
    return found


def _current(repo: Repo, *columns: str) -> list[tuple[Any, ...]]:
    """(ref, commit, snapshot, own, <columns>...) of every readable run, the index brought up
    to date."""
    _check_columns(columns)
    try:
        with _connect(repo) as db:
            _refresh(repo, db)
            return db.execute(
                f"SELECT {', '.join(('ref', 'commit_id', 'snapshot', 'own', *columns))} "  # noqa: S608 - checked names
                "FROM runs WHERE snapshot IS NOT NULL").fetchall()
    except (sqlite3.Error, OSError):  # no usable file: straight from git
        return _picked(_rows(repo, _ref_heads(repo)[0]), columns)


def refresh(repo: Repo, progress: Progress | None = None) -> None:
    """Bring the index up to date with the refs (`progress(done, total)` while reading runs,
    when there are many); harmless if the file is unusable (readers then go to git)."""
    with contextlib.suppress(sqlite3.Error, OSError), _connect(repo) as db:
        _refresh(repo, db, progress)


def unreadable(repo: Repo) -> list[str]:
    """Refs under `refs/experiments/` that hold no readable run: a name that is no run id,
    or a commit whose record is corrupted. `ls` names them rather than hiding them."""
    try:
        with _connect(repo) as db:
            _refresh(repo, db)
            bad = json.loads(_meta(db, "bad") or "[]")
            bad += [ref for (ref,) in db.execute("SELECT ref FROM runs WHERE snapshot IS NULL")]
    except (sqlite3.Error, OSError):
        heads, bad = _ref_heads(repo)
        readable = {ref for ref, *_ in _current(repo)}
        bad += [ref for ref in heads if ref not in readable]
    return sorted(bad)


def page(repo: Repo, *, summary: bool, narrow: tuple[str, list[Any]] | None = None,
         limit: int | None = None) -> list[dict[str, Any]] | None:
    """The rows (`rows`' kind) of the newest readable runs, at most `limit`, among those
    the SQL condition `narrow` (text, arguments) admits; None when the file is unusable."""
    cond, args = narrow or ("1", [])
    cut = "" if limit is None else f" LIMIT {int(limit)}"
    try:
        with _connect(repo) as db:
            _refresh(repo, db)
            texts = [t for (t,) in db.execute(
                f"SELECT {'summary' if summary else 'row'} FROM runs WHERE snapshot IS NOT "  # noqa: S608 - `cond`: narrow's, values as arguments
                f"NULL AND ({cond}) ORDER BY launched_at DESC, ref{cut}", args)]
    except (sqlite3.Error, OSError):
        return None
    found: list[dict[str, Any]] = json.loads("[" + ",".join(texts) + "]")
    return found


def ended(repo: Repo, *, before: float | None = None, statuses: Iterable[str] = (),
          metric: str | None = None) -> list[Entry]:
    """Written-back runs that may be what `gc` removes: launched before `before`, with one
    of `statuses`; or, with `metric`, every one that has it as a number (the ranking of
    `--keep-best` needs them all). A superset: `gc.select` decides."""
    conds: list[str] = ["status IS NOT NULL", "snapshot IS NOT NULL"]
    args: list[Any] = []
    if metric is not None:
        conds.append("ref IN (SELECT ref FROM vals WHERE kind = 0 AND name = ? "
                     "AND (num IS NOT NULL OR text = 'nan'))")
        args.append(metric)
    else:
        if before is not None:
            conds.append("launched_at < ?")
            args.append(before)
        wanted = list(statuses)
        if wanted:
            conds.append(f"status IN ({', '.join('?' for _ in wanted)})")
            args += wanted
    return _entries(repo, " AND ".join(conds), args)


def entries_of(repo: Repo, refs: Iterable[str]) -> dict[str, Entry]:
    """The readable runs of `refs`, by ref: read from the index, not from git one by one."""
    wanted = list(dict.fromkeys(refs))
    out: dict[str, Entry] = {}
    for at in range(0, len(wanted), 500):  # SQLite's bound on arguments, with room
        part = wanted[at:at + 500]
        out.update((e.ref, e) for e in _entries(
            repo, f"snapshot IS NOT NULL AND ref IN ({', '.join('?' for _ in part)})", part))
    return out


def unfinished(repo: Repo) -> list[Entry]:
    """The readable runs not written back (live, or so they seem from here)."""
    return _entries(repo, "status IS NULL AND snapshot IS NOT NULL", [])


def _entries(repo: Repo, cond: str, args: list[Any]) -> list[Entry]:
    try:
        with _connect(repo) as db:
            _refresh(repo, db)
            found = db.execute("SELECT ref, commit_id, snapshot, own, body FROM runs "  # noqa: S608 - fixed conditions, values as arguments
                               f"WHERE {cond}", args).fetchall()
    except (sqlite3.Error, OSError):  # straight from git: every run (callers filter again)
        found = [(r, c, s, o, b) for r, c, s, o, b in _current(repo, "body")]
    entries = (_decode(r, c, s, b, own=bool(o)) for r, c, s, o, b in found)
    return [e for e in entries if e is not None]


def known(repo: Repo, name: str, kind: int | None) -> bool | None:
    """Whether any run has a metric (kind 0), a param (1) or either (None) named exactly
    `name`; None when the file is unusable."""
    try:
        with _connect(repo) as db:
            return db.execute(
                "SELECT 1 FROM vals WHERE leaf = ? AND name = ? AND (? IS NULL OR kind = ?) "
                "LIMIT 1", (name.rpartition(".")[2], name, kind, kind)).fetchone() is not None
    except (sqlite3.Error, OSError):
        return None


def forget(repo: Repo, ref_names: Iterable[str]) -> None:
    """Drop rows (after `rm`/`gc`); harmless if the file is missing or busy."""
    gone = [(r,) for r in ref_names]

    def write(db: sqlite3.Connection) -> None:
        with _transaction(db):
            db.executemany("DELETE FROM runs WHERE ref = ?", gone)
            db.executemany("DELETE FROM vals WHERE ref = ?", gone)
    with contextlib.suppress(sqlite3.Error, OSError), _connect(repo) as db:
        _retry(lambda: write(db))


def succeeded_like(repo: Repo, argv: list[str], cwd: str) -> list[Entry]:
    """Written-back, succeeded runs with this argv and subdirectory: one indexed query, so
    `git exp run` pays next to nothing for the "already succeeded" check."""
    try:
        with _connect(repo) as db:
            _refresh(repo, db)
            found = db.execute(
                "SELECT ref, commit_id, snapshot, body FROM runs WHERE status = 'succeeded' "
                "AND argv = ? AND cwd = ?", (_argv_key(argv), cwd)).fetchall()
    except (sqlite3.Error, OSError):
        found = [(r, c, s, b) for r, c, s, _, b in _current(repo, "body")]
    entries = [_decode(r, c, s, b) for r, c, s, b in sorted(found)]  # own: unused
    return [e for e in entries if e is not None and e.result is not None
            and e.result.status == "succeeded" and e.record.argv == argv and e.record.cwd == cwd]


# -- params cache (params.py computes; the index only remembers) -----------------------------
def cached_params(repo: Repo, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    wanted = set(keys)
    found: dict[tuple[str, str], Any] = {}
    with contextlib.suppress(sqlite3.Error, OSError), _connect(repo) as db:
        for snap, cwd, body in db.execute("SELECT snapshot, cwd, body FROM params"):
            if (snap, cwd) in wanted:
                found[(snap, cwd)] = json.loads(body)
    return found


def store_params(repo: Repo, values: dict[tuple[str, str], Any]) -> None:
    with contextlib.suppress(sqlite3.Error, OSError), _connect(repo) as db:
        rows = [(s, c, json.dumps(v)) for (s, c), v in values.items()]
        _retry(lambda: db.executemany("INSERT OR REPLACE INTO params VALUES (?, ?, ?)", rows))


# -- internals --------------------------------------------------------------------------------
def _ref_heads(repo: Repo) -> tuple[dict[str, str], list[str]]:
    """Run ref -> commit, and the refs under the namespace whose name is no run id."""
    return ids.run_heads(repo.git("for-each-ref", "--format=%(refname) %(objectname)",
                                 ids.PREFIX))


@contextlib.contextmanager
def _connect(repo: Repo) -> Iterator[sqlite3.Connection]:
    path = path_of(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute(f"PRAGMA page_size = {PAGE}")  # a new file's; later, no effect
            _retry(lambda: db.execute("PRAGMA journal_mode = WAL"))
        db.execute("PRAGMA synchronous = NORMAL")  # a cache: losing the last write is fine
        # `own` depends on the reader's keys: another user (or a new key) starts afresh
        keys = trust.fingerprint(repo)
        if db.execute("PRAGMA user_version").fetchone()[0] != VERSION or \
                db.execute("PRAGMA application_id").fetchone()[0] != keys:
            _retry(lambda: _reset(db, keys))
        else:  # an index added since the file was made: made in place, not by a rebuild
            _retry(lambda: _add_indexes(db))  # (a no-op once there: 0.05 ms)
        yield db
    except sqlite3.DatabaseError as exc:
        db.close()
        if "locked" not in str(exc) and "busy" not in str(exc):
            for suffix in ("", "-wal", "-shm"):  # corrupt or foreign: it is only a cache
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        db.close()


# Made in every file whenever missing (`_connect`, `_index`): what was added since VERSION 7
# (`runs_unreadable`: without it `ls` found unreadable runs by reading every row, 0.13 s at
# 100,000), and the indexes a refresh of many runs drops while it fills the tables
# (`_unindexed`).
_ADDED = (
    "CREATE INDEX IF NOT EXISTS runs_unreadable ON runs (ref) WHERE snapshot IS NULL",
    "CREATE INDEX IF NOT EXISTS vals_leaf ON vals (leaf, num)",
    "CREATE INDEX IF NOT EXISTS vals_ref ON vals (ref)",
    # a push's comparison reads these columns of every run: from the index, not from rows of
    # ~2 KB (0.09 s at 100,000 against 0.2)
    "CREATE INDEX IF NOT EXISTS runs_heads ON runs (ref, commit_id, status, own) "
    "WHERE snapshot IS NOT NULL",
    # the runs the archives this clone took list: archive commit, run ref, its commit
    "CREATE TABLE IF NOT EXISTS listed (archive TEXT NOT NULL, ref TEXT NOT NULL, "
    "commit_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS listed_run ON listed (ref, commit_id)",
    "CREATE INDEX IF NOT EXISTS listed_archive ON listed (archive)",
)


def _add_indexes(db: sqlite3.Connection) -> None:
    for statement in _ADDED:
        db.execute(statement)


def _reset(db: sqlite3.Connection, keys: int) -> None:
    # every table: a `meta` stamp kept over an emptied `runs` would say it is up to date
    db.executescript("BEGIN IMMEDIATE; DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS params; "
                     "DROP TABLE IF EXISTS vals; DROP TABLE IF EXISTS meta; "
                     "DROP TABLE IF EXISTS listed;" + _SCHEMA
                     + "".join(f"{statement};" for statement in _ADDED)
                     + f"PRAGMA user_version = {VERSION}; "
                     f"PRAGMA application_id = {int(keys)}; COMMIT;")


def _retry(fn: Any) -> Any:
    for attempt in range(RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            if not transient or attempt == RETRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    return None


_COLUMNS = ("ref", "commit_id", "run_id", "snapshot", "launched_at", "status", "target",
            "argv", "cwd", "summary", "row", "body", "own", "json")
_BODY = _COLUMNS.index("body")
_OWN = _COLUMNS.index("own")


def _picked(made: list[tuple[Any, ...]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """(ref, commit, snapshot, own, <columns>...) of the readable ones of rows `_rows` made."""
    at = [_COLUMNS.index(c) for c in columns]
    return [(r[0], r[1], r[3], r[_OWN], *(r[i] for i in at)) for r in made
            if r[_BODY] is not None]


Progress = Callable[[int, int], None]
MAX_LOOSE = 1000  # loose run refs a refresh reads from their files; more: they are listed
BATCH = 2000  # runs read and written at a time: progress to show, memory bounded
PARALLEL = 4 * BATCH  # from this many runs to read, every core reads a share


def _check_columns(columns: tuple[str, ...]) -> None:
    unknown = [c for c in columns if c not in _COLUMNS]  # they go into the SQL text
    if unknown:
        raise ValueError(f"no column {unknown[0]!r}")


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    got = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if got is None else str(got[0])


def _refresh(repo: Repo, db: sqlite3.Connection, progress: Progress | None = None) -> None:
    """Rows for exactly the runs the refs hold: nothing listed while the refs' storage is
    unchanged since the last refresh; only the loose refs read while packed-refs is (a new
    run, a fetch of a few); else one `for-each-ref`. Only commits new or moved are read."""
    stamp = refs_stamp(repo, ids.PREFIX)
    last = _meta(db, "stamp")
    if stamp is not None and stamp == last:
        return
    # read before any listing: a ref deleted after it is still seen gone the next time
    loose = loose_refs(repo, ids.PREFIX, MAX_LOOSE)
    found = _loose_changes(repo, db, loose, stamp, last) or _listed_changes(repo, db)
    changed, gone, bad, moved = found
    if len(changed) <= BATCH:
        progress = None  # over in a moment: no bar (nor its imports)
    batches = [dict(changed[at:at + BATCH]) for at in range(0, len(changed), BATCH)]
    # Many (a first `ls` of a shared remote's runs): `vals` filled without its indexes,
    # made again in one pass at the end (random inserts into two B-trees were half of
    # SQLite's share, and SQLite's share is written one process at a time)
    bulk = len(changed) >= PARALLEL
    if bulk:
        _retry(lambda: _unindexed(db, [(ref,) for ref in moved]))
    done = 0
    for count in _indexed(repo, db, batches, bulk=bulk):
        if progress is not None:  # from the first count (0): after any fork, as a bar is
            done += count         # drawn by a thread of its own
            progress(done, len(changed))
    meta = [("stamp", stamp or "-"), ("bad", json.dumps(bad)), ("loose", json.dumps(loose))]

    def finish() -> None:
        with _transaction(db):
            db.executemany("DELETE FROM runs WHERE ref = ?", [(r,) for r in gone])
            db.executemany("DELETE FROM vals WHERE ref = ?", [(r,) for r in gone])
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta)
            _add_indexes(db)
    _retry(finish)


Changes = tuple[list[tuple[str, str]], list[str], list[str], set[str]]  # `_listed_changes`


def _listed_changes(repo: Repo, db: sqlite3.Connection) -> Changes:
    """By one `for-each-ref`: (run ref, commit) new or moved since the rows were written,
    the refs of rows gone, the refs whose name is no run id, and the moved refs."""
    heads, bad = _ref_heads(repo)
    known = dict(db.execute(  # from the indexes, not from rows of ~2 KB (0.1 s, not 0.18)
        "SELECT ref, commit_id FROM runs WHERE snapshot IS NOT NULL UNION ALL "
        "SELECT ref, commit_id FROM runs WHERE snapshot IS NULL").fetchall())
    changed = [(ref, c) for ref, c in heads.items() if known.get(ref) != c]
    return (changed, [ref for ref in known if ref not in heads], bad,
            {ref for ref, _ in changed if ref in known})


def _loose_changes(repo: Repo, db: sqlite3.Connection, loose: dict[str, str] | None,
                   stamp: str | None, last: str | None) -> Changes | None:
    """`_listed_changes` without listing every ref, when only loose refs changed since the
    last refresh (packed-refs as it was, and the loose refs of then known): those read now
    against those of then. None when the refs must be listed."""
    if loose is None or stamp is None or last is None or \
            stamp.rpartition(",")[2] != last.rpartition(",")[2]:  # packed-refs: rewritten
        return None
    try:
        then = json.loads(_meta(db, "loose") or "null")
    except ValueError:
        return None
    if not isinstance(then, dict):
        return None
    # A loose ref gone while packed-refs is unchanged was deleted (deleting a packed one
    # rewrites it), unless its file was removed by hand: git says which.
    vanished = [ref for ref in then if ref not in loose]
    runs, bad_now = ids.run_heads("".join(f"{ref} {oid}\n" for ref, oid in loose.items()))
    if vanished:
        still, still_bad = ids.run_heads(repo.git(
            "for-each-ref", "--format=%(refname) %(objectname)", *vanished))
        runs.update(still)
        bad_now += still_bad
    known = dict(db.execute("SELECT ref, commit_id FROM runs WHERE ref IN (SELECT value "
                            "FROM json_each(?))", (json.dumps([*runs, *vanished]),)).fetchall())
    changed = [(ref, c) for ref, c in runs.items() if known.get(ref) != c]
    gone = [ref for ref in vanished if ref not in runs and ref in known]
    before = json.loads(_meta(db, "bad") or "[]")
    bad = sorted({*(r for r in before if r not in vanished), *bad_now})
    return changed, gone, bad, {ref for ref, _ in changed if ref in known}


def _unindexed(db: sqlite3.Connection, moved: list[tuple[str]]) -> None:
    """The `vals` of runs about to be indexed again gone, and the indexes of `vals` and
    `runs_heads` with them. Another process that opens the file meanwhile makes them again
    (`_add_indexes`): the fill is then slower, never wrong."""
    with _transaction(db):
        db.executemany("DELETE FROM vals WHERE ref = ?", moved)
        db.execute("DROP INDEX IF EXISTS vals_leaf")
        db.execute("DROP INDEX IF EXISTS vals_ref")
        db.execute("DROP INDEX IF EXISTS runs_heads")


def _indexed(repo: Repo, db: sqlite3.Connection, batches: list[dict[str, str]], *,
             bulk: bool) -> Iterator[int]:
    """Each batch read and written: 0 once under way, then how many runs as each is done.
    Many (a first `ls` of a shared remote's runs): on every core, each process with its own
    connection; SQLite takes their writes in turn while the others decode."""
    with cores.workers(len(batches), worth=len(batches) * BATCH >= PARALLEL, ordered=False,
                       setup=_open_worker, args=(repo,)) as spread:
        yield 0
        if spread is None:
            for batch in batches:
                yield _index(repo, db, batch, bulk=bulk)
        else:
            yield from spread(_index_in_worker, ((b, bulk) for b in batches))


def _index(repo: Repo, db: sqlite3.Connection, batch: dict[str, str], *, bulk: bool) -> int:
    """One batch of runs read and written: their rows, and their values' (`bulk`: the old
    values went already, with the indexes a deletion needs)."""
    vals: list[tuple[Any, ...]] = []
    made = _rows(repo, batch, vals)

    def write() -> None:
        with _transaction(db):
            if not bulk:  # moved runs' old values go (and a concurrent refresh's)
                _add_indexes(db)  # had a bulk refresh dropped them: else a scan a run
                db.executemany("DELETE FROM vals WHERE ref = ?", [(r,) for r in batch])
            db.executemany("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           made)
            db.executemany("INSERT INTO vals VALUES (?,?,?,?,?,?)", vals)
    if made:
        _retry(write)
    return len(batch)


_WORKER: list[tuple[Repo, sqlite3.Connection]] = []  # a pool worker's own (`_open_worker`)


def _open_worker(repo: Repo) -> None:
    """A pool worker's connection (the parent's is never used across the fork)."""
    db = sqlite3.connect(path_of(repo), timeout=BUSY_MS / 1000, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
    db.execute("PRAGMA synchronous = NORMAL")
    _WORKER[:] = [(repo, db)]


def _index_in_worker(work: tuple[dict[str, str], bool]) -> int:
    repo, db = _WORKER[0]
    batch, bulk = work
    return _index(repo, db, batch, bulk=bulk)


def _vals(ref: str, row: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The `vals` rows of one run's row: its metrics and params, name by name."""
    out = []
    for kind, values in enumerate((row.get("metrics") or {}, row.get("params") or {})):
        for name, value in values.items():
            num = text = None
            if not isinstance(value, bool):
                text = str(value)
                with contextlib.suppress(TypeError, ValueError, OverflowError):
                    num = float(value)
            out.append((ref, kind, name, name.rpartition(".")[2], num, text))
    return out


def _rows(repo: Repo, heads: dict[str, str],
          vals: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
    """The table rows of the commits of `heads`: read in one `git cat-file`, and the trees
    of the sealed ones' snapshots in one more (a seal covers the snapshot's tree)."""
    runs: list[tuple[str, str, DecodedRun | None]] = []
    trees: dict[str, str] = {}
    for ref, commit, raw in _read_commits(repo, heads):
        try:
            if raw is None:
                raise GitexpError("not a commit, or over the size a record may have")
            parsed = Commit.parse(raw)
            run = decode_run(parsed.message, ref=ref, commit=commit, parents=parsed.parents)
            runs.append((ref, commit, run))
            if run.result is None:  # a snapshot commit: its own tree is the one sealed
                trees[commit] = parsed.tree
        except GitexpError:  # remembered as unreadable, so it is not parsed again
            runs.append((ref, commit, None))
    wanted = [r.record.snapshot for _, _, r in runs
              if r is not None and r.record.seal and r.record.snapshot not in trees]
    for spec, obj in zip(wanted, repo.read_objects(wanted), strict=True):
        if obj.type == "commit" and obj.data is not None:
            trees[spec] = Commit.parse(obj.data).tree
    return [_row(repo, ref, commit, run, trees, vals=vals) for ref, commit, run in runs]


def _row(repo: Repo, ref: str, commit: str, run: DecodedRun | None,
         trees: dict[str, str], *, vals: list[tuple[Any, ...]] | None) -> tuple[Any, ...]:
    """A table row; its `vals` rows go to `vals` (when given)."""
    if run is None:
        return (ref, commit, ids.id_from_ref(ref) or "", *([None] * 9), 0, None)
    rec, res = run.record, run.result
    own = bool(rec.seal) and trust.sealed(repo, run, trees.get(rec.snapshot, ""))
    row = row_of(rec, res, commit, own=own)
    if vals is not None:
        vals += _vals(ref, row)
    summary = _dumps({k: row[k] for k in SUMMARY})
    rest = _dumps({k: v for k, v in row.items() if k not in _SUMMARY})
    # The row is the summary and the rest, one text: each part encoded once (a cold sync
    # of 100,000 runs spent 1 s encoding summaries twice)
    whole = summary[:-1] + "," + rest[1:] if rest != "{}" else summary
    return (ref, commit, rec.id, rec.snapshot, rec.launched_at,
            res.status if res else None, rec.target, _argv_key(rec.argv), rec.cwd,
            summary, whole, run.message, int(own),
            None)  # json: made by the first `listed` that needs it


_SUMMARY = frozenset(SUMMARY)


# One encoder for every row: `json.dumps` with separators makes one a call (~1 us, twice
# a row)
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _decode(ref: str, commit: str, snapshot: str, message: str, *,
            own: bool = False) -> Entry | None:
    """The run of a row: its message decoded again, as when it was first read (the snapshot
    stands in for the parents: it is the first parent of a results commit)."""
    try:
        run = decode_run(message, ref=ref, commit=commit, parents=[snapshot])
    except GitexpError:
        return None
    return Entry(ref=ref, commit=commit, record=run.record, result=run.result, own=own)


def _argv_key(argv: list[str]) -> str:
    return json.dumps(argv, separators=(",", ":"))


def _read_commits(repo: Repo, heads: dict[str, str]) -> list[tuple[str, str, bytes | None]]:
    """(ref, commit, the commit object or None) for `heads`, in one `git cat-file`."""
    order = list(heads.items())
    objects = repo.read_objects((commit for _, commit in order), max_size=MAX_COMMIT)
    return [(ref, commit, obj.data if obj.type == "commit" else None)
            for (ref, commit), obj in zip(order, objects, strict=True)]

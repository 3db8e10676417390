"""The data version of a tree: what its `.dvc` files and `dvc.lock` files pin.

Read as plain YAML straight from git objects (or from the work tree), never through DVC
itself: a launch in a DVC repository pays a `git ls-tree` and a YAML parse, not DVC's
import time.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitexp.errors import GitexpError
from gitexp.git import Repo, run_git
from gitexp.model import checks

LOCK_FILE = "dvc.lock"
HASH_KEYS = ("md5", "etag", "checksum", "sha256")  # the first one present is the hash
MD5 = re.compile(r"[0-9a-f]{32}")
# What DVC turns into a cache path (`<cache>/ab/cdef…`): never a separator, never `..`.
HASH_VALUE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*(\.dir)?")
# Names that are the same directory as `.git` on some file system (case-insensitive ones,
# Windows' trailing dots and spaces, its 8.3 short name).
_CONFIG_DIRS = frozenset({".dvc", ".gitexp"})  # DVC's and gitexp's own settings
OUTSIDE = "outside the work tree"
# Commands that run a dvc.yaml pipeline: its stages' outputs are made by the job itself.
DVC_COMMANDS = (("dvc", "repro"), ("dvc", "exp", "run"))
# Options under which DVC may run a stage without its upstream stages (or run none at all):
# then the outputs pinned in dvc.lock are inputs like any other.
_PARTIAL = frozenset({"-s", "--single-item", "--dry", "--downstream", "--allow-missing",
                      "--no-commit", "-i", "--interactive"})


@dataclass(frozen=True)
class DataItem:
    """One DVC-tracked path as a `.dvc` file or `dvc.lock` records it."""
    path: str  # posix, relative to the repository root
    hash: str  # the value DVC records, e.g. `c41a…ad.dir` for a directory
    algo: str  # `md5` (DVC 3), `md5-dos2unix` (DVC 2 files), `etag`, …
    size: int | None
    nfiles: int | None  # directories only
    source: str  # `data.dvc`, or `sub/dvc.lock:train`
    is_out: bool  # an output (cached by DVC) rather than a stage's dependency
    in_git: bool = False  # git tracks the path itself (e.g. a `cache: false` metrics file)

    @property
    def cached(self) -> bool:
        """DVC keeps the bytes (so they must be pulled), not git."""
        return self.is_out and not self.in_git

    @property
    def is_dir(self) -> bool:
        return self.hash.endswith(".dir")

    @property
    def dvcfile(self) -> str:
        """The `.dvc` file or `dvc.yaml` stage DVC knows this entry by (a commit target)."""
        file, _, stage = self.source.partition(":")
        if not stage:
            return file
        yaml = posixpath.join(posixpath.dirname(file), "dvc.yaml")
        return f"{yaml}:{stage}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"hash": self.hash, "algo": self.algo, "size": self.size,
                             "source": self.source}
        if self.nfiles is not None:
            d["nfiles"] = self.nfiles
        if not self.is_out:
            d["dep"] = True
        if self.in_git:
            d["git"] = True
        return d

    @classmethod
    def from_dict(cls, path: str, d: dict[str, Any]) -> DataItem:
        return cls(path=path, hash=str(d["hash"]), algo=str(d.get("algo", "md5")),
                   size=d.get("size"), nfiles=d.get("nfiles"), source=str(d.get("source", "")),
                   is_out=not d.get("dep"), in_git=bool(d.get("git")))


def is_dvc_file(path: str) -> bool:
    name = posixpath.basename(path)
    in_dvc_dir = path.startswith(".dvc/") or "/.dvc/" in path
    return not in_dvc_dir and (name == LOCK_FILE or (name.endswith(".dvc") and name != ".dvc"))


def parse(file: str, text: bytes | str) -> list[DataItem]:
    """The entries of one `.dvc` or `dvc.lock` file (`file` is its repo-relative path)."""
    doc = load_yaml(file, text)
    base = posixpath.dirname(file)
    if posixpath.basename(file) != LOCK_FILE:
        return [i for e in doc.get("outs") or [] if (i := _item(e, base, file, out=True))]
    items: list[DataItem] = []
    for stage, body in (doc.get("stages") or {}).items():
        if not isinstance(body, dict):
            continue
        source = f"{file}:{stage}"
        items += [i for e in body.get("outs") or [] if (i := _item(e, base, source, out=True))]
        items += [i for e in body.get("deps") or [] if (i := _item(e, base, source, out=False))]
    return items


def merge(items: Iterable[DataItem]) -> dict[str, DataItem]:
    """One entry per path; an output wins over the same path seen as a dependency."""
    out: dict[str, DataItem] = {}
    for item in items:
        if item.path not in out or (item.is_out and not out[item.path].is_out):
            out[item.path] = item
    return dict(sorted(out.items()))


def of_tree(repo: Repo, tree: str) -> dict[str, DataItem]:
    """The data version pinned by the `.dvc`/`dvc.lock` files of a git tree."""
    listing = run_git(["--git-dir", str(repo.git_dir), "ls-tree", "-r", "-z", tree]).stdout
    blobs: list[tuple[str, str]] = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, name = entry.partition(b"\t")
        path = name.decode(errors="surrogateescape")
        kind, oid = meta.split()[1:3]
        if kind == b"blob" and is_dvc_file(path):
            blobs.append((path, oid.decode()))
    if not blobs:
        return {}
    texts = _cat_blobs(repo, blobs)
    items = merge(i for (path, _), text in zip(blobs, texts, strict=True)
                  for i in parse(path, text))
    in_git = git_files(repo, tree, items)
    return {p: replace(i, in_git=True) if p in in_git else i for p, i in items.items()}


def of_worktree(repo: Repo) -> dict[str, DataItem]:
    """The same, read from the work tree: tracked and untracked-not-ignored DVC files."""
    out = run_git(["--git-dir", str(repo.git_dir), "--work-tree", str(repo.root), "ls-files",
                   "-z", "-c", "-o", "--exclude-standard", "--", "*.dvc", "*dvc.lock"],
                  cwd=repo.root).stdout
    items: list[DataItem] = []
    for name in sorted(set(out.decode(errors="surrogateescape").split("\0"))):
        file = repo.root / name
        if name and is_dvc_file(name) and file.is_file():
            items += parse(name, file.read_bytes())
    return merge(items)


def runs_pipeline(argv: Iterable[str]) -> bool:
    """`dvc repro` / `dvc exp run` (without options that skip upstream stages)."""
    words = tuple(argv)
    return any(words[: len(c)] == c for c in DVC_COMMANDS) and not _PARTIAL & set(words)


def needed(items: Iterable[DataItem], argv: Iterable[str]) -> tuple[list[DataItem],
                                                                      list[DataItem]]:
    """The cached items a job must find before it starts, and those it regenerates: a
    pipeline run (`runs_pipeline`) makes every stage output itself (DVC reruns a stage whose
    outputs are absent), so only `.dvc` files' data is required; any other command may read
    any of them."""
    cached = [i for i in items if i.cached]
    if not runs_pipeline(argv):
        return cached, []
    required = [i for i in cached if not i.source.partition(":")[2]]
    return required, [i for i in cached if i.source.partition(":")[2]]


def to_record(items: dict[str, DataItem]) -> dict[str, Any] | None:
    return {p: i.to_dict() for p, i in items.items()} or None


def from_record(data: dict[str, Any] | None) -> dict[str, DataItem]:
    # An entry without a hash (a forged or damaged record) pins no version: nothing to pull,
    # as for recorded outputs, rather than a KeyError in `rerun --script` or the agent.
    return {p: DataItem.from_dict(p, d) for p, d in (data or {}).items()
            if isinstance(d, dict) and d.get("hash")}


def _item(entry: Any, base: str, source: str, *, out: bool) -> DataItem | None:
    if not isinstance(entry, dict) or "path" not in entry:
        return None
    algo_key = next((k for k in HASH_KEYS if entry.get(k)), None)
    if algo_key is None:
        return None  # declared but never computed (e.g. a stage that has not run)
    algo = str(entry.get("hash") or ("md5-dos2unix" if algo_key == "md5" else algo_key))
    path = posixpath.normpath(posixpath.join(base, str(entry["path"])))
    if path.startswith("../") or "://" in str(entry["path"]):
        return None  # outside the repository (an external or cloud output): not ours to pin
    return DataItem(path=path, hash=str(entry[algo_key]), algo=algo, size=entry.get("size"),
                    nfiles=entry.get("nfiles"), source=source, is_out=out)


def load_yaml(file: str, text: bytes | str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise GitexpError(f"{file} is not valid YAML: {str(exc).splitlines()[0]}",
                          hint=f"fix or regenerate it (`dvc commit {file}`)") from None
    return doc if isinstance(doc, dict) else {}


def _cat_blobs(repo: Repo, blobs: list[tuple[str, str]]) -> list[bytes]:
    """The contents of (path, blob id) pairs, in one `git cat-file`."""
    texts = []
    for (path, _), obj in zip(blobs, repo.read_objects(oid for _, oid in blobs), strict=True):
        if obj.type != "blob" or obj.data is None:  # e.g. a partial clone without it
            raise GitexpError(f"cannot read {path} ({obj.oid or obj.spec}: "
                              f"{obj.problem or obj.type})",
                              hint="is this a healthy git repository? `git fsck` checks")
        texts.append(obj.data)
    return texts


def git_files(repo: Repo, tree: str, paths: Iterable[str]) -> set[str]:
    """Which of `paths` are files or directories that git itself tracks in `tree`."""
    wanted = sorted(set(paths))
    if not wanted:
        return set()
    out = run_git(["--literal-pathspecs", "--git-dir", str(repo.git_dir), "ls-tree", "-z",
                   "--name-only", tree, "--",
                   *wanted]).stdout
    return {p.decode(errors="surrogateescape") for p in out.split(b"\0") if p}


def path_problem(path: object) -> str | None:
    """Why `path`, read from a run or a DVC `.dir` listing (untrusted), may not be written
    under the work tree, or None: the decoder's rule for paths (model/checks.py), in the
    words an output's error uses, and never into DVC's or gitexp's own settings."""
    why = checks.path_problem(path) if isinstance(path, str) else "is not a path"
    if why == "has control characters":
        return "with a control character in its name"
    if why:
        return OUTSIDE
    assert isinstance(path, str)  # for the type checker: checked above
    if {p.rstrip(" .").lower() for p in path.split("/")} & _CONFIG_DIRS:
        return "inside DVC's or gitexp's own settings"
    return None


def well_formed_hash(item: DataItem) -> bool:
    """An md5 value is 32 hex digits (plus `.dir`); any other stays one path component."""
    if item.algo.startswith("md5"):
        return MD5.fullmatch(item.hash.removesuffix(".dir")) is not None
    return HASH_VALUE.fullmatch(item.hash) is not None


def tree_modes(repo: Repo, tree: str, paths: Iterable[str]) -> dict[str, str]:
    """path -> git mode (`120000` is a symlink) of those of `paths` that `tree` holds."""
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    out = run_git(["--literal-pathspecs", "--git-dir", str(repo.git_dir), "ls-tree", "-z",
                   tree, "--", *wanted]).stdout
    modes = {}
    for entry in out.split(b"\0"):
        meta, _, name = entry.partition(b"\t")
        if name:
            modes[name.decode(errors="surrogateescape")] = meta.split()[0].decode()
    return modes


def checkout_path(root: Path, item: DataItem) -> Path:
    return root.joinpath(*item.path.split("/"))

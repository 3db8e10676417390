"""The worker half: materialise a run's data version before the command, save its outputs
after it. Called by the agent in its checkout of the snapshot."""

from __future__ import annotations

import configparser
import os
import posixpath
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitexp.data import dvcrepo, verify, version
from gitexp.data.plan import read_plan
from gitexp.data.version import DataItem
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.model.record import RunRecord
from gitexp.model.runstate import MAX_PIPELINE, PIPELINE, RunState
from gitexp.stores import Store

Log = Callable[[str], None]


def materialise(record: RunRecord, checkout: Path, *, store: Store | None = None,
                log: Log = lambda _: None) -> None:
    """Put exactly the recorded data version into `checkout`, or raise: linked from this
    machine's DVC cache (local target) or pulled from the DVC remote into the worker's cache;
    then re-hash it (unless the plan says not to) before the command may start. Stage
    outputs a pipeline command regenerates (`version.needed`) are put there only when they
    can be had; otherwise the pipeline makes them."""
    plan = read_plan(store, record.id)
    required, regenerated = version.needed(version.from_record(record.data).values(),
                                           record.argv)
    if not required and not regenerated:
        return
    cache = _configure(checkout, plan)
    with dvcrepo.opened(checkout) as repo:
        remote = plan.get("remote") or dvcrepo.default_remote(repo)
        absent = verify.missing(cache, required)
        if absent:
            if plan.get("cache") and remote is None:
                raise GitexpError(
                    "data version not in the DVC cache: "
                    + ", ".join(f"{i.path} ({i.hash[:12]})" for i in absent[:5]),
                    hint="`dvc pull` in your repository, or configure a DVC remote")
            sent = dvcrepo.fetch(repo, absent, remote)
            log(f"gitexp: data: fetched {sent} object(s) from DVC remote "
                f"{remote or '(default)'}")
        items = required + _obtainable(repo, cache, regenerated, remote, log)
        dvcrepo.checkout(repo, checkout, items)
    how = "linked from the local DVC cache" if plan.get("cache") else "pulled"
    if plan.get("verify", True):
        problems = verify.check(checkout, cache, items)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise GitexpError(f"data verification failed: {problems[0]}{more}",
                              hint="the DVC cache or remote holds corrupted objects; "
                                   "push them again from a good copy")
        how += ", hashes verified"
    for item in items:
        log(f"gitexp: data: {item.path} {item.hash} ({how})")


def _obtainable(repo: object, cache: Path, items: list[DataItem], remote: str | None,
                log: Log) -> list[DataItem]:
    """Those of `items` (outputs the job regenerates) that the cache has or the remote
    gives; the rest are left to the pipeline, said in the log."""
    absent = verify.missing(cache, items)
    if absent and remote is not None:
        for item in dvcrepo.absent_from_remote(repo, absent, remote):
            absent.remove(item)
            log(f"gitexp: data: {item.path} is on no DVC remote; the pipeline makes it")
        try:
            dvcrepo.fetch(repo, absent, remote)
            absent = []
        except GitexpError as exc:  # only a head start: the pipeline makes them anyway
            log(f"gitexp: data: {exc.message}; the pipeline makes them")
    elif absent:
        log("gitexp: data: " + ", ".join(i.path for i in absent)
            + " not in the DVC cache; the pipeline makes them")
    lacking = {i.path for i in verify.missing(cache, items)}
    return [i for i in items if i.path not in lacking]


def job_argv(record: RunRecord) -> tuple[list[str], str | None]:
    """The command the job runs, and why it is not the recorded argv (None: it is). A
    rerun of a pipeline (`dvc repro`, `dvc exp run`) runs with DVC's `--force`: every stage
    executes, none is answered from DVC's run-cache or skipped as unchanged; a rerun that
    replays nothing proves nothing."""
    argv = list(record.argv)
    if record.rerun_of is None or not version.runs_pipeline(argv) \
            or {"-f", "--force"} & set(argv):
        return argv, None
    at = 3 if argv[1] == "exp" else 2
    forced = [*argv[:at], "--force", *argv[at:]]
    return forced, (f"gitexp: rerun of {record.rerun_of}: running `{shlex.join(forced)}` "
                    "(DVC's --force: every stage runs; no run-cache, no skipped stages)")


def save_outputs(record: RunRecord, checkout: Path, *, store: Store | None = None,
                 log: Log = lambda _: None) -> dict[str, Any]:
    """Record the run's outputs in DVC, push them, and return {path: {hash, …, remote}}.
    A pipeline's `dvc.lock` and `dvc.yaml` go to the store too, for the results commit."""
    if store is not None and is_pipeline(record):
        keep_pipeline(record, checkout, store)
    paths = output_paths(record, checkout)
    if not paths:
        return {}
    try:
        return _save_outputs(record, checkout, paths, read_plan(store, record.id), log)
    except GitexpError as exc:  # the job's own result (exit code, metrics) still counts
        log(f"gitexp: outputs not saved: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        return {p: {"error": exc.message} for p in paths}


def _save_outputs(record: RunRecord, checkout: Path, paths: list[str], plan: dict[str, Any],
                  log: Log) -> dict[str, Any]:
    cache = _configure(checkout, plan)
    outputs: dict[str, Any] = {}
    saved: list[DataItem] = []
    with dvcrepo.opened(checkout) as repo:
        for path in paths:
            if not checkout.joinpath(*path.split("/")).exists():
                log(f"gitexp: output {path} was not produced")
                outputs[path] = {"error": "not produced"}
                continue
            saved.append(dvcrepo.save(repo, checkout, path))
        remote = plan.get("remote") or dvcrepo.default_remote(repo)
        if saved and remote is None and not plan.get("cache"):
            raise GitexpError("outputs cannot leave the worker: no DVC remote",
                              hint="name one with exp.target.<t>.dvcRemote")
        if saved and remote is not None:
            sent = dvcrepo.push(repo, saved, remote)
            log(f"gitexp: outputs: pushed {sent} object(s) to DVC remote {remote}")
        elif saved:
            log(f"gitexp: outputs kept in the DVC cache {cache} (no DVC remote configured)")
    for item in saved:
        outputs[item.path] = {**item.to_dict(), "remote": remote}
        outputs[item.path].pop("source", None)
        log(f"gitexp: output {item.path} {item.hash}")
    return outputs


def is_pipeline(record: RunRecord) -> bool:
    """The command is `dvc repro` / `dvc exp run`: its stage outputs are the run's."""
    argv = tuple(record.argv)
    return any(argv[: len(c)] == c for c in version.DVC_COMMANDS)


def keep_pipeline(record: RunRecord, checkout: Path, store: Store) -> None:
    """Send the run's `dvc.lock` and `dvc.yaml` (of its directory) to the store: regular
    files inside the checkout only, as RunState bounds them."""
    base = checkout.joinpath(*record.cwd.split("/")) if record.cwd else checkout
    files = {}
    for name in PIPELINE:
        path = base / name
        if path.is_file() and not path.is_symlink() and \
                path.resolve().is_relative_to(checkout.resolve()):
            files[name] = path.read_bytes()[: MAX_PIPELINE + 1]
    RunState(store, record.id).set_pipeline(files)


def output_paths(record: RunRecord, checkout: Path) -> list[str]:
    """`--out` paths (relative to where the user stood), plus the DVC-cached outputs of
    `dvc.yaml` stages when the command was `dvc repro` / `dvc exp run`."""
    paths = [posixpath.normpath(posixpath.join(record.cwd, o)) for o in record.outs]
    if is_pipeline(record):
        repo = Repo(root=checkout, git_dir=checkout / ".git", common_dir=checkout / ".git")
        paths += [i.path for i in version.of_worktree(repo).values()
                  if i.is_out and i.source.partition(":")[2]
                  and not version.git_files(repo, "HEAD", [i.path])]
    return sorted(set(paths))


def _configure(checkout: Path, plan: dict[str, Any]) -> Path:
    """Point the checkout's DVC at the right cache; keep its state inside the workdir."""
    dvc_dir = checkout / ".dvc"
    if not dvc_dir.is_dir():
        raise GitexpError("the snapshot has no .dvc directory, but its record needs DVC",
                          hint="commit the DVC project's .dvc/config")
    env_cache = os.environ.get("GITEXP_DVC_CACHE")
    cache = Path(_config_value(plan.get("cache")) or env_cache or dvc_dir / "cache")
    remotes = "".join(f"['remote \"{name}\"']\n    url = {url}\n"
                      for name, url in _relative_remotes(dvc_dir, plan.get("dvc_dir")))
    (dvc_dir / "config.local").write_text(
        "[core]\n"
        f"    site_cache_dir = {dvc_dir / 'tmp' / 'site'}\n"
        "[cache]\n"
        f"    dir = {cache}\n"
        f"    type = \"{dvcrepo.LINK_TYPES}\"\n" + remotes
    )
    return cache


_REMOTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _config_value(value: object) -> str | None:
    """A plan's path as a DVC config value: absolute, one line, nothing configobj would read
    as a quote, comment or list (the plan comes from a store: data, never config syntax)."""
    if not isinstance(value, str) or not value.startswith("/") or \
            any(c in value for c in "\"'#,\\") or not value.isprintable():
        return None
    return value


def _relative_remotes(dvc_dir: Path, origin: object) -> list[tuple[str, str]]:
    """The checkout's DVC remotes at a relative local path, resolved against the launching
    project's `.dvc` (`origin`, local target): `../storage` from the checkout would be a
    directory inside the run's work directory, deleted with it."""
    base = _config_value(origin)
    if base is None:
        return []
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(dvc_dir / "config", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return []  # DVC itself will say what is wrong with it
    found = []
    for section in parser.sections():
        kind, _, name = section.strip("'").partition(" ")
        name, url = name.strip('"'), parser.get(section, "url", fallback="")
        if kind != "remote" or not _REMOTE_NAME.fullmatch(name) or not url \
                or "://" in url or url.startswith(("/", "~")):
            continue
        resolved = _config_value(posixpath.normpath(posixpath.join(base, url)))
        if resolved is not None:
            found.append((name, resolved))
    return found

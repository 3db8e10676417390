"""Configuration in git's own format.

Team-shared settings live in a committed `.gitexp/config`; personal overrides in `git config`
(which wins). Targets are `exp.target.<name>.<key>`. Secrets never come from here: only from
the environment or a credential helper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitexp import knobs
from gitexp.errors import ConfigError, GitexpError
from gitexp.git import Repo, run_git
from gitexp.model.checks import BACKENDS
from gitexp.model.liveness import DEFAULT_INTERVAL, default_lost_after

SHARED_FILE = ".gitexp/config"
DEFAULT_TARGET = "local"


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    settings: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The raw text of setting `key` (registered in `gitexp.knobs`, else KeyError)."""
        knobs.knob(f"exp.target.*.{key}")
        return self.settings.get(key.lower(), default)

    def _typed(self, key: str, kind: str, default: Any) -> Any:
        raw = self.get(key)
        return default if raw is None else knobs.parse(f"exp.target.{self.name}.{key}", raw,
                                                       kind)

    def text(self, key: str, default: str | None = None) -> str | None:
        """`key`'s text, checked against its pattern if it has one (a Slurm time, ...)."""
        return self._typed(key, "text", default)  # type: ignore[no-any-return]

    def count(self, key: str, default: int | None = None) -> int | None:
        return self._typed(key, "count", default)  # type: ignore[no-any-return]

    def boolean(self, key: str, default: bool = False) -> bool:
        return bool(self._typed(key, "boolean", default))

    def choice(self, key: str, default: str) -> str:
        return str(self._typed(key, "choice", default))

    def duration(self, key: str, default: float) -> float:
        return float(self._typed(key, "duration", default))

    def names(self, key: str) -> list[str]:
        return list(self._typed(key, "names", []))

    def check(self) -> None:
        """Every setting of this target against its range (a launch, before it records)."""
        for key, raw in self.settings.items():
            if _registered(f"exp.target.{self.name}.{key}"):
                knobs.parse(f"exp.target.{self.name}.{key}", raw)

    def unknown(self) -> list[str]:
        """A warning for each of this target's settings that gitexp does not know."""
        return [w for key in sorted(self.settings)
                if (w := knobs.unknown(f"exp.target.{self.name}.{key}"))]

    def require(self, key: str) -> str:
        value = self.get(key)
        if not value:
            raise ConfigError(
                f"target {self.name!r} needs `{key}`",
                hint=f"git config exp.target.{self.name}.{key} VALUE",
            )
        return value


@dataclass(frozen=True)
class Config:
    values: dict[str, str]

    @classmethod
    def load(cls, repo: Repo) -> Config:
        values: dict[str, str] = {}
        shared = repo.root / SHARED_FILE
        if shared.is_file():
            values.update(_read(["config", "-f", str(shared), "--list", "-z"], str(shared)))
        values.update(_read(["--git-dir", str(repo.git_dir), "config", "--list", "-z"],
                            "git config"))
        return cls({k: v for k, v in values.items() if k.startswith(("exp.", "user."))})

    def get(self, key: str, default: str | None = None) -> str | None:
        """The raw text of setting `key` (registered in `gitexp.knobs`, else KeyError)."""
        if key[:4].lower() == "exp.":  # user.name, user.email: git's own
            knobs.knob(key)
        return self.values.get(key.lower(), default)

    # Typed readers: the value checked against the range `gitexp.knobs` declares for `key`.
    def _typed(self, key: str, kind: str, default: Any) -> Any:
        raw = self.get(key)
        return default if raw is None else knobs.parse(knobs.knob(key).key, raw, kind)

    def duration(self, key: str, default: float) -> float:
        return float(self._typed(key, "duration", default))

    def size(self, key: str, default: int) -> int:
        return int(self._typed(key, "size", default))

    def count(self, key: str, default: int | None = None) -> int | None:
        return self._typed(key, "count", default)  # type: ignore[no-any-return]

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._typed(key, "boolean", default))

    def choice(self, key: str, default: str) -> str:
        return str(self._typed(key, "choice", default))

    def names(self, key: str) -> list[str]:
        return list(self._typed(key, "names", []))

    def check(self) -> None:
        """Every `exp.*` setting (but the targets') against its range, e.g. before a launch
        records anything: some are read only later, on the worker or by a mail."""
        self.lost_after()  # also against exp.heartbeat
        for key, raw in self.values.items():
            if key.startswith("exp.") and not key.startswith("exp.target.") and \
                    _registered(key):
                knobs.parse(knobs.knob(key).key, raw)

    def unknown(self) -> list[str]:
        """A warning for each `exp.*` setting (but the targets') gitexp does not know."""
        return [w for key in sorted(self.values)
                if key.startswith("exp.") and not key.startswith("exp.target.")
                and (w := knobs.unknown(key))]

    def heartbeat(self) -> float:
        """`exp.heartbeat`: seconds between an agent's signs of life."""
        return self.duration("exp.heartbeat", DEFAULT_INTERVAL)

    def lost_after(self, interval: float | None = None) -> float:
        """`exp.lostAfter`: how long a run may be silent before it is lost, by default a
        few beats of `interval` (this repository's `exp.heartbeat` when not given)."""
        beat = self.heartbeat()
        lost = self.duration("exp.lostAfter", default_lost_after(beat if interval is None
                                                                 else interval))
        raw = self.get("exp.lostAfter")
        if raw is not None and lost <= beat:  # every run would be lost between two beats
            raise ConfigError(f"exp.lostAfter = {raw!r} is out of range",
                              hint=f"more than exp.heartbeat ({beat:g}s), e.g. "
                                   f"`git config exp.lostAfter {default_lost_after(beat):g}s`")
        return lost

    def targets(self) -> dict[str, Target]:
        found: dict[str, dict[str, str]] = {DEFAULT_TARGET: {"backend": "local"}}
        for key, value in self.values.items():
            if not key.startswith("exp.target."):
                continue
            name, _, setting = key[len("exp.target."):].rpartition(".")
            if name:
                found.setdefault(name, {})[setting] = value
        out = {}
        for name, settings in found.items():
            backend = settings.pop("backend", "local" if name == DEFAULT_TARGET else "")
            out[name] = Target(name=name, backend=backend, settings=settings)
        return out

    def target(self, name: str | None) -> Target:
        if name is not None and not name.strip():  # `-t ""` is a slip, not "the default"
            raise GitexpError("the target name is empty",
                              hint=f"name one of: {', '.join(sorted(self.targets()))}")
        name = name or self.get("exp.defaultTarget") or DEFAULT_TARGET
        targets = self.targets()
        if name not in targets:
            raise GitexpError(
                f"unknown target {name!r}",
                hint=f"known targets: {', '.join(sorted(targets))}; "
                     f"add one with `git config exp.target.{name}.backend ssh`",
            )
        target = targets[name]
        if target.backend not in BACKENDS:
            raise ConfigError(
                f"target {name!r} has backend {target.backend or '(none)'!r}",
                hint=f"set exp.target.{name}.backend to one of: {', '.join(BACKENDS)}",
            )
        return target


def _read(args: list[str], what: str) -> dict[str, str]:
    proc = run_git(args, check=False)
    if proc.returncode not in (0, 1):  # 1: no such file / empty
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"cannot read {what}: {err[0] if err else 'malformed'}",
                          hint=f"fix the file's syntax (`git config -f {what} --list` checks)")
    out: dict[str, str] = {}
    for item in proc.stdout.decode(errors="replace").split("\0"):
        if item:
            key, _, value = item.partition("\n")
            out[key] = value
    return out


def _registered(key: str) -> bool:
    try:
        knobs.knob(key)
    except KeyError:  # a setting gitexp does not read (a typo, a newer gitexp's)
        return False
    return True

"""Configuration in git's own format.

Team-shared settings live in a committed `.gitexp/config`; personal overrides in `git config`
(which wins). Targets are `exp.target.<name>.<key>`. Secrets never come from here: only from
the environment or a credential helper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
        return self.settings.get(key.lower(), default)

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
        return self.values.get(key.lower(), default)

    def get_float(self, key: str, default: float) -> float:
        raw = self.get(key)
        if raw is None:
            return default
        try:
            return _parse_duration(raw)
        except ValueError:
            raise ConfigError(f"{key} = {raw!r} is not a number or duration",
                              hint=f"e.g. `git config {key} 30s`") from None

    def heartbeat(self) -> float:
        """`exp.heartbeat`: seconds between an agent's signs of life."""
        return self.get_float("exp.heartbeat", DEFAULT_INTERVAL)

    def lost_after(self, interval: float | None = None) -> float:
        """`exp.lostAfter`: how long a run may be silent before it is lost, by default a
        few beats of `interval` (this repository's `exp.heartbeat` when not given)."""
        beat = self.heartbeat() if interval is None else interval
        return self.get_float("exp.lostafter", default_lost_after(beat))

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
        name = name or self.get("exp.defaulttarget") or DEFAULT_TARGET
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


def _parse_duration(raw: str) -> float:
    """`30`, `30s`, `5m`, `2h`, `1d` -> seconds. Negative, NaN and infinite are no duration
    (`gc --older-than -5d` would otherwise match every run)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = raw.strip().lower()
    seconds = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {raw!r}")
    return seconds

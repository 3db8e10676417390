"""Every setting gitexp reads from git config, in one registry: its key, kind, default and
range (README.md, "Every setting", is this table for people; tests/test_knobs.py keeps the
two equal). `Config` and `Target` read through it, so a key that is not here is a bug, and
a value out of its range is one `ConfigError` naming the key and the range.

Standard library only: the git hook runner imports it late, per commit.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from gitexp.errors import ConfigError
from gitexp.model.checks import BACKENDS

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Sizes as README says: k, M, G, T, P are powers of 1000, KiB.. of 1024 (case-insensitive).
SIZE_UNITS = {"": 1, **{p + s: (1024 if s in ("i", "ib") else 1000) ** (n + 1)
                        for n, p in enumerate("kmgtp") for s in ("", "b", "i", "ib")}}
PIB = 1024**5
TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0", ""})  # git: an empty value is false
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}\Z|unlimited\Z|infinite\Z", re.IGNORECASE)
_QUANTITY = re.compile(r"\d+(\.\d+)?([numkMGTPE]|[KMGTPE]i|e\d+)?\Z")  # Kubernetes
_SLURM_MEM = re.compile(r"\d+[KMGT]?\Z", re.IGNORECASE)


@dataclass(frozen=True)
class Knob:
    key: str  # as documented: `exp.lostAfter`, `exp.target.<name>.cpus`
    kind: str  # duration | size | count | boolean | choice | choices | names | text
    default: str  # as the README shows it ("" when unset means nothing)
    what: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None  # text that must match (e.g. a Slurm time)
    example: str = ""
    form: str = ""  # what `pattern` accepts, in words

    def range(self) -> str:  # noqa: PLR0911 - one sentence per kind
        """The range, as one hint says it (and the README's column)."""
        if self.kind in ("choice", "choices"):
            return ("one of: " if self.kind == "choice" else "a comma list of: ") + \
                ", ".join(self.choices)
        if self.kind == "boolean":
            return "true or false (yes/no, on/off, 1/0)"
        if self.kind == "names":
            return "variable names (A-Z, 0-9, _), separated by spaces or commas"
        if self.kind == "duration":
            return f"a duration from {_seconds(self.low)} to {_seconds(self.high)} (s, m, h, d)"
        if self.kind == "size":
            return f"a size from {_bytes(self.low)} to {_bytes(self.high)} (k, M, G, T, P; KiB..)"
        if self.kind == "count":
            return f"a whole number from {self.low:g} to {self.high:g}"
        return self.form or "text"

    def hint(self, key: str) -> str:
        example = f"; e.g. `git config {key} {self.example}`" if self.example else ""
        return self.range() + example


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _bytes(value: float | None) -> str:
    if not value:
        return "0"
    return "1 PiB" if value == PIB else f"{value:g}"


def _k(key: str, kind: str, default: str, what: str, *, low: float | None = None,
       high: float | None = None, choices: tuple[str, ...] = (),
       pattern: re.Pattern[str] | None = None, example: str = "", form: str = "") -> Knob:
    return Knob(key, kind, default, what, low, high, choices, pattern, example, form)


DAY = 86400.0
NOTIFY_EVENTS = ("start", "checkpoint", "resumed", "succeeded", "failed", "cancelled", "lost",
                 "timeout", "none")
T = "exp.target.<name>."
KNOBS: tuple[Knob, ...] = (
    # -- the repository's ----------------------------------------------------------------
    _k("exp.heartbeat", "duration", "2s", "seconds between an agent's signs of life",
       low=0.1, high=3600, example="2s"),
    _k("exp.lostAfter", "duration", "5 beats + 5s (10s at least)",
       "a live run silent this long is `lost`; more than exp.heartbeat",
       low=1, high=30 * DAY, example="60s"),
    _k("exp.maxUntrackedSize", "size", "50M", "untracked bytes a snapshot may take (0: no limit)",
       low=0, high=PIB, example="200M"),
    _k("exp.maxFileSize", "size", "50M", "any one new or changed file (0: no limit)",
       low=0, high=PIB, example="200M"),
    _k("exp.foldAt", "count", "600", "a remote holding more finished runs than this one ref "
       "each has its oldest folded into archives by the next push (0: never)", low=0,
       high=10**9, example="2000"),
    _k("exp.maxCheckpointSize", "size", "1GiB", "the files one `gitexp.checkpoint` may save "
       "to the store (over it: not saved, said in the log; 0: none)", low=0, high=PIB,
       example="200M"),
    _k("exp.verifyData", "boolean", "true", "re-hash DVC data on the worker before the job",
       example="false"),
    _k("exp.secrets", "names", "", "environment variables every target hands to its jobs",
       example="WANDB_API_KEY"),
    _k("exp.defaultTarget", "text", "local", "the target of `run` without -t"),
    _k("exp.trust", "text", "", "whose runs may rerun without --trust (a glob; repeatable; "
       "personal config only)"),
    # -- mail --------------------------------------------------------------------------------
    _k("exp.notify.to", "text", "user.email", "who gets the mail (addresses, comma-separated)"),
    _k("exp.notify.from", "text", "gitexp <first of to>", "the sender's address"),
    _k("exp.notify.sender", "choice", "maildir", "how mail leaves",
       choices=("maildir", "smtp", "mailgun"), example="smtp"),
    _k("exp.notify.on", "choices", "checkpoint,resumed,succeeded,failed,lost",
       "which events mail",
       choices=NOTIFY_EVENTS, example="failed,lost"),
    _k("exp.notify.minInterval", "duration", "30m", "at most one checkpoint mail this often",
       low=0, high=30 * DAY, example="1h"),
    _k("exp.notify.smtp.host", "text", "localhost", "the SMTP server"),
    _k("exp.notify.smtp.port", "count", "587 (465 with ssl)", "the SMTP port",
       low=1, high=65535, example="587"),
    _k("exp.notify.smtp.user", "text", "", "the SMTP login (password: GITEXP_SMTP_PASSWORD)"),
    _k("exp.notify.smtp.security", "choice", "starttls (ssl on port 465)", "the SMTP channel",
       choices=("starttls", "ssl", "none"), example="ssl"),
    _k("exp.notify.mailgun.domain", "text", "", "the Mailgun domain"),
    _k("exp.notify.mailgun.url", "text", "https://api.mailgun.net", "the Mailgun API"),
    # -- git hooks (a bad value warns and takes the default: a hook never blocks a commit) --
    _k("exp.hooks.trailer", "boolean", "true", "add an `Exp-Run:` trailer to commit messages"),
    _k("exp.hooks.annotate", "boolean", "false", "annotated exp/* tags with final metrics"),
    _k("exp.hooks.pushRuns", "boolean", "true", "`git push` also pushes the runs"),
    _k("exp.hooks.metrics", "text", "the first three", "the trailer's metrics, e.g. loss,acc"),
    _k("exp.hooks.best", "text", "", "which run a commit names: METRIC, min:METRIC, max:METRIC"),
    # -- every target ------------------------------------------------------------------------
    _k(T + "backend", "choice", "local (for `local`)", "the target's kind", choices=BACKENDS,
       example="ssh"),
    _k(T + "store", "text", "the backend's", "where code and results travel (a URL)"),
    _k(T + "workerStore", "text", "store", "the same store as workers see it"),
    _k(T + "secrets", "names", "", "variables this target hands to its jobs, hidden",
       example="HF_TOKEN"),
    _k(T + "env", "names", "", "plain variables this target hands to its jobs",
       example="CUDA_VISIBLE_DEVICES"),
    _k(T + "dvcRemote", "text", "the DVC default", "the DVC remote workers pull data from"),
    _k(T + "dvc-remote", "text", "", "the same as dvcRemote (older spelling)"),
    _k(T + "notify<Key>", "text", "exp.notify.<key>", "per target: a mail setting, "
       "e.g. notifyMinInterval (read as that setting)"),
    _k(T + "keep", "boolean", "false", "docker, gce: keep the container or VM after the run"),
    _k(T + "python", "text", "python3", "ssh, slurm, kubernetes: the workers' Python"),
    _k(T + "workdir", "text", "~/.cache/gitexp (ssh), $TMPDIR (slurm)", "where checkouts go"),
    _k(T + "warmCheckouts", "count", "4", "local, ssh, docker, slurm: warm checkouts kept per "
       "worker, moved from run to run (0: a fresh one per run)", low=0, high=64, example="2"),
    _k(T + "maxAttempts", "count", "3", "attempts a run the platform interrupts may take "
       "(preempted, requeued, evicted; 1: never again)", low=1, high=100, example="5"),
    _k(T + "host", "text", "", "ssh: an ssh alias or user@host; slurm: a login node"),
    _k(T + "sshConfig", "text", "$GITEXP_SSH_CONFIG or ~/.ssh/config", "ssh, slurm: ssh's config"),
    _k(T + "ssh_config", "text", "", "slurm: the same as sshConfig (older spelling)"),
    _k(T + "port", "count", "22", "ssh: the port", low=1, high=65535, example="2222"),
    _k(T + "image", "text", "the project image (docker), debian-12 (gce)",
       "docker, kubernetes, gce: the image"),
    _k(T + "engine", "choice", "podman (docker if DOCKER_HOST)", "docker: which engine",
       choices=("podman", "docker"), example="podman"),
    _k(T + "network", "text", "host (docker), global/networks/default (gce)", "the network"),
    _k(T + "gpus", "text", "", "docker: all or 0,1; slurm: --gpus; kubernetes: a count; "
       "gce: TYPE:COUNT"),
    _k(T + "volumes", "text", "", "docker: bind mounts, e.g. /data:/data:ro"),
    _k(T + "baseImage", "text", "python:X.Y-slim", "docker: `image build`'s base"),
    _k(T + "buildNetwork", "text", "host", "docker: `image build`'s network"),
    _k(T + "requirements", "text", "requirements.txt", "docker: `image build`'s requirements"),
    _k(T + "partition", "text", "", "slurm: --partition"),
    _k(T + "time", "text", "", "slurm: --time", pattern=_SLURM_TIME, example="4:00:00",
       form="a Slurm time: MINUTES, H:MM:SS, D-H:MM:SS or UNLIMITED"),
    _k(T + "cpus", "count", "", "slurm: --cpus-per-task", low=1, high=100_000, example="8"),
    _k(T + "mem", "text", "", "slurm: --mem", pattern=_SLURM_MEM, example="16G",
       form="a Slurm size: MB, or a number with K, M, G or T"),
    _k(T + "gres", "text", "", "slurm: --gres"),
    _k(T + "account", "text", "", "slurm: --account"),
    _k(T + "qos", "text", "", "slurm: --qos"),
    _k(T + "sbatch", "text", "", "slurm: more #SBATCH options, `;`-separated"),
    _k(T + "setup", "text", "", "slurm: shell run before the agent"),
    _k(T + "namespace", "text", "default", "kubernetes: the namespace"),
    _k(T + "context", "text", "the current context", "kubernetes: which cluster"),
    _k(T + "kubeconfig", "text", "~/.kube/config", "kubernetes: the client's config"),
    _k(T + "cpu", "text", "", "kubernetes: CPU request and limit", pattern=_QUANTITY,
       example="2", form="a Kubernetes quantity, e.g. 2 or 500m"),
    _k(T + "memory", "text", "", "kubernetes: memory request and limit", pattern=_QUANTITY,
       example="8Gi", form="a Kubernetes quantity, e.g. 8Gi or 512M"),
    _k(T + "nodeSelector", "text", "", "kubernetes: KEY=VALUE, ..."),
    _k(T + "tolerations", "text", "", "kubernetes: KEY=VALUE:EFFECT, ..."),
    _k(T + "nfs", "text", "", "kubernetes: SERVER:/export mounted at `mount`; gce: "
       "SERVER:/export:/mount/point, mounted before the job"),
    _k(T + "pvc", "text", "", "kubernetes: a claim mounted at `mount`"),
    _k(T + "mount", "text", "/data", "kubernetes: where the data volume goes"),
    _k(T + "secret", "text", "", "kubernetes: a Secret whose keys become variables"),
    _k(T + "secretEnv", "text", "", "kubernetes: VAR=SECRET/KEY; gce: VAR=SECRET, ..."),
    _k(T + "ttl", "duration", "7d", "kubernetes: how long a finished Job stays",
       low=60, high=365 * DAY, example="7d"),
    _k(T + "project", "text", "", "gce: the project (required)"),
    _k(T + "zone", "text", "", "gce: the zone (required)"),
    _k(T + "machineType", "text", "e2-standard-4", "gce: the machine type"),
    _k(T + "container", "text", "", "gce: run the agent in this container on the VM"),
    _k(T + "spot", "boolean", "false", "gce: a spot VM"),
    _k(T + "preemptible", "boolean", "false", "gce: a preemptible VM"),
    _k(T + "diskSize", "count", "50", "gce: the boot disk, in GB", low=10, high=65536,
       example="100"),
    _k(T + "diskType", "text", "pd-balanced", "gce: the boot disk's type"),
    _k(T + "serviceAccount", "text", "the default", "gce: the VM's service account"),
    _k(T + "labels", "text", "", "gce: KEY=VALUE, ..."),
    _k(T + "subnetwork", "text", "", "gce: the subnetwork"),
    _k(T + "externalIp", "boolean", "true", "gce: give the VM an external address"),
    _k(T + "onExit", "choice", "delete", "gce: what the VM does when the run ends",
       choices=("delete", "stop"), example="stop"),
)
REGISTRY = {k.key.lower().replace("<name>", "*"): k for k in KNOBS}
# `exp.target.<name>.notify<Key>` overrides `exp.notify.<key>`: `notifysmtpport` -> smtp.port
NOTIFY_OVERRIDES = {"notify" + k.key[len("exp.notify."):].lower().replace(".", ""): k
                    for k in KNOBS if k.key.startswith("exp.notify.")}


def knob(key: str) -> Knob:
    """The registered setting `key` names (a target's as `exp.target.<any name>.<key>`).
    An unregistered key is gitexp's bug, not the user's: KeyError."""
    low = key.lower()
    if low.startswith("exp.target."):
        setting = low.rpartition(".")[2]
        found = REGISTRY.get("exp.target.*." + setting) or NOTIFY_OVERRIDES.get(setting)
        if found is None:
            raise KeyError(f"unregistered setting {key} (add it to gitexp.knobs.KNOBS)")
        return found
    return REGISTRY[low]


def unknown(key: str) -> str | None:
    """None for a registered setting; else a warning naming it, with the likeliest setting
    meant (a misspelt machine type would otherwise pass in silence, and the default win).
    Not an error: a newer gitexp's setting in a shared config is fine."""
    try:
        knob(key)
        return None
    except KeyError:
        pass
    low = key.lower()
    if low.startswith("exp.target."):
        head, _, setting = low.rpartition(".")
        names = {k.rpartition(".")[2]: k.rpartition(".")[2] for k in REGISTRY
                 if k.startswith("exp.target.*.")}
        near = difflib.get_close_matches(setting, list(names), n=1)
        meant = f"{head}.{near[0]}" if near else None
    else:
        near = difflib.get_close_matches(low, [k for k in REGISTRY if "*" not in k], n=1)
        meant = near[0] if near else None
    spelled = {k.key.lower().replace("<name>", "*"): k.key for k in KNOBS}
    if meant is not None:  # as the README spells it
        head, _, last = meant.rpartition(".")
        template = spelled.get(meant) or spelled.get("exp.target.*." + last, meant)
        meant = f"{head}.{template.rpartition('.')[2]}"
    return (f"warning: {key} is no setting this gitexp knows: ignored"
            + (f" (did you mean {meant}?)" if meant else " (README: Every setting)"))


def parse(key: str, raw: str, kind: str | None = None) -> object:
    """`raw` as the setting `key` takes it (checked against its range), else ConfigError
    naming `key` and the range. `kind`, if given, is what the caller expects: a mismatch
    is gitexp's bug."""
    spec = knob(key)
    if kind is not None and spec.kind != kind:
        raise TypeError(f"{key} is a {spec.kind}, read as a {kind}")
    reader = _READERS.get(spec.kind, _text)
    return reader(spec, key, raw)


def _bad(spec: Knob, key: str, raw: str, why: str = "is out of range") -> ConfigError:
    return ConfigError(f"{key} = {raw!r} {why}", hint=spec.hint(key))


def _number(spec: Knob, key: str, raw: str, value: float) -> float:
    if (spec.low is not None and value < spec.low) or (spec.high is not None
                                                        and value > spec.high):
        raise _bad(spec, key, raw)
    return value


def duration_seconds(raw: str) -> float:
    """`30`, `30s`, `5m`, `2h`, `1d` -> seconds. Negative, NaN and infinite are no duration
    (`gc --older-than -5d` would otherwise match every run): ValueError."""
    text = raw.strip().lower()
    seconds = float(text[:-1]) * DURATION_UNITS[text[-1]] if text and text[-1] in \
        DURATION_UNITS else float(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {raw!r}")
    return seconds


def size_bytes(raw: str) -> int:
    """A size as git config writes one (`50m`, `1G`, `200MB`, `1GiB`): ValueError if none."""
    text = raw.strip().lower().replace(" ", "")
    digits = text.rstrip("kmgtpib")
    unit = text[len(digits):]
    if unit not in SIZE_UNITS:
        raise ValueError(f"not a size: {raw!r}")
    size = float(digits) * SIZE_UNITS[unit]
    if not 0 <= size < math.inf:
        raise ValueError(f"not a size: {raw!r}")
    return int(size)


def _duration(spec: Knob, key: str, raw: str) -> float:
    try:
        seconds = duration_seconds(raw)
    except ValueError:
        raise _bad(spec, key, raw, "is not a duration") from None
    return _number(spec, key, raw, seconds)


def _size(spec: Knob, key: str, raw: str) -> int:
    try:
        size = size_bytes(raw)
    except ValueError:
        raise _bad(spec, key, raw, "is not a size") from None
    return int(_number(spec, key, raw, size))


def _count(spec: Knob, key: str, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(spec, key, raw, "is not a whole number") from None
    return int(_number(spec, key, raw, value))


def _boolean(spec: Knob, key: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE or word in FALSE:
        return word in TRUE
    raise _bad(spec, key, raw, "is not true or false")


def _choice(spec: Knob, key: str, raw: str) -> str:
    word = raw.strip().lower()
    if word not in spec.choices:
        raise _bad(spec, key, raw, "is not one of its choices")
    return word


def _choices(spec: Knob, key: str, raw: str) -> list[str]:
    words = [w.strip().lower() for w in raw.split(",") if w.strip()]
    unknown = [w for w in words if w not in spec.choices]
    if unknown:
        raise _bad(spec, key, raw, f"names unknown values: {', '.join(unknown)}")
    return words


def _names(spec: Knob, key: str, raw: str) -> list[str]:
    names = [n for n in re.split(r"[\s,]+", raw) if n]
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise _bad(spec, key, raw, f"names no variable: {bad[0]!r}")
    return names


def _text(spec: Knob, key: str, raw: str) -> str:
    if spec.pattern is not None and raw.strip() and not spec.pattern.match(raw.strip()):
        raise _bad(spec, key, raw, "is not valid")
    return raw


_READERS = {"duration": _duration, "size": _size, "count": _count, "boolean": _boolean,
            "choice": _choice, "choices": _choices, "names": _names, "text": _text}

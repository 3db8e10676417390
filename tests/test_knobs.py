"""Bounds on every knob: each `exp.*` setting (gitexp.knobs, the one registry) and each
numeric option of every verb refuses a value out of its range with one line naming the key
or option and the range: exit 1 for a setting, 2 for the command line, never a traceback.
README's table of settings is the registry, row for row."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import pytest
from typer.main import get_command

from gitexp import knobs
from gitexp.cli._app import app, load_all
from gitexp.errors import ConfigError
from gitexp.git.config import Config, Target
from tests.helpers import assert_user_error, exp, git

ROOT = Path(__file__).resolve().parents[1]


# -- the registry is the README's table, and every key the code reads is in it -------------------
def readme_rows() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Every setting"):]
    section = section[:section.index("\n## ")]
    rows = re.findall(r"^\| `([^`]+)` \| (.*?) \| (.*?) \| .*\|$", section, re.MULTILINE)
    return {key: (default, span) for key, default, span in rows}


def test_the_readme_table_lists_every_setting_with_its_default_and_range() -> None:
    rows = readme_rows()
    assert list(rows) == [k.key for k in knobs.KNOBS]  # the same keys, in the same order
    for k in knobs.KNOBS:
        assert rows[k.key] == (k.default or "(unset)", k.range()), k.key


READERS = r"(?:target|each)\.(?:get|require|text|count|boolean|choice|duration|names)"


def keys_read_in_source() -> set[str]:
    """`exp.*` keys named in src/ (strings and f-strings), and the target settings read by
    name (`target.get("cpus")`), as registry keys."""
    found = set()
    for path in (ROOT / "src" / "gitexp").rglob("*.py"):
        code = path.read_text()
        for key in re.findall(r"""["'`](exp\.[A-Za-z.]+[A-Za-z])\b""", code):
            found.add(key)
        for key in re.findall(READERS + r"""\(\s*["']([A-Za-z_-]+)["']""", code):
            found.add(f"exp.target.<name>.{key}")
    return found


def test_every_key_the_code_reads_is_registered() -> None:
    found = keys_read_in_source()
    unregistered = []
    for key in found - {"exp.target", "exp.notify", "exp.hooks", "exp.target.<name>.notify"}:
        try:
            knobs.knob(re.sub(r"\.(NAME|<name>)\.", ".x.", key))
        except KeyError:
            unregistered.append(key)
    assert unregistered == []
    assert len(found) > 40


def test_a_key_read_without_registering_it_is_a_bug_not_a_silent_none() -> None:
    with pytest.raises(KeyError, match="unregistered"):
        Target("t", "local").get("surelyNoSuchSetting")
    with pytest.raises(KeyError):
        Config({}).get("exp.surelyNoSuchSetting")


# -- every setting, out of its range ---------------------------------------------------------
def bad_values(k: knobs.Knob) -> list[str]:  # noqa: PLR0911 - one list per kind
    """Values out of `k`'s range (or not of its kind at all)."""
    if k.kind == "duration":
        return ["nan", "-1", "1x", f"{int(k.high or 0) + 1}"] + (["0"] if k.low else [])
    if k.kind == "size":
        return ["1e999", "-5m", "2P", "huge"]
    if k.kind == "count":
        return ["x", "1.5", f"{int(k.low or 0) - 1}", f"{int(k.high or 0) + 1}"]
    if k.kind == "boolean":
        return ["maybe", "2"]
    if k.kind in ("choice", "choices"):
        return ["bogus"]
    if k.kind == "names":
        return ["A B-C", "1X", "$(id)"]
    return ["?!*"] if k.pattern is not None else []


CHECKED = [k for k in knobs.KNOBS if bad_values(k)]


@pytest.mark.parametrize("k", CHECKED, ids=lambda k: k.key)
def test_every_setting_refuses_values_out_of_its_range(k: knobs.Knob) -> None:
    key = k.key.replace("<name>", "gpu")
    for raw in bad_values(k):
        with pytest.raises(ConfigError) as err:
            knobs.parse(key, raw)
        assert err.value.message.startswith(f"{key} = {raw!r} "), err.value.message
        assert k.range() in (err.value.hint or ""), err.value.hint


def test_values_in_range_are_taken() -> None:
    c = Config({"exp.heartbeat": "0.1", "exp.lostafter": "30d", "exp.maxfilesize": "1PiB",
                "exp.verifydata": "off", "exp.secrets": "A_1, B  C"})
    assert (c.heartbeat(), c.lost_after()) == (0.1, 30 * 86400.0)
    assert c.size("exp.maxFileSize", 0) == 1024**5
    assert c.boolean("exp.verifyData", True) is False
    assert c.names("exp.secrets") == ["A_1", "B", "C"]
    t = Target("hpc", "slurm", {"cpus": "8", "time": "2-04:00:00", "mem": "16G", "ttl": "1d"})
    t.check()
    assert (t.count("cpus"), t.duration("ttl", 0)) == (8, 86400.0)


def test_lost_after_must_exceed_the_heartbeat() -> None:
    with pytest.raises(ConfigError, match=r"^exp.lostAfter = '2' is out of range$") as err:
        Config({"exp.heartbeat": "5", "exp.lostafter": "2"}).lost_after()
    assert "more than exp.heartbeat (5s)" in (err.value.hint or "")


def test_a_per_target_mail_setting_is_named_as_set() -> None:
    from gitexp.notify.settings import from_config

    with pytest.raises(ConfigError, match=r"^exp.target.gpu.notifysmtpport = '0' is out"):
        from_config(Config({}), Target("gpu", "ssh", {"notifysmtpport": "0"}), "p")


# The cases, end to end: `git exp run` refuses before it records anything.
SETTINGS = [
    ("exp.lostAfter", "0", "is out of range"),
    ("exp.heartbeat", "0", "is out of range"),
    ("exp.verifyData", "maybe", "is not true or false"),
    ("exp.secrets", "OK BAD-NAME", "names no variable: 'BAD-NAME'"),
    ("exp.maxFileSize", "1e999", "is not a size"),
    ("exp.notify.sender", "pigeon", "is not one of its choices"),
    ("exp.target.local.cpus", "0", "is out of range"),
]


def test_settings_out_of_range_stop_a_launch_in_one_line(repo: Path) -> None:
    for key, raw, needle in SETTINGS:
        git("config", key, raw, cwd=repo)
        proc = exp("run", "--", "true", cwd=repo, check=False)
        git("config", "--unset", key, cwd=repo)
        assert_user_error(proc, f"error: {key} = {raw!r} {needle}", "hint: ")
        assert proc.returncode == 1
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""


def test_a_misspelt_setting_is_named_at_launch_with_the_one_meant(repo: Path) -> None:
    """A setting gitexp does not know is not an error (a newer gitexp's, in a shared
    config), but `run` names it, with the likeliest setting meant, and goes on."""
    for key, value in [("exp.target.local.warmCheckout", "2"), ("exp.maxUntrackedSiz", "1M"),
                       ("exp.target.local.zzzq", "1")]:
        git("config", key, value, cwd=repo)
    proc = exp("run", "--", "true", cwd=repo)
    said = [line for line in proc.stderr.splitlines() if line.startswith("warning: exp.")]
    assert said == [
        "warning: exp.maxuntrackedsiz is no setting this gitexp knows: ignored "
        "(did you mean exp.maxUntrackedSize?)",
        "warning: exp.target.local.warmcheckout is no setting this gitexp knows: ignored "
        "(did you mean exp.target.local.warmCheckouts?)",
        "warning: exp.target.local.zzzq is no setting this gitexp knows: ignored "
        "(README: Every setting)",
    ], proc.stderr
    assert "succeeded" in proc.stderr + proc.stdout
    assert knobs.unknown("exp.target.gpu.machineType") is None  # a known one: nothing


def test_a_hook_says_a_bad_switch_and_takes_its_default(repo: Path) -> None:
    exp("hooks", "install", cwd=repo)
    (repo / "f").write_text("x")
    exp("run", "--", "true", cwd=repo)  # a run of the tree about to be committed
    git("config", "exp.hooks.trailer", "maybe", cwd=repo)  # (`run` itself would refuse it)
    git("add", "f", cwd=repo)
    proc = git_commit(repo)
    assert proc.returncode == 0
    assert "gitexp: exp.hooks.trailer = 'maybe' is not true or false; taken as True" in \
        proc.stderr


def git_commit(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-qm", "change"], cwd=repo, capture_output=True,
                          text=True, check=False)


# -- every numeric option of every verb ----------------------------------------------------
def test_every_numeric_option_has_a_range() -> None:
    load_all()
    unchecked = []
    groups = [get_command(app)]
    while groups:
        group = groups.pop()
        for name, cmd in getattr(group, "commands", {}).items():
            if hasattr(cmd, "commands"):
                groups.append(cmd)
            for param in cmd.params:
                kind = getattr(param, "type", None)
                kinds = [getattr(t, "name", "") for t in getattr(kind, "types", [kind])]
                if {"integer", "float"} & set(kinds) and param.callback is None:
                    unchecked.append(f"{name} {param.opts[0]}")
    assert unchecked == []


OPTIONS = [
    (["rerun", "x", "--rtol", "nan"], "--rtol nan is out of range", "a tolerance of 0 or more"),
    (["rerun", "x", "--rtol", "-1"], "--rtol -1 is out of range", "a tolerance"),
    (["rerun", "x", "--atol", "inf"], "--atol inf is out of range", "a tolerance"),
    (["watch", "--interval", "-1"], "--interval -1 is out of range", "seconds from 0.2"),
    (["watch", "--interval", "nan"], "--interval nan is out of range", "seconds from 0.2"),
    (["watch", "--interval", "1e9"], "--interval 1e+09 is out of range",
     "seconds from 0.2 to 86400"),
    (["ls", "--limit", "-1"], "--limit -1 is out of range", "a number of runs from 0"),
    (["run", "--max-parallel", "-1", "--sweep", "a=1,2", "--", "true"],
     "--max-parallel -1 is out of range", "a number of runs from 0 to 10000"),
    (["gc", "--keep-best", "", "5"], "--keep-best needs a metric, not ''", "e.g. --keep-best loss"),
    (["gc", "--keep-best", "loss", "-3"], "--keep-best loss -3 is out of range",
     "e.g. --keep-best loss 5"),
    (["gc", "--older-than", "-5d"], "--older-than '-5d' is not a duration",
     "a number of s, m, h or d, e.g. 30d"),
    (["gc", "--older-than", "nan"], "--older-than 'nan' is not a duration",
     "a number of s, m, h or d"),
    (["run", "-t", "", "--", "true"], "--target is empty", "give a name, or leave --target out"),
    (["rerun", "x", "-t", " "], "--target is empty", "give a name, or leave --target out"),
    (["image", "build", "-t", ""], "--target is empty", "give a name, or leave --target out"),
    (["ls", "--limit", "abc"], "Invalid value for '--limit'", "`git exp ls -h` lists"),
    (["watch", "--interval", "x"], "Invalid value for '--interval'", "`git exp watch -h` lists"),
]


def test_options_out_of_range_are_usage_errors_in_one_line(repo: Path) -> None:
    for args, needle, hint in OPTIONS:
        proc = exp(*args, cwd=repo, check=False, timeout=30)
        assert_user_error(proc, f"error: {needle}", f"hint: {hint}")
        assert proc.returncode == 2, (args, proc.returncode)
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""


def test_the_finite_check_is_not_fooled_by_nan() -> None:
    from gitexp.cli import _ranges

    check = _ranges.number(0, math.inf, "x")
    assert check(None, None, 0.0) == 0.0 and check(None, None, 1e300) == 1e300
    for bad in (math.nan, -math.inf, math.inf, -1e-9):
        with pytest.raises(Exception, match="out of range"):
            check(None, None, bad)

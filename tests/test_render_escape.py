"""Everything printed from a run is data: terminal escapes, bidi overrides and line breaks in
any field of a forged run reach no terminal, no HTML page and no mail header raw.

Runs are forged with plain git (`hash-object`, `mktree`, `update-ref`), as anyone with push
access could; each command's output is read as bytes and must hold no character a terminal
acts on (colour is off: output is a pipe and NO_COLOR is set), while the escaped form of the
hostile text is there to see."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from gitexp.cli import _render
from gitexp.hooks import run as hook_run
from gitexp.model.record import Environment, Result, RunRecord, encode_message
from gitexp.notify import content
from gitexp.notify.settings import NotifySettings
from gitexp.printable import LIMIT, printable
from tests.helpers import git
from tests.test_report import frozen

# An OSC 52 clipboard write, a screen clear, a carriage return, a right-to-left override and
# an 8-bit CSI (C1): each one does something to a terminal if printed raw.
EVIL = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\r\u202e\x9b6n"
SHOWN = "\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\r\\u202e\\x9b6n"
HOSTILE = "\x1b\x07\r\u202e\x9b"
LOG = f"line one{EVIL}\n{EVIL} last line\n"


# -- the one function ----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "shown"), [
    (EVIL, SHOWN),
    ("a\nb\tc", "a\\nb\\tc"),
    ("\x00\x7f\x85\x9f", "\\x00\\x7f\\x85\\x9f"),  # NUL, DEL, C1 (NEL, APC)
    ("\u2066x\u2069\u200b\u200f\ufeff", "\\u2066x\\u2069\\u200b\\u200f\\ufeff"),  # Cf
    ("\u2028\u2029", "\\u2028\\u2029"),  # line and paragraph separators
    ("\ud800", "\\ud800"),  # a lone surrogate (an undecodable byte, surrogateescape'd)
    ("\U000e0001", "\\U000e0001"),  # a tag character (Cf, outside the BMP)
    ("λ 日本 café ☃ [red]x[/]", "λ 日本 café ☃ [red]x[/]"),  # text of any script stays
])
def test_printable_escapes_what_a_terminal_would_obey(raw: str, shown: str):
    assert printable(raw) == shown
    assert all(c.isprintable() for c in printable(raw))


def test_printable_cuts_a_long_value_and_counts_the_rest_in_bytes():
    assert printable("x" * LIMIT) == "x" * LIMIT
    assert printable("x" * LIMIT + "λλ") == "x" * LIMIT + "… (4 more bytes)"
    assert printable("\x1b" * 10, limit=3) == "\\x1b\\x1b\\x1b… (7 more bytes)"
    assert printable("y" * 10, limit=None) == "y" * 10


def test_printable_is_linear_and_the_renderer_uses_it():
    assert _render.printable is printable
    small, big = ("\x1b" + "a" * 99) * 1_000, ("\x1b" + "a" * 99) * 100_000
    t = time.perf_counter()
    printable(small, limit=None)
    one = time.perf_counter() - t
    t = time.perf_counter()
    printable(big, limit=None)
    assert time.perf_counter() - t < max(one * 100 * 5, 0.5)  # 100x the text, not 10,000x


# -- forged runs, through the real `git exp` ----------------------------------------------
def commit(repo: Path, message: str, tree: str, parents: list[str]) -> str:
    who = "forger <f@example.com> 1700000000 +0000"
    head = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents)
    raw = f"{head}author {who}\ncommitter {who}\n\n{message}".encode()
    return git("hash-object", "-t", "commit", "-w", "--stdin", cwd=repo, input=raw).strip()


def blob(repo: Path, data: bytes) -> str:
    return git("hash-object", "-w", "--stdin", cwd=repo, input=data).strip()


def tree(repo: Path, entries: list[str]) -> str:
    return git("mktree", cwd=repo, input="".join(e + "\n" for e in entries).encode()).strip()


def forge(repo: Path, record: RunRecord, result: Result, *, files: dict[str, bytes]) -> None:
    """A written-back run: a snapshot commit (HEAD's files plus `files`), and on it a results
    commit whose tree also holds `.gitexp-results/` (log.txt, metrics.jsonl)."""
    top = git("ls-tree", "HEAD", cwd=repo).splitlines()
    top += [f"100644 blob {blob(repo, data)}\t{name}" for name, data in files.items()]
    snap = commit(repo, "snapshot\n", tree(repo, top), [])
    points = [{"step": i, "time": 1.0 + i, **{k: float(i) for k in result.metrics}}
              for i in range(3)]
    log = blob(repo, LOG.encode())
    series = blob(repo, "".join(json.dumps(p) + "\n" for p in points).encode())
    results = tree(repo, [f"100644 blob {log}\tlog.txt", f"100644 blob {series}\tmetrics.jsonl"])
    done = commit(repo, encode_message(record, result),
                  tree(repo, [*top, f"040000 tree {results}\t.gitexp-results"]), [snap])
    git("update-ref", f"refs/experiments/{record.id}", done, cwd=repo)


def record(run_id: str, **fields: object) -> RunRecord:
    plain: dict[str, object] = {
        "id": run_id, "argv": ["python", "train.py"], "cwd": "", "base": None,
        "branch": "main", "user": "u", "launched_at": 1_700_000_000.0, "target": "local",
        "backend": "local", "store": "file:///nowhere",
        "env": Environment(python="3.11", platform="linux")}
    return RunRecord(**{**plain, **fields})  # type: ignore[arg-type]


# Free text a run may well hold: the escaped form must show wherever it is printed. (Words
# such as the target, user, host or branch with control characters are refused by the
# decoder instead: `WORD_RUNS` below, and tests/test_decode.py.)
TEXT_RUN = record(
    "evil-text", argv=["python", "train.py", f"--opt={EVIL}", EVIL],
    params={EVIL: EVIL, "lr": EVIL},
    env=Environment(python="3.11", platform="linux", variables={"OMP_NUM_THREADS": "4"}))
TEXT_RESULT = Result(status="failed", exit_code=1, started_at=1.0, ended_at=2.0, host="h",
                     error=EVIL, metrics={EVIL: EVIL, "loss": EVIL, "acc": 0.5})
# Path- and id-like fields, which the decoder may refuse outright: then the refusal too is
# printed inert.
PATH_RUN = record("evil-paths", cwd=f"sub{EVIL}", base=EVIL, rerun_of=EVIL, sweep=EVIL,
                  name=EVIL, outs=[f"out{EVIL}"],
                  data={f"data{EVIL}": {"hash": EVIL, "size": EVIL, "nfiles": EVIL}})
PATH_RESULT = Result(status="succeeded", exit_code=0, started_at=1.0, ended_at=2.0,
                     outputs={f"model{EVIL}.pt": {"hash": EVIL}}, check={EVIL: EVIL})
PLAIN_RUN = record("plain", argv=["python", "train.py", "--lr", "1"])
PLAIN_RESULT = Result(status="succeeded", exit_code=0, started_at=1.0, ended_at=2.0,
                      host="h", metrics={"loss": 1.0})


@pytest.fixture
def forged(repo: Path) -> Path:
    # git itself prints such names raw when asked to: the renderer must not rely on git
    git("config", "core.quotePath", "false", cwd=repo)
    forge(repo, TEXT_RUN, TEXT_RESULT, files={f"evil{HOSTILE}.py": f"x = '{EVIL}'\n".encode()})
    forge(repo, PATH_RUN, PATH_RESULT, files={})
    forge(repo, PLAIN_RUN, PLAIN_RESULT, files={})
    return repo


def exp_bytes(repo: Path, *args: str) -> tuple[str, str]:
    """`git exp ARGS`: its stdout and stderr, checked to be UTF-8 with nothing a terminal
    would act on but line ends."""
    proc = subprocess.run(["git", "exp", *args], cwd=repo, capture_output=True, timeout=120,
                          check=False, env={**os.environ, "NO_COLOR": "1"})
    out, err = proc.stdout.decode(), proc.stderr.decode()  # strict: no stray bytes either
    assert "Traceback" not in err, err
    assert_inert(out, args)
    assert_inert(err, args)
    return out, err


def assert_inert(text: str, what: object) -> None:
    bad = sorted({c for c in text if not c.isprintable() and c != "\n"})
    assert not bad, (what, bad, text[:2000])


def test_ls_shows_every_field_escaped(forged: Path):
    out, _ = exp_bytes(forged, "ls")
    assert SHOWN in out  # the command, and the metric columns' names and values
    out, _ = exp_bytes(forged, "ls", "--columns",
                       "run,user,branch,host,error,target,backend,lr,loss")
    line = next(ln for ln in out.splitlines() if ln.startswith("evil-text"))
    assert line.count(SHOWN[:20]) >= 3, line  # error, lr, loss: the free text


def test_show_escapes_every_field_and_the_quoted_log(forged: Path):
    out, _ = exp_bytes(forged, "show", "evil-text")
    for field in ("command", "error"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(field))
        assert SHOWN in line, (field, line)
    assert f"  {SHOWN} = {SHOWN}" in out and f"  loss = {SHOWN}" in out  # metrics
    # the log's tail; a carriage return in a log ends a line, as a progress bar's does
    assert "  line one\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\n" in out
    assert "  \\u202e\\x9b6n last line\n" in out
    out, err = exp_bytes(forged, "show", "evil-paths")
    assert SHOWN in out or SHOWN in err  # shown, or refused, inert either way


def test_with_colour_on_only_our_own_colour_codes_reach_the_terminal(forged: Path):
    for args in (["show", "evil-text"], ["diff", "plain", "evil-text"]):
        proc = subprocess.run(["git", "exp", *args], cwd=forged, capture_output=True,
                              check=False, env={**os.environ, "FORCE_COLOR": "1"})
        out = proc.stdout.decode()
        assert "\x1b[1m" in out or args[0] == "diff", args  # on: `show`'s headings are bold
        assert_inert(re.sub(r"\x1b\[[0-9;]*m", "", out), args)  # SGR only, and ours
        assert SHOWN in out


def test_show_json_stays_json_with_the_exact_values(forged: Path):
    out, _ = exp_bytes(forged, "show", "evil-text", "--json")
    shown = json.loads(out)
    assert shown["record"]["argv"][3] == EVIL and shown["result"]["error"] == EVIL


def test_diff_escapes_every_section_and_the_patch(forged: Path):
    out, _ = exp_bytes(forged, "diff", "plain", "evil-text")
    for needle in (f"b: python train.py '--opt={SHOWN}'", "from argument 2: --lr 1 -> ",
                   f"  {SHOWN}: - -> {SHOWN}", f"  lr: 1 -> {SHOWN}",  # params
                   f"  loss: 1 -> {SHOWN}",
                   # the file name, in --stat: git quotes C0 itself, not the rest
                   '"evil\\033\\a\\r\\u202e\\x9b.py"'):
        assert needle in out, (needle, out)
    out, _ = exp_bytes(forged, "diff", "plain", "evil-text", "--patch")
    assert f"+x = '{SHOWN}'" in out
    exp_bytes(forged, "diff", "evil-text")  # against its base: the work tree's first commit
    exp_bytes(forged, "diff", "plain", "evil-paths")
    assert json.loads(exp_bytes(forged, "diff", "plain", "evil-text", "--json")[0])[
        "command"]["b"][2] == f"--opt={EVIL}"


def test_the_report_escapes_every_value_for_html_and_the_eye(forged: Path):
    exp_bytes(forged, "report", "evil-text", "plain", "-o", "runs.html")
    page = (forged / "runs.html").read_text()
    assert_inert(page, "report")
    assert "\x1b" not in page and "\u202e" not in page
    markup = re.sub(r"<script>.*?</script>", "<script></script>", page, flags=re.DOTALL)
    assert markup.count("<script") == 4  # the data (JSON, never run), uPlot, ECharts, the app
    data = frozen(page)
    assert SHOWN in data["table"]["metrics"]  # a metric's name, as the eye may see it
    shown = data["runs"]["evil-text"]
    assert shown["record"]["argv"][3] == SHOWN and shown["result"]["error"] == SHOWN
    assert f"{SHOWN} last line" in shown["log"]  # the log's end, each line printable


def test_a_user_error_about_a_run_is_one_inert_line(forged: Path):
    proc = subprocess.run(["git", "exp", "show", f"nope{EVIL}"], cwd=forged,
                          capture_output=True, check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and err.startswith("error: ")
    assert_inert(err, "error")


# -- hooks and mail -----------------------------------------------------------------------
def test_the_hooks_print_and_write_trailers_inert(capsys: pytest.CaptureFixture[str]):
    hook_run.say(f"pre-push hook skipped: {EVIL}")
    err = capsys.readouterr().err
    assert err == f"gitexp: pre-push hook skipped: {SHOWN}\n"
    trailer = hook_run.summary("succeeded", {EVIL: EVIL, "acc": 0.91234}, [])
    assert trailer == f"succeeded, {SHOWN}={SHOWN}, acc=0.9123"
    assert len(hook_run.summary("failed", {"x": "y" * 100_000}, [])) < 200


def test_a_mail_never_carries_a_control_character_from_a_run():
    settings = NotifySettings(repo=f"proj\r\nBcc: everyone@example.com{EVIL}",
                              to=["me@example.com"])
    rec = record("evil-mail", argv=["python", EVIL], sweep=f"s\r\nX-Evil: 1{EVIL}",
                 target=EVIL, branch=EVIL, cwd=f"sub{EVIL}")
    res = Result(status="failed", exit_code=1, started_at=1.0, ended_at=2.0, host=EVIL,
                 error=f"boom\r\nBcc: x@example.com{EVIL}", metrics={EVIL: EVIL})
    msg = content.build(settings, rec, event="failed", seq=2,
                        digest=[{"time": 1.0, "step": 1, "_checkpoint": EVIL, EVIL: EVIL}],
                        points=[], result=res, log_bytes=f"log {EVIL}\n".encode())
    raw = bytes(msg)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert "Bcc" not in parsed and "X-Evil" not in parsed  # no header was added
    for name, value in parsed.items():
        assert "\r" not in value and "\n" not in value and "\x1b" not in value, name
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert_inert(text, "mail text")
    assert "  log \\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\n" in text  # the log's tail
    assert f"  {SHOWN}  {SHOWN}\n" in text  # a metric
    assert f"boom\\r\\nBcc: x@example.com{SHOWN}" in text  # the error, in the headline
    page = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "\x1b" not in page and "\u202e" not in page


# -- the largest record: every value cut, every section linear -------------------------------
def test_show_and_diff_of_the_largest_record_cut_long_values(repo: Path):
    huge = "a" * 400_000  # twice in a record: near the decoder's 1 MB, not over
    forge(repo, record("huge-a", argv=["python", "-c", huge, *map(str, range(20_000))]),
          Result(status="succeeded", metrics={f"m{i}": i for i in range(5_000)} | {"x": huge}),
          files={})
    forge(repo, record("huge-b", argv=["python", "-c", huge + "b", *map(str, range(20_000))]),
          Result(status="succeeded", metrics={"x": huge + "b"}), files={})
    for args in (("show", "huge-a"), ("diff", "huge-a", "huge-b")):
        out, _ = exp_bytes(repo, *args)
        assert "… (" in out and "more bytes)" in out, args
        assert max(map(len, out.splitlines())) < 3 * LIMIT, args  # a value is cut, not whole
    out, _ = exp_bytes(repo, "diff", "huge-a", "huge-b")
    assert "from argument 2: aaaa" in out and out.count("\n") < 5_100  # not an argv per line

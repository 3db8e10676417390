"""Mail without a network: the policy (few mails, none twice), threading headers, settings
from config, and delivery that retries, then spools to the Maildir outbox."""

from __future__ import annotations

import email
import email.policy
import mailbox
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from gitexp.errors import ConfigError
from gitexp.git.config import Config, Target
from gitexp.model.record import Environment, Result, RunRecord
from gitexp.notify import PermanentError, deliver, policy
from gitexp.notify.compose import Mail, compose, message_id
from gitexp.notify.maildir import MaildirOutbox, StoreOutbox, collect
from gitexp.notify.settings import NotifySettings, from_config
from gitexp.stores.file import FileStore

SETTINGS = NotifySettings(repo="proj", to=["me@example.com"], min_interval=1800.0,
                          id_domain="example.com")


def record(run_id: str = "train-1127-1200-abcd", sweep: str | None = None) -> RunRecord:
    return RunRecord(id=run_id, argv=["python", "train.py", "--lr", "3e-4"], cwd="", base="b" * 40,
                     branch="main", user="me", launched_at=time.time(), target="local",
                     backend="local", store="file:///x", env=Environment("3.11", "linux"),
                     sweep=sweep, snapshot="a" * 40)


def checkpoints(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"time": 1000.0 + i, "_checkpoint": f"epoch {i}", "loss": 1 / (i + 1)}
            for i in range(start, start + n)]


# -- policy ---------------------------------------------------------------------------------
def test_a_resumption_mails_once_per_attempt_and_never_after_the_end() -> None:
    state = policy.NotifyState()
    assert not policy.resumed(state, SETTINGS, 1)  # the first attempt resumes nothing
    assert policy.resumed(state, SETTINGS, 2)
    assert not policy.resumed(state, SETTINGS, 2)  # a restarted agent of attempt 2
    assert policy.resumed(state, SETTINGS, 3)
    policy.end(state, SETTINGS, "succeeded")
    assert not policy.resumed(state, SETTINGS, 4)
    quiet = NotifySettings(repo="proj", on=["failed"])
    assert not policy.resumed(policy.NotifyState(), quiet, 2)


def test_a_burst_of_50_checkpoints_inside_the_interval_is_one_digest_mail():
    state = policy.NotifyState()
    mails = []
    points: list[dict[str, object]] = []
    for i, point in enumerate(checkpoints(50)):
        points.append(point)
        policy.add_checkpoints(state, SETTINGS, points)
        if i % 7 == 0:  # the mailer looks now and then during the burst
            digest = policy.due_digest(state, SETTINGS, now=1000.0 + i)
            if digest:
                mails.append(digest)
    mails.append(policy.due_digest(state, SETTINGS, now=1100.0))  # still inside 30 minutes
    sent = [m for m in mails if m]
    assert len(sent) == 1 and len(sent[0]) == 1  # the first one went out at once...
    assert len(state.pending) == 49  # ...and the other 49 wait for one digest
    digest = policy.due_digest(state, SETTINGS, now=1000.0 + 1800.0)
    assert digest is not None and [p["_checkpoint"] for p in digest] == \
        [f"epoch {i}" for i in range(1, 50)]
    assert policy.due_digest(state, SETTINGS, now=1000.0 + 1801.0) is None


def test_pending_checkpoints_fold_into_the_terminal_mail_which_is_sent_once():
    state = policy.NotifyState(last_checkpoint_mail=990.0)
    policy.add_checkpoints(state, SETTINGS, checkpoints(3))
    assert policy.due_digest(state, SETTINGS, now=1000.0) is None
    digest = policy.end(state, SETTINGS, "succeeded")
    assert digest is not None and len(digest) == 3
    assert policy.end(state, SETTINGS, "lost") is None  # a later observer stays quiet
    assert state.ended == "succeeded"


def test_a_restarted_reader_does_not_queue_checkpoints_again():
    state = policy.NotifyState()
    policy.add_checkpoints(state, SETTINGS, checkpoints(5))
    policy.due_digest(state, SETTINGS, now=0.0)
    policy.add_checkpoints(state, SETTINGS, checkpoints(6))  # re-read from the start, +1 new
    assert [p["_checkpoint"] for p in state.pending] == ["epoch 5"]


def test_events_not_wanted_send_nothing_and_start_is_off_by_default():
    quiet = NotifySettings(repo="p", on=["failed"])
    state = policy.NotifyState()
    policy.add_checkpoints(state, quiet, checkpoints(3))
    assert state.pending == []
    assert policy.start(state, quiet) is False
    assert policy.end(state, quiet, "succeeded") is None
    assert policy.start(policy.NotifyState(), SETTINGS) is False
    assert policy.start(policy.NotifyState(), NotifySettings(repo="p", on=["start"])) is True


def test_policy_state_round_trips_through_the_store(tmp_path: Path):
    store = FileStore(tmp_path / "store")
    state = policy.NotifyState(seq=2, pending=checkpoints(2), seen=7, ended=None)
    policy.save(store, "r1", state)
    assert policy.load(store, "r1") == state
    assert policy.load(store, "missing") == policy.NotifyState()


# -- composition and threading -----------------------------------------------------------------
def test_every_mail_of_a_run_says_its_outcome_and_chains_to_the_previous_one():
    rec = record()
    msgs = [compose(SETTINGS, rec, Mail(event=e, seq=n, metrics={"acc": 0.9, "loss": 0.5}))
            for n, e in enumerate(["checkpoint", "checkpoint", "succeeded"], start=1)]
    assert [m["Subject"] for m in msgs] == \
        ["[gitexp] checkpoint train-1127-1200-abcd train.py loss=0.5"] * 2 \
        + ["[gitexp] ✓ train-1127-1200-abcd train.py loss=0.5"]
    for event, mark in (("failed", "✗"), ("lost", "lost"), ("cancelled", "cancelled")):
        assert compose(SETTINGS, rec, Mail(event=event, seq=4))["Subject"] == \
            f"[gitexp] {mark} train-1127-1200-abcd train.py"
    ids = [m["Message-ID"] for m in msgs]
    assert len(set(ids)) == 3 and all(i.endswith("@example.com>") for i in ids)
    assert msgs[0]["In-Reply-To"] is None and msgs[0]["References"] is None
    assert msgs[1]["In-Reply-To"] == ids[0] and msgs[1]["References"] == ids[0]
    assert msgs[2]["In-Reply-To"] == ids[1] and msgs[2]["References"].split() == ids[:2]
    # Deterministic: another process composing mail 3 of this run agrees on every id.
    assert ids[2] == message_id(SETTINGS, rec.id, 3)


def test_a_sweep_run_references_the_sweep_and_long_threads_keep_root_and_latest():
    msg = compose(SETTINGS, record(sweep="lr-sweep-1"), Mail(event="checkpoint", seq=1))
    assert msg["In-Reply-To"] == "<sweep.lr-sweep-1.gitexp@example.com>"
    late = compose(SETTINGS, record(), Mail(event="checkpoint", seq=40)).get("References")
    refs = late.split()
    assert len(refs) == 12 and refs[0] == message_id(SETTINGS, record().id, 1)
    assert refs[-1] == message_id(SETTINGS, record().id, 39)


def test_a_failed_mail_carries_the_facts_the_digest_and_the_last_log_lines():
    result = Result(status="failed", exit_code=3, started_at=1000.0, ended_at=1100.0, host="gpu1")
    mail = Mail(event="failed", seq=2, digest=checkpoints(2), metrics={"loss": 0.25},
                result=result, log_tail="Traceback...\nValueError: boom",
                plots={"loss.png": b"\x89PNG fake"})
    msg = compose(SETTINGS, record(), mail)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for body in (text, html):
        assert "failed (exit 3)" in body
        assert "python train.py --lr 3e-4" in body and "aaaaaaaaaaaa on main" in body
        assert "epoch 1" in body and "ValueError: boom" in body and "gpu1" in body
    assert "cid:loss.png" in html
    png = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert [p.get_filename() for p in png] == ["loss.png"]


# -- settings ----------------------------------------------------------------------------------
def test_settings_come_from_exp_notify_with_per_target_overrides():
    config = Config({"exp.notify.to": "a@x.org, b@x.org", "exp.notify.sender": "smtp",
                     "exp.notify.smtp.host": "mail.x.org", "exp.notify.mininterval": "10m",
                     "user.email": "me@x.org"})
    gpu = Target(name="gpu", backend="ssh",
                 settings={"notifymininterval": "2h", "notifyon": "failed,lost",
                           "notifysmtpport": "465"})
    base = from_config(config, Target("local", "local"), "proj")
    assert base.to == ["a@x.org", "b@x.org"] and base.min_interval == 600
    assert base.smtp_host == "mail.x.org" and base.smtp_port == 587
    assert base.smtp_security == "starttls" and base.id_domain == "x.org"
    over = from_config(config, gpu, "proj")
    assert over.min_interval == 7200 and over.on == ["failed", "lost"]
    assert over.smtp_port == 465 and over.smtp_security == "ssl"
    default = from_config(Config({"user.email": "me@x.org"}), Target("local", "local"), "p")
    assert default.sender == "maildir" and default.to == ["me@x.org"]
    assert default.min_interval == 1800 and "start" not in default.on


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("exp.notify.sender", "pigeon", "sender"),
    ("exp.notify.on", "checkpoint,sometimes", "sometimes"),
    ("exp.notify.mininterval", "often", "minInterval"),
    ("exp.notify.smtp.security", "tls13", "security"),
])
def test_malformed_settings_name_the_key(key: str, value: str, needle: str):
    with pytest.raises(ConfigError, match=needle):
        from_config(Config({key: value}), Target("local", "local"), "p")


# -- delivery ----------------------------------------------------------------------------------
class Flaky:
    name = "flaky"

    def __init__(self, failures: int, permanent: bool = False) -> None:
        self.failures = failures
        self.permanent = permanent
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        if self.failures:
            self.failures -= 1
            raise PermanentError("bad credentials") if self.permanent else OSError("refused")
        self.sent.append(message)


def test_delivery_retries_with_backoff_then_spools_to_a_maildir_any_client_opens(tmp_path: Path):
    box = MaildirOutbox(tmp_path / "outbox")
    msg = compose(SETTINGS, record(), Mail(event="succeeded", seq=1))
    naps: list[float] = []
    assert deliver(msg, Flaky(1), box, sleep=naps.append) == "sent"
    assert naps == [1.0]
    assert deliver(msg, Flaky(5), box, attempts=3, sleep=naps.append) == "spooled"
    assert naps == [1.0, 1.0, 2.0]
    assert deliver(msg, Flaky(1, permanent=True), box, sleep=naps.append) == "spooled"
    assert naps == [1.0, 1.0, 2.0]  # a permanent refusal is not retried
    maildir = mailbox.Maildir(tmp_path / "outbox", create=False)
    kept = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
            for m in maildir]
    assert len(kept) == 2
    assert sorted(str(m["X-Gitexp-Undelivered"]) for m in kept) == \
        ["flaky: OSError: refused", "flaky: bad credentials"]
    assert all(m["Subject"].startswith("[gitexp] ✓ train-1127-1200-abcd") for m in kept)


def test_delivery_never_raises_even_when_the_outbox_fails(tmp_path: Path):
    class Broken:
        def put(self, message: EmailMessage, *, note: str | None = None) -> None:
            raise OSError("disk full")

    msg = compose(SETTINGS, record(), Mail(event="failed", seq=1))
    assert deliver(msg, Flaky(9), Broken(), attempts=2, sleep=lambda s: None) == "dropped"


def test_mail_a_worker_spooled_in_its_store_is_collected_into_the_local_outbox(tmp_path: Path):
    store = FileStore(tmp_path / "store")
    msg = compose(SETTINGS, record(), Mail(event="failed", seq=1))
    StoreOutbox(store, "r1").put(msg, note="smtp: unreachable")
    box = MaildirOutbox(tmp_path / "outbox")
    assert collect(store, "r1", box) == 1
    assert store.list("runs/r1/outbox") == []
    [kept] = box.messages()
    assert kept["X-Gitexp-Undelivered"] == "smtp: unreachable"
    assert kept["Message-ID"] == msg["Message-ID"]


def test_the_agents_mailer_sends_start_checkpoint_and_end_mail_in_one_thread(tmp_path: Path):
    """The agent-side mailer in-process: it watches the job's metric lines in the background."""
    import json

    from gitexp.notify.mailer import RunMailer

    store = FileStore(tmp_path / "store")
    box = MaildirOutbox(tmp_path / "outbox")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "log").write_text("hello\n")
    lines = spool / "metrics.jsonl"
    lines.write_text("")
    s = NotifySettings(repo="proj", on=["start", "checkpoint", "succeeded"], min_interval=3600)
    mailer = RunMailer(settings=s, record=record(), store=store, outbox=box, secrets={},
                       spool=spool, cwd=None, poll=0.05)
    mailer.start()
    with lines.open("a") as f:
        for i in range(3):
            f.write(json.dumps({"time": 1.0, "step": i, "loss": 1 / (i + 1)}) + "\n")
        f.write(json.dumps({"time": 2.0, "_checkpoint": "epoch 1", "loss": 0.3}) + "\n")
        f.write('{"time": 3.0, "_checkpoint": "torn')  # a line still being written
    deadline = time.monotonic() + 20
    while len(box.messages()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    with lines.open("a") as f:
        f.write(' line", "loss": 0.2}\n')
    mailer.finish(Result(status="succeeded", exit_code=0, started_at=1.0, ended_at=9.0))
    mails = box.messages()
    assert [m["X-Gitexp-Event"] for m in mails] == ["start", "checkpoint", "succeeded"]
    assert [m["Message-ID"] for m in mails] == \
        [message_id(s, record().id, n) for n in (1, 2, 3)]
    end = mails[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "torn line" in end and "epoch 1" not in end  # only what the last mail did not say
    assert policy.load(store, record().id).ended == "succeeded"


def test_a_malformed_mail_setting_stops_the_launch_with_one_clear_line(tmp_path: Path):
    from tests.conftest import make_repo
    from tests.helpers import assert_user_error, exp, git

    repo = make_repo(tmp_path / "proj")
    git("config", "exp.notify.sender", "pigeon", cwd=repo)
    proc = exp("run", "--", "python", "-c", "print(1)", cwd=repo, check=False)
    assert_user_error(proc, "exp.notify.sender = 'pigeon'", "smtp")

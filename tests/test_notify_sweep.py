"""A sweep's mails are one thread: its launch sends a real root mail, which every run's mail
answers. Checked with a real threading tool (mblaze's `mthread`, which threads by
References/In-Reply-To like Thunderbird, Apple Mail and mutt) on what a REAL SMTP server
(aiosmtpd on loopback) received. Also: the one-time outbox notice, and a mail written
without matplotlib says how to get curves."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitexp.notify.maildir import MaildirOutbox
from tests.conftest import make_repo
from tests.helpers import exp, exp_json, wait_done
from tests.services._util import require_binaries
from tests.services.smtp import SmtpServer
from tests.test_notify_smtp import agent_done, smtp_repo

TRAIN = """\
import sys, gitexp
gitexp.log(step=1, loss=float(sys.argv[2]))
sys.exit(1 if sys.argv[2] == "0.3" else 0)
"""


def thread_of(mails: list[bytes], tmp: Path) -> list[tuple[int, str]]:
    """(depth, Message-ID) in `mthread`'s order: a thread is a line at depth 0 and the
    lines below it."""
    files = []
    for i, raw in enumerate(mails):
        path = tmp / f"{i}.eml"
        path.write_bytes(raw)
        files.append(str(path))
    out = subprocess.run(["mthread", *files], capture_output=True, text=True, check=True)
    ids = dict(zip(files, mails, strict=True))
    tree = []
    for line in out.stdout.splitlines():
        name = line.strip()
        depth = len(line) - len(line.lstrip(" "))
        header = next(h for h in ids[name].decode().splitlines() if h.startswith("Message-ID:"))
        tree.append((depth, header.split(":", 1)[1].strip()))
    return tree


def test_a_sweeps_mails_are_one_thread_under_a_real_root(tmp_path: Path,
                                                          smtp_server: SmtpServer):
    require_binaries("mblaze", "mthread")
    repo = smtp_repo(tmp_path / "proj", smtp_server.port, {"train.py": TRAIN})
    proc = exp("run", "-d", "--sweep", "lr=0.1,0.2,0.3", "--", "python", "train.py", "--lr",
               "{lr}", cwd=repo)
    assert "outbox" not in proc.stderr  # real delivery is configured: nothing to say
    runs = exp_json("ls", cwd=repo)
    for run in runs:
        wait_done(run["id"], repo)
        agent_done(repo, run["id"])
    mails = smtp_server.wait_for(4)
    assert len(mails) == 4, [m["Subject"] for m in mails]  # few mails: the root + one per run
    root = mails[0]
    sweep = runs[0]["record"]["sweep"]
    assert root["X-Gitexp-Event"] == "sweep" and root["Subject"].startswith(
        f"[gitexp] sweep {sweep} train.py")
    marks = sorted(m["Subject"].split()[1] for m in mails[1:])  # the outcome in the subject
    assert marks == ["✓", "✓", "✗"], [m["Subject"] for m in mails]
    tree = thread_of([m.as_bytes() for m in mails], tmp_path)
    assert [depth for depth, _ in tree].count(0) == 1, tree  # one thread
    assert tree[0] == (0, root["Message-ID"])
    assert sorted(mid for depth, mid in tree[1:] if depth > 0) == \
        sorted(m["Message-ID"] for m in mails[1:]), tree


def test_the_outbox_is_announced_once_and_a_mail_without_matplotlib_says_how(tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN})
    hide = tmp_path / "no-matplotlib" / "matplotlib"  # the plain install: no `plots` extra
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": f"{hide.parent}:{Path(__file__).parents[1] / 'src'}"}
    first = exp("run", "--", "python", "train.py", "--lr", "0.1", cwd=repo, env=env)
    assert "mail about runs goes to the outbox .git/gitexp/outbox" in first.stderr
    assert "exp.notify.sender smtp" in first.stderr
    second = exp("run", "--", "python", "train.py", "--lr", "0.2", cwd=repo, env=env)
    assert "outbox" not in second.stderr  # once
    for run in exp_json("ls", cwd=repo):
        agent_done(repo, run["id"])
    mails = MaildirOutbox(repo / ".git/gitexp/outbox").messages()
    assert len(mails) == 2
    body = mails[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "pip install 'gitexp[plots]'" in body, body
    assert not [p for p in mails[0].walk() if p.get_content_type() == "image/png"]

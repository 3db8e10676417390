"""One mail of a run: a text and an HTML body, PNG curves, and headers that thread it.

The subject says what happened at a glance (`[gitexp] ✓ r3f2 train.py loss=0.231`); the
thread is carried by Message-IDs derived from the run id and a sequence number, so the
worker and the dev side can both write the next mail of a thread without talking to each
other. A sweep's launch sends a real root mail (`sweep_root`) and the first mail of each of
its runs answers it, so a sweep reads as one conversation of runs (clients that thread by
References/In-Reply-To: Thunderbird, Apple Mail, mutt, mblaze; Gmail also wants one subject).
"""

from __future__ import annotations

import html
import posixpath
import shlex
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from gitexp.model.dvcplots import IMAGE_TYPES
from gitexp.model.record import Result, RunRecord, format_duration
from gitexp.notify.settings import NotifySettings

MAX_REFERENCES = 12  # RFC 5322 lets long chains drop middle ids: keep the root and the latest
MAX_DIGEST = 60  # checkpoints listed in one mail; older ones are counted, not listed

HEADLINES = {
    "start": "started",
    "checkpoint": "reached a checkpoint",
    "resumed": "was preempted",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "was cancelled",
    "lost": "was lost",
    "timeout": "hit its time limit",
}


@dataclass(frozen=True)
class Mail:
    """What to say in one mail; `compose` turns it into a message."""
    event: str
    seq: int  # 1 for the first mail of the run, then 2, 3, ...
    digest: list[dict[str, Any]] = field(default_factory=list)  # checkpoint lines to report
    metrics: dict[str, Any] = field(default_factory=dict)  # latest/final values
    result: Result | None = None
    log_tail: str = ""
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    no_plots: str = ""  # why there are series but no curves (and how to get them)
    images: dict[str, bytes] = field(default_factory=dict)  # dvc.yaml's image plots, as is
    left_out: list[str] = field(default_factory=list)  # images too large to attach
    preempted_at: int | None = None  # resumed: the last step of the attempt before


MARKS = {"succeeded": "✓", "failed": "✗", "cancelled": "cancelled", "lost": "lost",
         "timeout": "timeout",
         "start": "started", "checkpoint": "checkpoint", "resumed": "resumed"}
SCRIPTS = (".py", ".sh", ".R", ".r", ".jl", ".js", ".ts", ".rb", ".pl", ".ipynb")


def subject(record: RunRecord, mail: Mail) -> str:
    """`[gitexp] ✓ r3f2 train.py loss=0.231`: the outcome, the run, what ran, the key metric
    (a loss first, as in `plot`)."""
    parts = ["[gitexp]", MARKS.get(mail.event, mail.event), record.id, script_of(record.argv)]
    if mail.event == "checkpoint" and mail.digest:
        parts.append(str(mail.digest[-1].get("_checkpoint") or "")[:40])
    shown = {k: v for k, v in mail.metrics.items() if isinstance(v, (int, float))
             and not isinstance(v, bool)}
    if shown:
        key = sorted(shown, key=lambda n: ("loss" not in n.lower(), n))[0]
        parts.append(f"{key[:40]}={_value(shown[key])}")
    return " ".join(p for p in parts if p)


def script_of(argv: list[str]) -> str:
    """What ran, in a word: the script (`python train.py --lr 1` -> `train.py`), the module
    after `-m`, else the program."""
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1][:40]
        if i and not arg.startswith("-") and arg.endswith(SCRIPTS):
            return posixpath.basename(arg)[:40]
    return posixpath.basename(argv[0])[:40] if argv else ""


def message_id(settings: NotifySettings, run_id: str, seq: int) -> str:
    return f"<{run_id}.{seq}.gitexp@{settings.id_domain}>"


def sweep_id(settings: NotifySettings, sweep: str) -> str:
    return f"<sweep.{sweep}.gitexp@{settings.id_domain}>"


def thread_headers(settings: NotifySettings, record: RunRecord, seq: int) -> dict[str, str]:
    earlier = [message_id(settings, record.id, n) for n in range(1, seq)]
    if record.sweep:
        earlier.insert(0, sweep_id(settings, record.sweep))
    headers = {"Message-ID": message_id(settings, record.id, seq)}
    if earlier:
        kept = earlier if len(earlier) <= MAX_REFERENCES else [earlier[0],
                                                               *earlier[-MAX_REFERENCES + 1:]]
        headers["In-Reply-To"] = earlier[-1]
        headers["References"] = " ".join(kept)
    return headers


def compose(settings: NotifySettings, record: RunRecord, mail: Mail) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(record, mail)
    msg["From"] = settings.sender_address
    if settings.to:
        msg["To"] = ", ".join(settings.to)
    msg["Date"] = formatdate(localtime=True)
    for name, value in thread_headers(settings, record, mail.seq).items():
        msg[name] = value
    msg["X-Gitexp-Run"] = record.id
    msg["X-Gitexp-Event"] = mail.event
    msg.set_content(_text(record, mail))
    msg.add_alternative(_html(record, mail), subtype="html")
    html_part = msg.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    for name, png in mail.plots.items():
        # Inline in the HTML body (cid = file name, as Mailgun names inline parts) and
        # listed as a file by every client.
        html_part.add_related(png, maintype="image", subtype="png", cid=f"<{name}>",
                              filename=name, disposition="inline")
    for name, data in mail.images.items():
        subtype = IMAGE_TYPES[posixpath.splitext(name)[1].lower()]
        if subtype == "svg+xml":  # a file to open, never drawn inline: an SVG may hold script
            msg.add_attachment(data, maintype="image", subtype=subtype, filename=name)
        else:
            html_part.add_related(data, maintype="image", subtype=subtype, cid=f"<{name}>",
                                  filename=name, disposition="inline")
    return msg


# -- bodies ---------------------------------------------------------------------------------
def headline(record: RunRecord, mail: Mail) -> str:
    text = f"run {record.id} {HEADLINES.get(mail.event, mail.event)}"
    res = mail.result
    if mail.event == "checkpoint" and mail.digest:
        last = str(mail.digest[-1].get("_checkpoint") or "")
        text += f": {last}" if last else ""
    if mail.event == "resumed":  # "preempted at step 1,200 - resumed on attempt 2"
        text += f" at step {mail.preempted_at:,}" if mail.preempted_at is not None else ""
        if res is not None and res.attempts:
            now = res.attempts[-1]
            text += f" - resumed on attempt {now.n}"
            text += f" from checkpoint {now.resumed_from}" if now.resumed_from else \
                " from the start (no checkpoint)"
    if res is not None and res.exit_code is not None and mail.event in ("succeeded", "failed"):
        text += f" (exit {res.exit_code})"
    if res is not None and res.error and mail.event in ("failed", "lost"):
        text += f": {res.error}"
    return text


def facts(record: RunRecord, result: Result | None) -> list[tuple[str, str]]:
    rows = [("run", record.id), ("command", shlex.join(record.argv)),
            ("target", f"{record.target} ({record.backend})"),
            ("commit", record.snapshot[:12] + (f" on {record.branch}" if record.branch else "")
             + (f", base {record.base[:12]}" if record.base else ""))]
    if record.cwd:
        rows.append(("directory", record.cwd))
    if result is not None:
        if result.host:
            rows.append(("host", result.host))
        if result.started_at:
            rows.append(("started", _when(result.started_at)))
        if result.duration is not None:
            rows.append(("duration", format_duration(result.duration)))
    rows.append(("details", f"git exp show {record.id}"))
    return rows


def digest_lines(digest: list[dict[str, Any]]) -> list[str]:
    shown = digest[-MAX_DIGEST:]
    lines = [f"({len(digest) - len(shown)} earlier checkpoints not listed)"] \
        if len(digest) > len(shown) else []
    for point in shown:
        label = str(point.get("_checkpoint") or "checkpoint")
        values = "  ".join(f"{k}={_value(v)}" for k, v in _scalars(point).items())
        stamp = _when(point["time"]) if isinstance(point.get("time"), (int, float)) else ""
        lines.append(f"{stamp}  {label}" + (f"  {values}" if values else ""))
    return lines


def _text(record: RunRecord, mail: Mail) -> str:
    out = [headline(record, mail), ""]
    if mail.log_tail:  # why it failed comes first
        out += ["last lines of the log:", *("  " + ln for ln in mail.log_tail.splitlines()), ""]
    if mail.digest:
        out += [f"checkpoints since the last mail ({len(mail.digest)}):",
                *("  " + line for line in digest_lines(mail.digest)), ""]
    if mail.metrics:
        out.append("metrics:")
        width = max(len(k) for k in mail.metrics)
        out += [f"  {k.ljust(width)}  {_value(v)}" for k, v in mail.metrics.items()]
        out.append("")
    width = max(len(k) for k, _ in facts(record, mail.result))
    out += [f"{k.ljust(width)}  {v}" for k, v in facts(record, mail.result)]
    if mail.plots:
        out += ["", "curves attached: " + ", ".join(mail.plots)]
    if mail.images:
        out += ["", "images attached: " + ", ".join(mail.images)]
    if mail.left_out:
        out += ["", "not attached (too large for a mail): " + ", ".join(mail.left_out)]
    if mail.no_plots:
        out += ["", mail.no_plots]
    return "\n".join(out) + "\n"


def _html(record: RunRecord, mail: Mail) -> str:
    e = html.escape
    parts = [f"<h2 style='font-family:sans-serif'>{e(headline(record, mail))}</h2>"]
    if mail.log_tail:  # why it failed comes first
        parts.append(f"<h3>last lines of the log</h3><pre style='background:#f6f8fa;"
                     f"padding:8px'>{e(mail.log_tail)}</pre>")
    parts += [f"<p><img src='cid:{e(name)}' alt='{e(name)}' width='640'></p>"
              for name in [*mail.plots, *(n for n in mail.images if not n.endswith(".svg"))]]
    if mail.left_out:
        parts.append(f"<p><i>not attached (too large for a mail): "
                     f"{e(', '.join(mail.left_out))}</i></p>")
    if mail.no_plots:
        parts.append(f"<p><i>{e(mail.no_plots)}</i></p>")
    if mail.metrics:
        rows = "".join(f"<tr><td>{e(k)}</td><td align='right'><b>{e(_value(v))}</b></td></tr>"
                       for k, v in mail.metrics.items())
        parts.append(f"<h3>metrics</h3><table cellpadding='3'>{rows}</table>")
    if mail.digest:
        items = "".join(f"<li><code>{e(line)}</code></li>" for line in digest_lines(mail.digest))
        parts.append(f"<h3>checkpoints since the last mail ({len(mail.digest)})</h3>"
                     f"<ul>{items}</ul>")
    rows = "".join(f"<tr><td><b>{e(k)}</b></td><td><code>{e(v)}</code></td></tr>"
                   for k, v in facts(record, mail.result))
    parts.append(f"<h3>run</h3><table cellpadding='3'>{rows}</table>")
    return "<html><body style='font-family:sans-serif'>" + "".join(parts) + "</body></html>\n"


def _scalars(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items() if k not in ("time", "step", "_checkpoint")
            and isinstance(v, (int, float, str, bool))}


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def sweep_root(settings: NotifySettings, record: RunRecord) -> EmailMessage:
    """The first mail of a sweep, sent at its launch: every run's mails answer it, so the
    sweep is one thread. `record` is one of its runs."""
    msg = EmailMessage()
    msg["Subject"] = f"[gitexp] sweep {record.sweep} {script_of(record.argv)}"
    msg["From"] = settings.sender_address
    if settings.to:
        msg["To"] = ", ".join(settings.to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = sweep_id(settings, record.sweep or "")
    msg["X-Gitexp-Sweep"] = record.sweep or ""
    msg["X-Gitexp-Event"] = "sweep"
    rows = [("sweep", record.sweep or ""), ("repository", settings.repo),
            ("command", shlex.join(record.argv)),
            ("target", f"{record.target} ({record.backend})"),
            ("commit", record.snapshot[:12] + (f" on {record.branch}" if record.branch else "")),
            ("runs", f"git exp ls --sweep {record.sweep}")]
    width = max(len(k) for k, _ in rows)
    msg.set_content(f"sweep {record.sweep} launched: the mails of its runs follow in this "
                    "thread.\n\n" + "".join(f"{k.ljust(width)}  {v}\n" for k, v in rows))
    return msg

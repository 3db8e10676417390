"""`git exp ui`'s server without a browser: its JSON API answers as `ls` does, and it is
safe by construction (Host check, CSP, CSRF token and Origin, files by name only, run ids
checked). One repository and one server for the module."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from gitexp import extras
from gitexp.ui import assets, data
from gitexp.ui import server as server_mod
from tests.helpers import BIN, assert_user_error, exp, exp_json, own_home
from tests.services._util import unavailable
from tests.uirepo import XSS, Built, Server, build, end_live, forge_series, serve, shown

# one repository and one server for the module: its tests on one worker
pytestmark = pytest.mark.xdist_group("ui-api")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Built, Server]]:
    root = tmp_path_factory.mktemp("ui-api")
    with own_home(root):
        built = build(root, every_status=False)
        server = serve(built.repo)
        try:
            yield built, server
        finally:
            server.stop()
            end_live(built)


def ask(server: Server, method: str, path: str, *, host: str | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    where = urlsplit(server.url)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", where.netloc if host is None else host)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, body


def get_json(server: Server, path: str) -> tuple[int, Any]:
    status, _, body = ask(server, "GET", path)
    return status, json.loads(body)


def token(server: Server) -> str:
    _, _, page = ask(server, "GET", "/")
    [found] = re.findall(r'<meta name="gitexp-token" content="([^"]+)">', page.decode())
    return found


def test_the_table_is_ls_filtered_and_sorted_the_same_way(site: tuple[Built, Server]):
    built, server = site
    where, sort = "lr<0.005 and status==succeeded", "-lr,acc"
    listed = exp_json("ls", "--where", where, "--sort", sort, cwd=built.repo, env=built.env)
    status, page = get_json(server, f"/api/runs?where={quote(where)}&sort={quote(sort)}"
                                    "&limit=1000")
    assert status == 200 and page["total"] == len(listed) > 5
    assert [r["id"] for r in page["rows"]] == [r["id"] for r in listed]
    assert {"lr", "bs"} <= set(page["params"]) and page["metrics"][:2] == ["loss", "val_loss"]
    # every run, newest first, in pages
    everything = exp_json("ls", cwd=built.repo, env=built.env)
    first = get_json(server, "/api/runs?offset=0&limit=7")[1]
    second = get_json(server, "/api/runs?offset=7&limit=7")[1]
    assert first["total"] == len(everything)
    assert [r["id"] for r in first["rows"] + second["rows"]] == \
        [r["id"] for r in everything[:14]]
    # a query `ls` refuses is refused with the same words: one line and a hint
    for bad, words in (("lr<<1", "bad --where expression"), ("lrr<1", "no field 'lrr'")):
        status, body = get_json(server, f"/api/runs?where={quote(bad)}")
        assert status == 400 and words in body["error"] and body["hint"], (status, body)
        assert_user_error(exp("ls", "--where", bad, cwd=built.repo, check=False,
                              env=built.env), words)


def test_equal_columns_series_and_parallel_coordinates(site: tuple[Built, Server]):
    built, server = site
    page = get_json(server, f"/api/runs?where={quote('bs==16')}")[1]
    assert "params.bs" in page["same"] and "params.lr" not in page["same"]
    run_id = built.ids["fabricated"]
    found = get_json(server, f"/api/series?ids={run_id},nope..x,{built.ids['succeeded']}")[1]
    assert set(found["series"]) == {run_id, built.ids["succeeded"]}  # an invalid id: no read
    series = found["series"][run_id]
    assert series["step"] == list(range(50))
    assert set(series["metrics"]) == set(page["metrics"]) - {XSS}
    assert all(len(v) == 50 for v in series["metrics"].values())
    assert found["runs"][run_id]["params"]["bs"] in (16, 32, 48, 64)
    lines = get_json(server, f"/api/parallel?metric=loss&where={quote('bs>16')}")[1]
    assert lines["axes"][:2] == ["bs", "lr"] and lines["metric"] == "loss"
    assert len(lines["rows"]) == len(exp_json("ls", "--where", "bs>16", cwd=built.repo,
                                              env=built.env))


def test_a_run_its_log_and_its_code_diff(site: tuple[Built, Server]):
    built, server = site
    run_id = built.ids["succeeded"]
    status, run = get_json(server, f"/api/run/{run_id[-6:]}")  # a unique part, as the CLI
    assert status == 200 and run["id"] == run_id and run["status"] == "succeeded"
    assert run["command"] == "python train.py 0.1" and run["series"]["step"][:20] == list(range(20))
    assert run["checkpoints"][0]["message"] == "halfway"
    log = get_json(server, f"/api/log/{run_id}")[1]
    assert "step 19" in log["text"] and log["live"] is False
    diff = get_json(server, f"/api/diff/{run_id}")[1]
    assert diff["against_base"] and "+# tuned" in diff["code"]["patch"]
    other = get_json(server, f"/api/diff/{run_id}?against={built.ids['running']}")[1]
    assert other["command"]["b"] == ["python", "train.py", "0.1"]
    # the markup run's texts come back as they are (the page shows them as text), and its
    # log's lines are made printable
    markup = get_json(server, f"/api/run/{built.ids['markup']}")[1]
    assert markup["record"]["argv"][3] == XSS and XSS in markup["result"]["metrics"]
    assert XSS in get_json(server, f"/api/log/{built.ids['markup']}")[1]["text"]


@pytest.mark.parametrize("path", [
    "/static/../ui/server.py", "/static/%2e%2e/server.py", "/static/index.html",
    "/static/vendor/VERSIONS", "/static//etc/passwd", "/static/app.js/", "/etc/passwd",
    "/api/run/..%2f..%2fetc%2fpasswd", "/api/log/%2e%2e", "/api/run/a%00b",
    "/api/diff/HEAD~1", "/api/run/refs%2fheads%2fmain",
])
def test_a_path_in_a_url_never_reads_a_file(site: tuple[Built, Server], path: str):
    _, server = site
    status, _, body = ask(server, "GET", path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"import" not in body


def test_every_answer_carries_the_policy_and_only_our_host_is_answered(
        site: tuple[Built, Server]):
    _, server = site
    for path in ("/", "/api/runs", "/static/app.js", "/nope"):
        _, headers, _ = ask(server, "GET", path)
        assert headers["content-security-policy"].startswith(
            "default-src 'self'; script-src 'self'; style-src 'self'")
        assert headers["x-content-type-options"] == "nosniff"
    status, _, page = ask(server, "GET", "/")
    assert status == 200 and b"<script>" not in page  # no inline script to allow
    port = urlsplit(server.url).port
    assert ask(server, "GET", "/", host=f"localhost:{port}")[0] == 200
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", ""):
        assert ask(server, "GET", "/api/runs", host=host)[0] == 421, host  # DNS rebinding


def test_cancel_needs_the_session_token_and_our_origin(site: tuple[Built, Server]):
    built, server = site
    run_id, good = built.ids["running"], token(server)
    path = f"/api/cancel/{run_id}"
    assert ask(server, "GET", path)[0] == 405
    assert ask(server, "POST", path)[0] == 403
    assert ask(server, "POST", path, headers={"X-Gitexp-Token": good[:-1] + "x"})[0] == 403
    status, _, body = ask(server, "POST", path, headers={
        "X-Gitexp-Token": good, "Origin": "http://evil.example"})
    assert status == 403 and b"cross-origin" in body
    # a token of bytes that are no UTF-8, a URL too long: refused, no traceback printed
    status, headers, _ = ask(server, "POST", path, headers={"X-Gitexp-Token": "\xff\xe9"})
    assert status == 403 and "content-security-policy" in headers
    assert ask(server, "GET", "/api/runs?where=" + "(" * 9000)[0] == 400
    assert "Traceback" not in server.log.read_text()
    assert shown(built, run_id)["status"] == "running"  # untouched
    ended = built.ids["succeeded"]
    status, _, body = ask(server, "POST", f"/api/cancel/{ended}", headers={
        "X-Gitexp-Token": good, "Origin": server.url.rstrip("/")})
    assert status == 400 and json.loads(body)["error"] == f"run {ended} already ended " \
        "(succeeded)"
    again = serve(built.repo)
    try:
        assert token(again) != good  # a token per server
    finally:
        again.stop()


def test_another_user_of_the_machine_gets_nothing_not_even_the_token(
        site: tuple[Built, Server]):
    """A shared machine (a cluster's login node): another local user connecting to the
    loopback port is refused before anything is read, so it cannot take the page's token
    and cancel a run; this user is answered."""
    if os.getuid() != 0 or not shutil.which("runuser") or \
            not os.access("/usr/bin/python3", os.X_OK):
        unavailable("another user", "needs root, runuser and /usr/bin/python3 to connect "
                    "as another user")
    _, server = site
    probe = ("import sys, urllib.request, urllib.error\n"
             "try:\n    urllib.request.urlopen(sys.argv[1], timeout=20)\n    print(200)\n"
             "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n")
    for path in ("/", "/api/runs"):
        other = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-I", "-c",
                                probe, server.url.rstrip("/") + path],
                               capture_output=True, text=True, timeout=60, check=True)
        assert other.stdout.startswith("403") and "only its own user" in other.stdout, other
        assert "gitexp-token" not in other.stdout
    assert ask(server, "GET", "/api/runs")[0] == 200


def test_the_verb_refuses_an_exposed_host_unless_told_and_the_extra_is_named(
        site: tuple[Built, Server]):
    built, _ = site
    proc = exp("ui", "--no-open", "--host", "0.0.0.0", cwd=built.repo, check=False, env=built.env)
    assert proc.returncode == 2 and "--expose" in proc.stderr
    assert_user_error(proc, "would show the runs to the network")
    proc = exp("ui", "--no-open", "--port", "70000", cwd=built.repo, check=False, env=built.env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert extras.extra_of("aiohttp") == "ui"



def test_an_exposed_server_answers_the_names_others_reach_this_machine_by(
        site: tuple[Built, Server]):
    """`--expose` on all addresses: a browser on another machine sends this machine's name
    or address as Host, and is answered; any other name still gets 421 (DNS rebinding)."""
    built, _ = site
    proc = subprocess.Popen([str(BIN / "git-exp"), "ui", "--no-open", "--host", "0.0.0.0",
                             "--expose"], cwd=built.repo, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=built.env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        port = urlsplit(url).port
        assert url == f"http://{socket.getfqdn()}:{port}/"
        exposed = Server(proc=proc, url=f"http://127.0.0.1:{port}/", log=built.repo / "x")
        names = {socket.gethostname(), *server_mod._interface_addresses()} - {"127.0.0.1"}
        assert names
        for name in names:
            assert ask(exposed, "GET", "/", host=f"{name}:{port}")[0] == 200, name
        assert ask(exposed, "GET", "/", host=f"attacker.example:{port}")[0] == 421
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_vendored_libraries_are_the_ones_the_note_names():
    note = (assets.STATIC / "vendor" / "VERSIONS").read_text()
    for name in ("echarts.min.js", "uPlot.iife.min.js", "uPlot.min.css"):
        digest = hashlib.sha256((assets.STATIC / "vendor" / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in note
    assert set(assets.FILES) <= {p.relative_to(assets.STATIC).as_posix()
                                 for p in assets.STATIC.rglob("*")}
    with pytest.raises(KeyError):
        assets.read("../server.py")


def test_a_long_series_is_sent_thinned(site: tuple[Built, Server]):
    """A series far longer than a chart shows (a forged one: any size git compresses well)
    reaches the browser as at most MAX_CURVE points, its first, last and checkpoints kept,
    in the page of the run and in compare: never a dict per point on the server."""
    built, server = site
    run_id, n = "long-1201-0000-pts1", 3 * data.MAX_CURVE + 7
    lines = [json.dumps({"step": i, "loss": 1 / (i + 1)}) for i in range(n)]
    lines[12345] = json.dumps({"step": 12345, "loss": 0.5, "_checkpoint": "keep me"})
    forge_series(built.repo, run_id, "\n".join(lines).encode() + b"\n")
    run = get_json(server, f"/api/run/{run_id}")[1]
    found = get_json(server, f"/api/series?ids={run_id}")[1]["series"][run_id]
    for series in (run["series"], found):
        steps = series["step"]
        assert data.MAX_CURVE // 2 < len(steps) <= data.MAX_CURVE + 2
        assert steps[0] == 0 and steps[-1] == n - 1 and 12345 in steps
        assert steps == sorted(steps) and len(series["metrics"]["loss"]) == len(steps)
    assert [c["message"] for c in run["checkpoints"]] == ["keep me"]


def test_a_giant_code_diff_is_read_no_further_than_shown(site: tuple[Built, Server]):
    """A forged snapshot's text files (MBs that compress to KBs): one larger than the patch
    shown is diffed as binary, and the patch of many is read up to MAX_PATCH, no further."""
    built, server = site
    run_id, line = "code-1201-0000-big1", b"x = 1\n"
    forge_series(built.repo, run_id, b"", code={
        "huge.py": line * (2 * data.MAX_PATCH // len(line)),
        **{f"part{i}.py": line * (data.MAX_PATCH // 3 // len(line)) for i in range(4)}})
    found = get_json(server, f"/api/diff/{run_id}")[1]["code"]
    assert "Binary files /dev/null and b/huge.py differ" in found["patch"]
    assert found["patch_cut"] is True and "part2.py" in found["patch"]
    assert data.MAX_PATCH * 0.9 < len(found["patch"]) <= data.MAX_PATCH
    assert {f["path"]: f["added"] for f in found["files"]}["huge.py"] is None  # binary
    # `git exp diff -p` still shows all of it
    whole = exp_json("diff", run_id, "-p", "--json", cwd=built.repo, env=built.env)["code"]
    assert whole["patch_cut"] is False and "Binary files" not in whole["patch"]
    assert len(whole["patch"]) > 3 * data.MAX_PATCH


SERIES_TEXTS = {
    "plain": b'{"step": 0, "loss": 1.5, "acc": 0.1}\n{"step": 1, "loss": 1.25, "acc": 0.2}\n',
    "nan and infinity": b'{"step": 0, "loss": NaN}\n{"step": 1, "loss": Infinity, "a": 2}\n',
    "a torn last line": b'{"step": 0, "loss": 1}\n{"step": 1, "lo',
    "an integer past 64 bits": b'{"step": 0, "big": 123456789012345678901234567890}\n',
    "nested and odd values": b'{"step": 0, "loss": [1, 2], "d": {"x": 1}, "s": "x", "b": true}\n'
                             b'{"step": "1", "loss": 3, "n": null}\n[1, 2]\n"text"\n',
    "a checkpoint, a metric logged later": b'{"step": 0, "loss": 2}\n{"step": 1, "loss": 1, '
                                           b'"_checkpoint": "c1"}\n{"step": 2, "acc": 0.5}\n',
    "nothing": b"",
    "deep nesting": b'{"step": 0, "x": ' + b"[" * 5000 + b"]" * 5000 + b'}\n{"step": 1, "x": 2}\n',
}


@pytest.mark.parametrize("text", SERIES_TEXTS.values(), ids=SERIES_TEXTS.keys())
def test_fast_series_reading_gives_what_the_one_parser_gives(
        text: bytes, monkeypatch: pytest.MonkeyPatch):
    """The web view reads series with orjson, in one parse, looking at values only where
    it keeps them: its curves are exactly those of `metrics.parse_series` read point by
    point, with and without orjson, whatever the text holds - as the browser gets them
    (every number a double: orjson reads an integer past 64 bits as one)."""
    from gitexp.model import metrics

    def as_browser(value: Any) -> Any:
        return json.loads(data.dumps(value), parse_int=float)

    expected = as_browser(data._columns(metrics.parse_series(text)))
    fast = as_browser(data._columns(data.points_of(text)))
    monkeypatch.setattr(data, "orjson", None)
    assert fast == expected == as_browser(data._columns(data.points_of(text)))

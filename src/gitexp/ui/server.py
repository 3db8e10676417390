"""`git exp ui`'s web server (aiohttp): the page, its static files and a small JSON API.

Safe by construction, for a server any web page in the same browser could try to reach:
- it binds 127.0.0.1 unless told otherwise, and answers only requests whose Host header
  names it (127.0.0.1:PORT, localhost:PORT): a DNS-rebinding page gets 421;
- every response carries a strict Content-Security-Policy (no inline script: the page's
  only script is `static/app.js`), `nosniff`, and no framing;
- the one request that changes anything (cancel) is a POST that must carry this server's
  random token (in the page it served) as `X-Gitexp-Token`, compared in constant time,
  and whose Origin, when sent, is this server;
- a file is served only by a name from a fixed list; run ids are checked before git is
  asked anything about them; nothing builds a file-system path from a URL;
- on Linux, a connection from this machine is answered only if its other end belongs to
  this user (the kernel's socket table says whose it is): on a shared machine (a cluster's
  login node) another user can neither read the runs nor take the token and cancel them.

The git and store reads are blocking: they run in the loop's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.service import where as w
from gitexp.ui import assets, data

log = logging.getLogger("gitexp.ui")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
TOKEN_HEADER = "X-Gitexp-Token"  # noqa: S105 - the header's name, not a secret
LIVE_EVERY = 1.0  # s: live runs in a listing are looked at again at most this often
KEPT_CURVES = 256  # runs whose encoded series the server keeps (~60 KB each at 1,000 points)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class View:
    """The server's state: the repository, this session's token, the hosts it answers to,
    and the last listings (query -> table), reused while they are fresh."""
    repo: Repo
    config: Config
    hosts: frozenset[str]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    tables: dict[tuple[Any, ...], data.Table] = field(default_factory=dict)
    last: data.Table | None = None  # the latest listing made
    curves: OrderedDict[tuple[str, str | None], str] = field(default_factory=OrderedDict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def table(self, query: w.Query) -> data.Table:
        key = (query.where, query.sort, query.status)
        refs = data.heads(self.repo)
        with self.lock:  # one listing at a time: 10,000 rows are not read twice at once
            found = self.tables.get(key)
            if found is None or found.heads != refs:
                found = data.table(self.repo, self.config, query, refs)
                if len(self.tables) > 16:
                    self.tables.clear()
                self.tables[key] = found
            elif found.live and time.monotonic() - found.made > LIVE_EVERY:
                data.refresh(self.repo, self.config, found)
            self.last = found
            return found

    def series(self, wanted: list[str]) -> str:
        """`data.series` as the JSON text sent: each written-back run's series encoded once
        and kept (by run and commit: it never changes), the rest read afresh."""
        # any recent listing knows the commits (a run it lacks is looked up)
        found = self.last or self.table(data.query_of(None, None))
        commits = {r["id"]: r["commit"] for r in found.rows if r["written_back"]}
        texts: dict[str, str] = {}
        with self.lock:
            for run_id in wanted:
                if (text := self.curves.get((run_id, commits.get(run_id)))) is not None:
                    texts[run_id] = text
        fresh = data.series(self.repo, self.config, found,
                            [i for i in wanted if i not in texts])
        with self.lock:
            for run_id, columns in fresh["series"].items():
                texts[run_id] = _dumps(columns)
                if run_id in commits:
                    self.curves[(run_id, commits[run_id])] = texts[run_id]
                    self.curves.move_to_end((run_id, commits[run_id]))
            while len(self.curves) > KEPT_CURVES:
                self.curves.popitem(last=False)
        rows = {r["id"]: r for r in found.rows if r["id"] in texts}
        rows.update(fresh["runs"])
        body = ",".join(f"{_dumps(i)}:{texts[i]}" for i in wanted if i in texts)
        return f'{{"runs":{_dumps(rows)},"series":{{{body}}}}}'

    def warm(self) -> None:
        """List every run now, in the background: the browser's first page finds it made."""
        def work() -> None:
            try:
                self.table(data.query_of(None, None))
            except Exception:  # the page will ask again, and say what is wrong
                log.debug("warming the table failed", exc_info=True)
        threading.Thread(target=work, name="gitexp-ui-warm", daemon=True).start()

    def forget(self) -> None:
        with self.lock:
            self.tables.clear()


def hosts_for(host: str, port: int, *, exposed: bool = False) -> frozenset[str]:
    """The Host headers answered (any other: 421, against DNS rebinding): the loopback
    names and `host`; exposed (`--expose`), also the names and addresses others reach this
    machine by, which their browsers send."""
    names = {*LOOPBACK, host}
    if exposed:
        names |= {socket.gethostname(), socket.getfqdn()}
        with contextlib.suppress(OSError):
            names |= {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(
                socket.gethostname(), None, proto=socket.IPPROTO_TCP)}
        names |= _interface_addresses()
    names -= {"0.0.0.0", "::", ""}  # noqa: S104 - a wildcard is no name a browser sends
    return frozenset(f"[{n}]:{port}" if ":" in n and n[0] != "[" else f"{n}:{port}" for n in names)


def _interface_addresses() -> set[str]:
    """This machine's IPv4 addresses, by the kernel's routing table of local addresses
    (Linux; elsewhere none: the host's names above still answer)."""
    try:
        with open("/proc/net/fib_trie", encoding="ascii") as f:  # noqa: PTH123 - a kernel table
            lines = f.read().splitlines()
    except OSError:
        return set()
    found = set()
    for before, line in itertools.pairwise(lines):
        if line.strip() == "/32 host LOCAL" and before.strip().startswith("|--"):
            found.add(before.strip()[3:].strip())
    return found


def make_app(view: View) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=64 << 10)
    app["view"] = view
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name:.+}", _static)
    for path, fn in (("/api/runs", _runs), ("/api/parallel", _parallel),
                     ("/api/series", _series), ("/api/run/{id}", _run),
                     ("/api/log/{id}", _log), ("/api/diff/{id}", _diff)):
        app.router.add_get(path, fn)
    app.router.add_post("/api/cancel/{id}", _cancel)
    return app


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    view: View = request.app["view"]
    host = request.headers.get("Host", "")  # as sent: aiohttp's `host` fills in a missing one
    if host not in view.hosts:  # DNS rebinding: another name for this address
        return _headers(web.Response(status=421, text="misdirected request\n"))
    transport = request.transport
    if transport is not None and not peer_is_us(transport.get_extra_info("peername"),
                                                transport.get_extra_info("sockname")):
        return _headers(_error(403, "this server answers only its own user"))
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            return _headers(_error(403, "cross-origin request refused"))
        # a header's bytes that are no UTF-8 arrive as surrogates: compared, not a 500
        sent = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(sent, view.token.encode()):
            return _headers(_error(403, "missing or wrong session token",
                                   "reload the page: the server was restarted"))
    try:
        response = await handler(request)
    except GitexpError as exc:
        response = _error(400, exc.message, exc.hint)
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason)
    except Exception:  # a bug: said once on the server's side, never a page of traceback
        log.exception("error: %s %s failed", request.method, request.path)
        response = _error(500, "internal error (see the terminal running `git exp ui`)")
    return _headers(response)


def peer_is_us(peer: Any, ours: Any) -> bool:
    """Whether the other end of a TCP connection from this machine is a socket of this
    user, by the kernel's tables (/proc/net/tcp, tcp6: the client's entry has the peer's
    port as its local one and ours as its remote). A remote peer (`--expose`) and a system
    without those tables are not judged here; an entry not found (gone meanwhile) is not us."""
    if not (isinstance(peer, tuple) and isinstance(ours, tuple) and len(peer) >= 2):
        return True  # not TCP (a test's unix socket): nothing to look up
    if not ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback \
            and peer[0] != ours[0]:
        return True
    want = (f":{int(peer[1]):04X}", f":{int(ours[1]):04X}")
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:  # noqa: PTH123 - a kernel table
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 7 and cols[1].endswith(want[0]) and \
                            cols[2].endswith(want[1]):
                        if cols[7] != str(os.getuid()):
                            return False
                        found = True
        except OSError:
            continue
    return found or not Path("/proc/net/tcp").exists()


def _headers(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _error(status: int, message: str, hint: str | None = None) -> web.Response:
    return web.json_response({"error": message, "hint": hint}, status=status)


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))


_dumps = data.dumps


def _json(body: Any) -> web.Response:
    return web.Response(text=_dumps(body), content_type="application/json")


async def _index(request: web.Request) -> web.StreamResponse:
    return web.Response(text=assets.page(request.app["view"].token), content_type="text/html")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = assets.FILES.get(name)
    if kind is None:
        raise web.HTTPNotFound
    body = await _blocking(assets.read, name)  # name: one of FILES' own keys
    response = web.Response(body=body, content_type=kind)
    response.headers["Cache-Control"] = "max-age=300"
    return response


def _query(request: web.Request) -> w.Query:
    q = request.query
    return data.query_of(q.get("where"), q.get("sort"), q.getall("status", []))


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(request.query.get(name, default))))
    except ValueError:
        raise GitexpError(f"{name} must be a whole number") from None


async def _runs(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    found = await _blocking(view.table, _query(request))
    offset = _int(request, "offset", 0, 0, 10**9)
    limit = _int(request, "limit", data.PAGE, 1, data.MAX_PAGE)
    return _json({**found.page(offset, limit), "live": found.live})


async def _parallel(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    found = await _blocking(view.table, _query(request))
    metric = request.query.get("metric") or (found.metrics[0] if found.metrics else "")
    return _json(data.parallel(found, metric))


async def _series(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    wanted = [i for i in request.query.get("ids", "").split(",") if i][:data.MAX_COMPARE]
    return web.Response(text=await _blocking(view.series, wanted),
                        content_type="application/json")


async def _found(request: web.Request, name: str = "id") -> Any:
    view: View = request.app["view"]
    return await _blocking(data.find, view.repo, view.config, request.match_info[name])


async def _run(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    run = await _found(request)
    return _json(await _blocking(data.run_page, view.repo, view.config, run))


async def _log(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    run = await _found(request)
    offset = _int(request, "offset", -1, -1, 1 << 62)
    return _json(await _blocking(data.log_chunk, view.repo, view.config, run, offset))


async def _diff(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    run = await _found(request)
    against = request.query.get("against")
    other = await _blocking(data.find, view.repo, view.config, against) if against else None
    return _json(await _blocking(data.code_diff, view.repo, view.config, run, other))


async def _cancel(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    run = await _found(request)
    done = await _blocking(data.cancel, view.repo, view.config, run)
    view.forget()
    return _json(done)


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound now (port 0: a free one), so its URL can be printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GitexpError(f"cannot listen on {host}:{port}: {exc.strerror}",
                          hint="choose another port with --port, or 0 for a free one") from None
    sock.listen(128)
    return sock


def serve(view: View, sock: socket.socket) -> None:
    """Answer until interrupted (Ctrl-C)."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # a malformed request (any page can send one: a 10 KB URL) is answered 400 by aiohttp,
    # which would also print its traceback here; our own errors are said by `_guard`
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    web.run_app(make_app(view), sock=sock, print=None, handle_signals=True,
                shutdown_timeout=1.0)

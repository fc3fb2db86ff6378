"""The daemon's web interface, served by uvicorn (ASGI, HTTP/1.1 on h11) on a thread of
the daemon's own process; the routes are a Starlette application (``web.routes``).

Pages: ``/`` (DeviceHive configuration + live connection status) and ``/events/`` (last
10 predictions, live, with a bar chart of the top classes, the last sound events, and the
history, paged from the event store). JSON: ``/api/events``, ``/api/sounds``,
``/api/status``, ``/api/stream`` (Server-Sent Events), ``/healthz``. The original's
``/status/``, ``/events/update/`` and ``POST /`` answer as they did.

Safe by default: loopback bind, and a password on any other (``web.auth``); a ``Host``
allow-list against DNS rebinding, CSRF token + same-origin check on every POST that
changes something, a strict Content Security Policy (no inline script: the JavaScript
lives in ``static/``), every value HTML-escaped (Jinja2 autoescaping), tokens shown only
as "set" / "not set", and any malformed request answered with a 4xx instead of a
traceback.

Bounded, whatever the clients do (issue 15: 300 connections sending 64 KB header lines
took the old server to 1.97 GB):

* ``MAX_CONNECTIONS`` connections and tasks at once (uvicorn's ``limit_concurrency``:
  beyond, requests get 503 at once); high enough that a few hundred hostile connections
  do not turn ``/healthz`` away, low enough to stay within the usual 1,024 descriptors.
  Memory per connection is bounded by the head cap below (the event loop handles one
  read of at most 256 KB at a time), some 16 KB each, 8 MB at the cap;
* a request head of at most ``MAX_HEAD_BYTES`` (h11's ``max_incomplete_event_size``:
  beyond, 400 and the connection closes), a body of at most ``web.forms.MAX_BODY``;
* ``READ_TIMEOUT_S`` to send a whole request (head and body) from the moment the
  connection opens or the previous response ends (a guard uvicorn lacks: without it a
  client that sends nothing holds its connection for ever), ``KEEPALIVE_S`` idle between
  requests;
* ``stop()`` ends the event streams, then gives uvicorn ``GRACE_S`` to finish what runs
  and cancels the rest, and returns within ``STOP_TIMEOUT_S`` in any case: the daemon
  exits within 5 s of SIGTERM whatever the clients do.

Modules: ``web.server`` (this), ``web.routes`` (routes and the ASGI app), ``web.guard``
(host check, sign-in, headers), ``web.login``, ``web.stream`` (SSE), ``web.forms``,
``web.errors``, ``web.app`` (the shared state), ``web.history`` (events from the store or
memory), ``web.store`` (the in-memory events), ``web.auth``, ``web.security``,
``web.config``. The names callers have always imported from here are re-exported.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from web.app import WebApp, settings_or_none
from web.routes import build_asgi
from web.security import LOOPBACK_HOSTS, allowed_hosts_for, is_loopback
from web.store import EventStore

logger = logging.getLogger(__name__)

__all__ = ["LOOPBACK_HOSTS", "EventStore", "WebApp", "WebServer", "allowed_hosts_for",
           "is_loopback", "settings_or_none"]

MAX_CONNECTIONS = 512
MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0
KEEPALIVE_S = 5.0
GRACE_S = 1.5
STOP_TIMEOUT_S = 3.0
BACKLOG = 128
_WAITING = (h11.IDLE, h11.SEND_BODY)
"""The client's h11 states in which the request is not whole yet."""


class _TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each whole request."""

    read_timeout = READ_TIMEOUT_S
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_deadline()

    def _arm_read_deadline(self) -> None:
        self._cancel_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _cancel_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.conn.their_state in _WAITING and not self.transport.is_closing():
            logger.debug("web: closing a connection that sent no whole request in %g s",
                         self.read_timeout)
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in _WAITING:
            self._cancel_read_deadline()  # the request is whole (or the connection over)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_read_deadline()  # the next request on this keep-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_deadline()
        super().connection_lost(exc)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port fails the caller at once."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says
    # TCP, and without it every keep-alive response waits 40 ms for the client's delayed
    # ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class WebServer:
    """uvicorn serving ``app`` on ``address`` from a thread; ``stop()`` is bounded."""

    def __init__(self, address: tuple[str, int], app: WebApp) -> None:
        self.app = app
        self._socket = _listen(*address)
        self.server_address = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            build_asgi(app), http=_TimedH11Protocol, loop="asyncio", lifespan="off",
            ws="none", interface="asgi3", log_config=None, access_log=False,
            server_header=False, limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES, timeout_keep_alive=int(KEEPALIVE_S),
            timeout_graceful_shutdown=GRACE_S, backlog=BACKLOG)  # type: ignore[arg-type]
        self._server = uvicorn.Server(config)
        # uvicorn warns once per refused request (malformed, over the cap): a flood would
        # flood the log too. Errors only, unless the user chose a level for its loggers.
        for name in ("uvicorn.error", "uvicorn"):
            quiet = logging.getLogger(name)
            if quiet.level == logging.NOTSET:
                quiet.setLevel(logging.ERROR)
        self._thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._serve, name="web-server", daemon=True)
        self._thread.start()
        return self._thread

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException:  # the thread must never die silently
            logger.exception("web: the server stopped on an error")

    @property
    def started(self) -> bool:
        return self._server.started

    def stop(self) -> None:
        """End the streams, stop uvicorn, close the history; within ``STOP_TIMEOUT_S``."""
        self.app.close()
        self._server.should_exit = True
        thread = self._thread
        if thread is not None:
            thread.join(STOP_TIMEOUT_S - 0.5)
            if thread.is_alive():
                logger.warning("web: connections still open at exit; closing them")
                self._server.force_exit = True
                thread.join(0.5)
        self._socket.close()

"""The ``devicehive`` library's transports, made to end: every attempt releases its threads
and its socket, whether it fails, is abandoned or is closed.

The library (2.1.6, 2018, unmaintained) runs each connection on a "connection" thread
(connect, authenticate, then poll an event queue) and, for WebSocket, an "event" thread
that blocks in ``recv`` on the socket. Its own ``disconnect()`` only clears a flag, so
after a failed or abandoned attempt (a 401, a 500, a reply that is not JSON, a server that
never answers) the event thread stays blocked on a socket nobody closes: one thread and
one descriptor leaked per attempt. A request also waits up to 30 s for its reply without
looking at the connection. The subclasses here fix that, overriding only the library's
internal hooks:

* ``_connection`` (the connection thread's body) ends by closing its socket and joining
  its event thread (bounded), whatever happened: failed, abandoned or closed.
* ``release()`` (any thread) marks the attempt abandoned and wakes whatever is blocked
  (``shutdown`` of the socket), so that cleanup runs at once.
* The WebSocket event thread stops at its first error instead of spinning on a dead
  socket, and a request stops waiting for its reply as soon as the connection is gone
  or the sink's ``request_timeout`` passes (not the library's 30 s).
* Connect and the WebSocket handshake are bounded by ``connect_timeout`` (the event
  thread then clears the socket timeout: an idle connection must not time out).

The HTTP transport has no socket of its own (``requests`` opens and closes one per
request, each bounded by the ``timeout`` the sink passes); it gets the same lifecycle.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from typing import Any

from devicehive.api_handler import ApiHandler
from devicehive.data_formats.json_data_format import JsonDataFormat
from devicehive.transports.http_transport import HttpTransport
from devicehive.transports.websocket_transport import WebsocketTransport
from websocket import ABNF

JOIN_TIMEOUT = 1.0
"""How long cleanup waits for a library thread; they are daemon threads, so one that is
still blocked (a TCP connect within its own timeout) cannot delay the process's exit."""
RELEASE_GRACE = 0.2
"""How long ``release`` lets the connection thread leave on its own (its poll loop sleeps
0.05 s) before the socket is shut under it."""


class _Ending:
    """The lifecycle shared by both transports (a mixin for the library's classes)."""

    reply_timeout: float = 30.0
    _connected: bool
    _connection_thread: threading.Thread | None

    def _init_ending(self, reply_timeout: float) -> None:
        self.reply_timeout = reply_timeout
        self.abandoned = threading.Event()
        self.released = threading.Event()

    def _connection(self, url: str, options: dict[str, Any]) -> None:
        try:
            super()._connection(url, options)  # type: ignore[misc]  # catches everything
        finally:
            self._connected = False
            self._wake()
            self._cleanup()
            self.released.set()

    def _handle_connect(self) -> None:
        if self.abandoned.is_set():  # abandoned while connecting: authenticate nothing
            raise self._error("connection abandoned")  # type: ignore[attr-defined]
        super()._handle_connect()  # type: ignore[misc]

    def release(self, timeout: float = JOIN_TIMEOUT) -> bool:
        """Abandon this attempt and wait (bounded) until its threads and socket are gone.

        True when everything was released within ``timeout``; otherwise the connection
        thread finishes the cleanup itself when its blocking call returns.
        """
        self.abandoned.set()
        self._connected = False
        if self._connection_thread is None:
            return True
        if not self.released.wait(min(RELEASE_GRACE, timeout)):
            self._wake()
        return self.released.wait(max(timeout - RELEASE_GRACE, 0.0))

    def _wake(self) -> None:
        """Unblock calls waiting on the network (nothing to do where there is no socket)."""

    def _cleanup(self) -> None:
        """Close what the attempt opened (runs on the connection thread, at its end)."""


class EndingWebsocketTransport(_Ending, WebsocketTransport):
    """WebSocket transport whose threads end and whose socket is closed (module doc)."""

    def __init__(self, *args: Any, reply_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_ending(reply_timeout)
        self._event_thread: threading.Thread | None = None

    def _event(self) -> None:
        """The library's event loop, but it stops at the first error, recorded as the
        connection's failure (the library's retries ``recv`` on a dead socket at full
        speed until someone disconnects, and a close from the server left it alive)."""
        self._event_thread = threading.current_thread()
        with contextlib.suppress(OSError):
            self._websocket.settimeout(None)  # the connect timeout is not an idle timeout
        while self._connected:
            try:
                with self._connection_lock:
                    opcode, data = self._websocket_call(self._websocket.recv_data, True)
                if opcode == ABNF.OPCODE_CLOSE:  # the library returned, looking alive
                    raise self._error("Connection closed by the server.")
                if opcode == ABNF.OPCODE_PONG:
                    self._pong_received = True
                elif opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
                    self._dispatch(data.decode("utf-8") if opcode == ABNF.OPCODE_TEXT
                                   else data)
            except Exception:
                if self._connected and not self._exception_info:  # not our own shutdown
                    self._exception_info = sys.exc_info()
                return

    def _dispatch(self, data: Any) -> None:
        try:
            event = self._decode(data)
        except ValueError as error:
            raise self._error(f"Reply is not valid JSON ({error}).") from None
        request_id = event.get(self.REQUEST_ID_KEY)
        if request_id:
            self._responses[request_id] = event
        else:
            self._event_queue.append(event)

    def _receive_response(self, request_id: str, timeout: float) -> Any:
        """Wait for the reply, but no longer than the connection lives or the sink's
        ``request_timeout`` (the library waits 30 s whatever happens)."""
        deadline = time.monotonic() + min(timeout, self.reply_timeout)
        while True:
            response = self._responses.pop(request_id, None)
            if response:
                return response
            failed = self._exception_info
            if failed and failed[1] is not None:
                raise self._error(str(failed[1]) or "Connection failed.")
            if not self._connected or self.abandoned.is_set():
                raise self._error("Connection closed.")
            if time.monotonic() > deadline:
                raise self._error(f"No reply within {self.reply_timeout:g} s.")
            time.sleep(self._response_sleep_time)

    def _disconnect(self) -> None:
        """Say goodbye without waiting: the library's close waits up to 3 s for the
        server's reply while the event thread holds the lock it needs."""
        with contextlib.suppress(Exception):
            self._websocket.send_close()
        self._event_queue = []
        self._responses = {}
        self._handle_disconnect()

    def _wake(self) -> None:
        sock = self._websocket.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # ends a blocked recv, handshake or send

    def _cleanup(self) -> None:
        event_thread = self._event_thread
        if event_thread is not None and event_thread is not threading.current_thread():
            event_thread.join(JOIN_TIMEOUT)
        self._websocket.shutdown()  # closes the descriptor


class EndingHttpTransport(_Ending, HttpTransport):
    """HTTP transport with the same lifecycle (module doc)."""

    def __init__(self, *args: Any, reply_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_ending(reply_timeout)


def open_transport(url: str, websocket: bool, handler_class: type, auth: dict[str, Any],
                   reply_timeout: float, options: dict[str, Any]) -> Any:
    """Start one connection attempt, as ``DeviceHive.connect(transport_keep_alive=False)``
    does, on a transport of ours; returns it at once (its connection thread runs)."""
    cls = EndingWebsocketTransport if websocket else EndingHttpTransport
    transport = cls(JsonDataFormat, {}, ApiHandler,
                    {"handler_class": handler_class, "handler_args": (),
                     "handler_kwargs": {}, "auth": auth, "api_init": True},
                    reply_timeout=reply_timeout)
    transport.connect(url, **options)
    return transport

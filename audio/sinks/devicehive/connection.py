"""One connection to a DeviceHive server, on the ``devicehive`` client library.

The library (2.1.6, 2018) is used for the protocol (authentication, token refresh,
``put_device``, ``notification/insert``) but not for its connection management, which
does not fit a daemon (see the package doc). A ``Connection`` only connects, runs one
request at a time with a deadline, and says when it is no longer usable; reconnecting is
the sink's business. Its transport (``audio.sinks.devicehive.transport``) ends its threads
and closes its socket whenever the connection fails or is closed.

Each request runs on its own daemon thread; the caller waits for it in short slices,
watching the socket, and abandons the connection as soon as the socket is gone or
``request_timeout`` passes. Closing the connection ends that thread too (its reply wait
watches the connection), and being a daemon thread it can never hold up the process's
exit.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Any

from audio.errors import AudioAnalysisError
from audio.sinks.devicehive.notification import OutgoingNotification, parse_ms
from audio.sinks.devicehive.settings import DeviceHiveSettings, redact_text

# The library logs whole requests, tokens included, at DEBUG: keep that out of any log.
logging.getLogger("devicehive").setLevel(logging.INFO)


class Ambiguous(AudioAnalysisError):
    """The request may or may not have reached the server; the connection is unusable."""


class Rejected(AudioAnalysisError):
    """The server answered with a definite refusal of this one notification."""


class ConnectionDead(AudioAnalysisError):
    """The connection is unusable (auth failure, server error); nothing is ambiguous."""


class LookupRefused(AudioAnalysisError):
    """The server refused to list notifications (e.g. 403: the token may not)."""


def describe(error: BaseException) -> str:
    """The first line of an error, short enough for a status page and a log line, with
    any URL in it redacted (library errors may quote the URL they failed on)."""
    text = str(error) or type(error).__name__
    return redact_text(text.splitlines()[0][:300])


class Connection:
    """One library transport, its registered device and an executor for its requests."""

    def __init__(self, settings: DeviceHiveSettings,
                 stop: threading.Event | None = None) -> None:
        """Start connecting; ``stop`` (the sink's) ends every wait of this connection."""
        # Imported late: --help stays instant.
        from devicehive import Handler

        from audio.sinks.devicehive.transport import open_transport

        self.settings = settings
        self.stop = stop or threading.Event()
        self.abandoned = False
        self.ready = threading.Event()
        self.device: Any = None
        self.error: str | None = None
        self._request: threading.Thread | None = None
        connection = self

        class _ConnectHandler(Handler):
            def handle_connect(self) -> None:  # runs on the transport thread
                if connection.abandoned:
                    raise ConnectionDead("connection abandoned")
                connection.device = self.api.put_device(settings.device_id)
                connection.ready.set()

        auth = {"login": settings.login or None, "password": settings.password or None,
                "refresh_token": settings.refresh_token or None,
                "access_token": settings.access_token or None}
        self.transport: Any = open_transport(settings.url, settings.websocket, _ConnectHandler,
                                             auth, settings.request_timeout,
                                             _connect_options(settings))

    def alive(self) -> bool:
        transport = self.transport
        if self.abandoned or transport.exception_info:
            return False
        if not transport.is_alive() or not transport.connected:
            return False
        # A clean close from the server leaves the library's transport thread running;
        # websocket-client marks its socket as no longer connected.
        sock = getattr(transport, "_websocket", None)
        return sock is None or bool(getattr(sock, "connected", True))

    def failure(self) -> str:
        info = self.transport.exception_info
        if info and info[1] is not None:
            return describe(info[1])
        return self.error or "connection lost"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.connect_timeout
        while not self.ready.wait(0.05):
            if self.stop.is_set():
                raise ConnectionDead("stopping")
            if not self.transport.is_alive() or self.transport.exception_info:
                raise ConnectionDead(self.failure())
            if time.monotonic() > deadline:
                raise ConnectionDead(
                    f"no connection within {self.settings.connect_timeout:g} s")
        if not self.alive():
            raise ConnectionDead(self.failure())

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a library request on a daemon thread; give up when the socket dies."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # handed to the caller, re-raised there
                future.set_exception(error)

        self._request = threading.Thread(target=run, name="dh-request", daemon=True)
        self._request.start()
        deadline = time.monotonic() + self.settings.request_timeout
        while True:
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                pass
            if not self.alive():
                raise Ambiguous(self.failure())
            if self.stop.is_set():
                raise Ambiguous("stopping")
            if time.monotonic() > deadline:
                raise Ambiguous(f"no reply within {self.settings.request_timeout:g} s")

    def send(self, note: OutgoingNotification) -> None:
        from devicehive.api_response import ApiResponseError

        try:
            self.call(self.device.send_notification, note.name, parameters=note.parameters,
                      timestamp=note.timestamp)
        except ApiResponseError as error:
            if error.code in (400, 413, 422):
                raise Rejected(describe(error)) from None
            raise ConnectionDead(describe(error)) from None
        except Ambiguous:
            raise
        except Exception as error:  # transport errors: the request may have gone out
            raise Ambiguous(describe(error)) from None

    def was_stored(self, note: OutgoingNotification) -> bool:
        """Did ``note`` reach the server before the last connection dropped?

        Notifications go out one at a time, so if it was stored it is among the device's
        latest. One with parameters is recognised by them (they carry its id, or in the
        sink's memory its unique client timestamp, and survive a server that re-stamps
        notifications itself); one without (the legacy format) by its name and client
        timestamp. Parameters alone: two notifications of one name may share a
        millisecond (two sounds starting in the same frame), and taking one for the other
        would lose it.
        """
        from devicehive.api_response import ApiResponseError

        ms = parse_ms(note.timestamp)
        try:
            latest = self.call(self.device.list_notifications, sort_field="timestamp",
                               sort_order="DESC", take=20)
        except ApiResponseError as error:  # a definite answer: asking again will not help
            raise LookupRefused(describe(error)) from None
        for n in latest:
            if n.notification != note.name:
                continue
            if note.parameters is not None:
                if n.parameters == note.parameters:
                    return True
                continue
            try:
                if parse_ms(n.timestamp) == ms:
                    return True
            except (TypeError, ValueError):
                continue
        return False

    def close(self, timeout: float = 0.5) -> None:
        """Abandon the connection: its socket is closed and its threads end (each wait
        bounded by ``timeout``; a thread still blocked then finishes the cleanup itself
        when its call returns, within the connect or request timeout)."""
        self.abandoned = True
        started = time.monotonic()
        self.transport.release(timeout)
        request = self._request
        if request is not None:
            request.join(max(0.0, timeout - (time.monotonic() - started)))


def _connect_options(settings: DeviceHiveSettings) -> dict[str, Any]:
    """The transport's ``connect`` options: sane sleeps and timeouts."""
    options: dict[str, Any] = {}
    if settings.websocket:
        # The library's defaults sleep 1 µs in these loops (~26% of a core idle);
        # ``timeout`` bounds the TCP connect and the handshake only (see transport).
        options.update(event_queue_sleep_time=0.05, response_sleep_time=0.001,
                       timeout=settings.connect_timeout)
    else:
        options.update(events_queue_sleep_time=0.05,
                       timeout=(settings.connect_timeout, settings.request_timeout))
    return options

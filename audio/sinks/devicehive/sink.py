"""DeviceHive sink: one notification per classified window, delivered once and in order.

The ``devicehive`` client library (2.1.6, 2018) is used for the protocol (authentication,
token refresh, ``put_device``, ``notification/insert``) but not for its connection
management, which does not fit a daemon:

* ``DeviceHive.connect()`` blocks its caller, retries 10 times and then raises, and its
  polling loops sleep 1 µs (an idle connection burns a quarter of a core). We call it with
  ``transport_keep_alive=False`` (it then only starts the transport thread and returns) and
  pass sleep times that make idle cost ~0; our own thread owns reconnection, with
  exponential backoff that never gives up.
* A WebSocket request whose connection drops waits 30 s for a reply that never comes, and a
  server that closes the connection cleanly leaves the transport "alive" forever. Every
  request therefore runs on a per-connection executor thread; the sink thread waits for it
  in short slices, watching the socket, and abandons the connection (and the thread, which
  ends on its own) as soon as the socket is gone or ``request_timeout`` passes.
* A notification in flight when the connection drops may or may not have been stored. Each
  notification carries a unique client timestamp (strictly increasing, ms precision); after
  reconnecting, the sink lists the device's latest notifications and re-sends only when it
  is not among them. That is what makes delivery exactly-once, in order.

The loop thread only appends to a bounded deque (``handle`` never blocks); when it is full,
the oldest notification is dropped and counted.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from audio.events import Event

logger = logging.getLogger("audio.devicehive")  # its name before the move: log lines stay

# The library logs whole requests, tokens included, at DEBUG: keep that out of any log.
logging.getLogger("devicehive").setLevel(logging.INFO)

DEFAULT_NOTIFICATION_NAME = "audio_analysis"
DEFAULT_QUEUE_SIZE = 1000
SCHEMES = ("ws", "wss", "http", "https")


class DeviceHiveConfigError(ValueError):
    """The DeviceHive settings cannot work (bad URL, no device id, no credentials)."""


@dataclass(frozen=True)
class DeviceHiveSettings:
    """Where and how to send. Secrets are excluded from ``repr`` so they never reach logs."""

    url: str
    device_id: str
    refresh_token: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    login: str = ""
    password: str = field(default="", repr=False)
    notification_name: str = ""  # "" and 0: the sink's defaults
    legacy_format: bool = False
    queue_size: int = 0
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def validate(self) -> DeviceHiveSettings:
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise DeviceHiveConfigError("DeviceHive URL is malformed") from None
        if parts.scheme.lower() not in SCHEMES or not parts.hostname:
            raise DeviceHiveConfigError(
                "DeviceHive URL must start with ws://, wss://, http:// or https://"
            )
        if not self.device_id or not all(c.isascii() and (c.isalnum() or c == "-")
                                         for c in self.device_id):
            raise DeviceHiveConfigError("device id must be letters, digits and dashes")
        if not (self.refresh_token or self.access_token or (self.login and self.password)):
            raise DeviceHiveConfigError(
                "DeviceHive needs a refresh token, an access token, or login and password"
            )
        if self.queue_size < 0:
            raise DeviceHiveConfigError("queue size must be positive")
        return self

    @property
    def websocket(self) -> bool:
        return urlsplit(self.url).scheme.lower().startswith("ws")


def format_timestamp(ms: int) -> str:
    """DeviceHive's ``yyyy-MM-ddTHH:mm:ss.SSS`` (UTC) for a time in unix milliseconds."""
    when = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"


@dataclass(frozen=True)
class OutgoingNotification:
    """A notification ready to send; ``timestamp`` is unique per sink (see module doc)."""

    seq: int
    name: str
    parameters: dict[str, Any] | None
    timestamp: str


def build_notification(event: Event, seq: int, timestamp: str, name: str,
                       legacy: bool) -> OutgoingNotification:
    """The wire form: the original's JSON-list name, or ``name`` + structured parameters."""
    predictions = [p.as_dict() for p in event.predictions]
    if legacy:
        legacy_name = json.dumps([[p["label"], p["score"]] for p in predictions])
        return OutgoingNotification(seq, legacy_name, None, timestamp)
    parameters = {"predictions": predictions, "timestamp": timestamp,
                  "window": {"start": round(event.start, 3), "end": round(event.end, 3)}}
    return OutgoingNotification(seq, name, parameters, timestamp)


class _Ambiguous(Exception):
    """The request may or may not have reached the server; the connection is unusable."""


class _Rejected(Exception):
    """The server answered with a definite refusal of this one notification."""


class _ConnectionDead(Exception):
    """The connection is unusable (auth failure, server error); nothing is ambiguous."""


class _Connection:
    """One library transport, its registered device and an executor for its requests."""

    def __init__(self, settings: DeviceHiveSettings) -> None:
        from devicehive import DeviceHive, Handler  # import late: --help stays instant

        self.settings = settings
        self.abandoned = False
        self.ready = threading.Event()
        self.device: Any = None
        self.error: str | None = None
        connection = self

        class _ConnectHandler(Handler):
            def handle_connect(self) -> None:  # runs on the transport thread
                if connection.abandoned:
                    raise _ConnectionDead("connection abandoned")
                connection.device = self.api.put_device(settings.device_id)
                connection.ready.set()

        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dh-request")
        self.hive = DeviceHive(_ConnectHandler)
        options: dict[str, Any] = {
            "transport_keep_alive": False,
            "refresh_token": settings.refresh_token or None,
            "access_token": settings.access_token or None,
            "login": settings.login or None,
            "password": settings.password or None,
        }
        if settings.websocket:
            # The library's defaults sleep 1 µs in these loops (~26% of a core idle).
            options.update(event_queue_sleep_time=0.05, response_sleep_time=0.001)
        else:
            options.update(events_queue_sleep_time=0.05,
                           timeout=(settings.connect_timeout, settings.request_timeout))
        self.hive.connect(settings.url, **options)

    @property
    def transport(self) -> Any:
        return self.hive.transport

    def alive(self) -> bool:
        transport = self.transport
        if transport is None or self.abandoned or transport.exception_info:
            return False
        if not transport.is_alive() or not transport.connected:
            return False
        # A clean close from the server leaves the library's transport thread running;
        # websocket-client marks its socket as no longer connected.
        sock = getattr(transport, "_websocket", None)
        return sock is None or bool(getattr(sock, "connected", True))

    def failure(self) -> str:
        info = self.transport.exception_info if self.transport is not None else None
        if info and info[1] is not None:
            return _describe(info[1])
        return self.error or "connection lost"

    def wait_ready(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + self.settings.connect_timeout
        while not self.ready.wait(0.05):
            if stop.is_set():
                raise _ConnectionDead("stopping")
            if not self.transport.is_alive() or self.transport.exception_info:
                raise _ConnectionDead(self.failure())
            if time.monotonic() > deadline:
                raise _ConnectionDead(
                    f"no connection within {self.settings.connect_timeout:g} s")
        if not self.alive():
            raise _ConnectionDead(self.failure())

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a library request on the executor; give up when the socket dies."""
        future = self._executor.submit(fn, *args, **kwargs)
        deadline = time.monotonic() + self.settings.request_timeout
        while True:
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                pass
            if not self.alive():
                raise _Ambiguous(self.failure())
            if time.monotonic() > deadline:
                raise _Ambiguous(f"no reply within {self.settings.request_timeout:g} s")

    def send(self, note: OutgoingNotification) -> None:
        from devicehive.api_response import ApiResponseError

        try:
            self.call(self.device.send_notification, note.name, parameters=note.parameters,
                      timestamp=note.timestamp)
        except ApiResponseError as error:
            if error.code in (400, 413, 422):
                raise _Rejected(_describe(error)) from None
            raise _ConnectionDead(_describe(error)) from None
        except _Ambiguous:
            raise
        except Exception as error:  # transport errors: the request may have gone out
            raise _Ambiguous(_describe(error)) from None

    def was_stored(self, note: OutgoingNotification) -> bool:
        """Did ``note`` reach the server before the last connection dropped?

        Notifications go out one at a time, so if it was stored it is among the device's
        latest. It is recognised by its unique client timestamp, or by its parameters
        (which carry that timestamp) should a server re-stamp notifications itself.
        """
        ms = _parse_ms(note.timestamp)
        latest = self.call(self.device.list_notifications, sort_field="timestamp",
                           sort_order="DESC", take=20)
        for n in latest:
            if n.notification != note.name:
                continue
            if note.parameters is not None and n.parameters == note.parameters:
                return True
            try:
                if _parse_ms(n.timestamp) == ms:
                    return True
            except (TypeError, ValueError):
                continue
        return False

    def close(self) -> None:
        self.abandoned = True
        transport = self.transport
        try:
            if transport is not None and transport.connected:
                transport.disconnect()  # also stops the library's reader thread spinning
        except Exception:  # already gone
            pass
        self._executor.shutdown(wait=False, cancel_futures=True)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]


def _parse_ms(stamp: str) -> int:
    when = dt.datetime.strptime(stamp[:23], "%Y-%m-%dT%H:%M:%S.%f")
    return round(when.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


class DeviceHiveSink:
    """The :class:`audio.events.Sink` that forwards events to DeviceHive.

    ``settings=None`` means "not configured": events are ignored until ``reconfigure``.
    """

    def __init__(self, settings: DeviceHiveSettings | None = None, *,
                 notification_name: str = DEFAULT_NOTIFICATION_NAME,
                 legacy_format: bool = False, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._defaults = (notification_name, legacy_format, queue_size)
        self._settings = self._complete(settings)
        self._cond = threading.Condition()
        self._queue: deque[OutgoingNotification] = deque()
        self._inflight: OutgoingNotification | None = None
        self._uncertain: OutgoingNotification | None = None
        self._seq = 0
        self._last_ms = 0
        self._generation = 0
        self._stop = threading.Event()
        self.state = "disabled" if self._settings is None else "connecting"
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="devicehive-sink", daemon=True)
        self._thread.start()

    def _complete(self, settings: DeviceHiveSettings | None) -> DeviceHiveSettings | None:
        if settings is None:
            return None
        name, legacy, size = self._defaults
        return replace(settings, notification_name=settings.notification_name or name,
                       legacy_format=settings.legacy_format or legacy,
                       queue_size=settings.queue_size or size).validate()

    # ---- the Sink contract (loop thread) ---------------------------------------------
    def handle(self, event: Event) -> None:
        with self._cond:
            settings = self._settings
            if settings is None:
                return
            ms = max(round(event.timestamp * 1000), self._last_ms + 1)
            self._last_ms = ms
            self._seq += 1
            note = build_notification(event, self._seq, format_timestamp(ms),
                                      settings.notification_name, settings.legacy_format)
            self._queue.append(note)
            while len(self._queue) + (self._inflight is not None) > settings.queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop: give pending notifications up to ``timeout`` seconds to go out."""
        self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=max(1.0, timeout))

    # ---- control (web thread) --------------------------------------------------------
    def reconfigure(self, settings: DeviceHiveSettings | None) -> None:
        """Switch server/credentials/device now; queued notifications go to the new one."""
        settings = self._complete(settings)
        with self._cond:
            self._settings = settings
            self._generation += 1
            self.last_error = None
            self.state = "disabled" if settings is None else "connecting"
            if settings is None:
                self._queue.clear()
                self._uncertain = None
            self._cond.notify_all()

    def report_error(self, message: str) -> None:
        """Show a problem found outside the sink (e.g. an unusable saved configuration)."""
        self._set(last_error=message)

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight or self._uncertain:
                if self._settings is None:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def status(self) -> dict[str, Any]:
        with self._cond:
            settings = self._settings
            return {
                "state": self.state,
                "sent": self.sent,
                "queued": len(self._queue) + (self._inflight is not None)
                + (self._uncertain is not None),
                "dropped": self.dropped,
                "rejected": self.rejected,
                "reconnects": self.reconnects,
                "last_error": self.last_error,
                "connected_since": self.connected_since,
                "url": _redact_url(settings.url) if settings else None,
                "device_id": settings.device_id if settings else None,
                "format": ("legacy" if settings.legacy_format else "structured")
                if settings else None,
            }

    # ---- the sender thread -----------------------------------------------------------
    def _set(self, **fields: Any) -> None:
        with self._cond:
            for key, value in fields.items():
                setattr(self, key, value)
            self._cond.notify_all()

    def _run(self) -> None:
        connection: _Connection | None = None
        generation = -1
        backoff = 0.0
        while not self._stop.is_set():
            with self._cond:
                settings = self._settings
                if self._generation != generation:
                    generation = self._generation
                    backoff = 0.0
                    if connection is not None:
                        connection.close()
                        connection = None
                if settings is None:
                    self._cond.wait()
                    continue
            if connection is None:
                if backoff:
                    self._wait_interruptible(backoff, generation)
                    if self._stop.is_set() or self._generation != generation:
                        continue
                self._set(state="connecting")
                try:
                    connection = _Connection(settings)
                    connection.wait_ready(self._stop)
                    self._resolve_uncertain(connection)
                except (_ConnectionDead, _Ambiguous) as error:
                    if connection is not None:
                        connection.close()
                        connection = None
                    backoff = min(max(backoff * 2, settings.backoff_initial), settings.backoff_max)
                    if not self._stop.is_set():
                        logger.warning("DeviceHive: cannot connect to %s: %s (retry in %.1f s)",
                                       _redact_url(settings.url), error, backoff)
                    self._set(state="disconnected", last_error=str(error))
                    continue
                except Exception as error:  # library bug or bad input: never kill the thread
                    logger.exception("DeviceHive: unexpected error while connecting")
                    if connection is not None:
                        connection.close()
                        connection = None
                    backoff = min(max(backoff * 2, settings.backoff_initial), settings.backoff_max)
                    self._set(state="disconnected", last_error=_describe(error))
                    continue
                backoff = 0.0
                logger.info("DeviceHive: connected to %s as device %s",
                            _redact_url(settings.url), settings.device_id)
                self._set(state="connected", last_error=None, connected_since=time.time())
            with self._cond:
                while not self._queue and not self._stop.is_set() \
                        and self._generation == generation:
                    if not connection.alive():
                        break
                    self._cond.wait(0.5)
                if self._stop.is_set() or self._generation != generation:
                    continue
                note = self._queue.popleft() if self._queue and connection.alive() else None
                self._inflight = note
            if note is None:  # the connection died while idle
                error = connection.failure()
                connection.close()
                connection = None
                self._lost(error, settings)
                backoff = settings.backoff_initial
                continue
            try:
                connection.send(note)
            except _Rejected as error:
                logger.warning("DeviceHive refused notification %d: %s", note.seq, error)
                self._finish(note, rejected=True, error=str(error))
            except (_Ambiguous, _ConnectionDead) as error:
                with self._cond:
                    self._inflight = None
                    if isinstance(error, _Ambiguous):
                        self._uncertain = note
                    else:
                        self._queue.appendleft(note)
                connection.close()
                connection = None
                self._lost(str(error), settings)
                backoff = settings.backoff_initial
            except Exception as error:
                logger.exception("DeviceHive: unexpected error while sending")
                with self._cond:
                    self._inflight = None
                    self._uncertain = note
                connection.close()
                connection = None
                self._lost(_describe(error), settings)
                backoff = settings.backoff_initial
            else:
                self._finish(note)
        if connection is not None:
            connection.close()
        self._set(state="stopped")

    def _lost(self, error: str, settings: DeviceHiveSettings) -> None:
        logger.warning("DeviceHive: connection to %s lost: %s", _redact_url(settings.url), error)
        self._set(state="disconnected", last_error=error, connected_since=None,
                  reconnects=self.reconnects + 1)

    def _finish(self, note: OutgoingNotification, rejected: bool = False,
                error: str | None = None) -> None:
        with self._cond:
            self._inflight = None
            if rejected:
                self.rejected += 1
                self.last_error = error
            else:
                self.sent += 1
            self._cond.notify_all()

    def _resolve_uncertain(self, connection: _Connection) -> None:
        """After a reconnect: was the notification in flight stored? Re-queue it if not."""
        with self._cond:
            note = self._uncertain
        if note is None:
            return
        stored = connection.was_stored(note)
        with self._cond:
            self._uncertain = None
            if stored:
                self.sent += 1
            else:
                self._queue.appendleft(note)
            self._cond.notify_all()
        logger.info("DeviceHive: notification in flight at the disconnect was %s",
                    "already stored" if stored else "lost; re-sending it")

    def _wait_interruptible(self, seconds: float, generation: int) -> None:
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._stop.is_set() and self._generation == generation:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)


def _redact_url(url: str) -> str:
    """The URL without userinfo or query (either may carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"

"""One webhook POST and what its answer says, for :mod:`audio.sinks.webhook`.

Each POST has one deadline (the settings' ``timeout``) covering the connection, the TLS
handshake, the request and the whole answer: ``http.client``'s own timeout bounds each
read, so a receiver that drips a byte now and then would hold the URL for ever. The
answer's body is read no further than ``MAX_BODY`` bytes (nothing in it is used: a 300 MB
body must not become 300 MB of memory), redirects are not followed (the signed body stays
with the configured URL; the caller retries and shows the ``Location``), and a
``Retry-After`` (delta-seconds or an HTTP date) is parsed and capped at
``RETRY_AFTER_MAX``. Name resolution is the one step the deadline cannot bound
(``getaddrinfo`` takes no timeout).
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import re
import socket
import time
from dataclasses import dataclass
from datetime import timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_BODY = 4096  # bytes of an answer's body read (and discarded) at most
RETRY_AFTER_MAX = 300.0  # seconds: a Retry-After further off is waited this long
MAX_LOCATION = 300  # characters of a Location shown
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")


def redact(url: str) -> str:
    """The URL as status shows it: userinfo and query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{'***@' if '@' in parts.netloc else ''}{netloc}{parts.path}" \
           + ("?***" if parts.query else "")


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``now`` (epoch) by a ``Retry-After`` header, at most
    ``RETRY_AFTER_MAX`` (0 for a date gone by); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


@dataclass(frozen=True)
class Answer:
    """What one POST came to: ``status`` None when there was no answer (``error`` says
    why); ``retry_after`` in seconds; ``location`` redacted, for a redirect."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None
    location: str | None = None


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no complete answer within the deadline")
    return left


class _DeadlineReader(io.RawIOBase):
    """The answer's byte stream: every receive waits only for the time left."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(_time_left(self._deadline))
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """The socket ``http.client`` is handed: sends and receives bounded by the deadline.
    Its ``close`` leaves the real socket to :func:`post` (``http.client`` closes the
    connection as soon as it has the answer's head, before the body is read)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.raw, self._deadline = sock, deadline

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self.raw.settimeout(_time_left(self._deadline))
            view = view[self.raw.send(view):]

    def makefile(self, mode: str, *_args: Any, **_kwargs: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"a webhook answer is read as bytes, not {mode!r}")
        return io.BufferedReader(_DeadlineReader(self.raw, self._deadline))

    def close(self) -> None:
        """Closed by :func:`post` once the answer is read."""


class _Deadlined:
    """Mixed into ``HTTPConnection``/``HTTPSConnection``: connects (and shakes hands) in
    the time left, then hands ``http.client`` a :class:`_DeadlineSocket`."""

    bounded: _DeadlineSocket | None = None
    sock: Any

    def __init__(self, host: str, port: int | None, *, deadline: float) -> None:
        super().__init__(host, port)  # type: ignore[call-arg]
        self.deadline = deadline
        self._create_connection = self._connect_in_time  # http.client's own hook

    def _connect_in_time(self, address: Any, _timeout: Any = None,
                         source_address: Any = None) -> socket.socket:
        sock = socket.create_connection(address, _time_left(self.deadline), source_address)
        sock.settimeout(_time_left(self.deadline))  # the TLS handshake: all of it
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.bounded = _DeadlineSocket(self.sock, self.deadline)
        self.sock = self.bounded


class _HTTP(_Deadlined, http.client.HTTPConnection):
    pass


class _HTTPS(_Deadlined, http.client.HTTPSConnection):
    pass


def request_headers(url: str, extra: dict[str, str]) -> dict[str, str]:
    """``extra`` and, for a URL with userinfo, its Basic ``Authorization``."""
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": "audio-analysis", **extra}
    if parts.username:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode())
        headers["Authorization"] = "Basic " + token.decode()
    return headers


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST ``body`` to ``url``, all of it within ``timeout`` seconds (module doc)."""
    parts = urlsplit(url)
    conn = (_HTTPS if parts.scheme == "https" else _HTTP)(
        parts.hostname or "", parts.port, deadline=time.monotonic() + timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=request_headers(url, headers))
        response = conn.getresponse()
        response.read(MAX_BODY)
        return Answer(response.status, None,
                      retry_after(response.getheader("Retry-After"), time.time()),
                      _location(url, response) if 300 <= response.status < 400 else None)
    except (OSError, http.client.HTTPException) as error:
        message = str(error) or "no answer"
        return Answer(None, f"{type(error).__name__}: {message}")
    finally:
        conn.close()
        if conn.bounded is not None:
            conn.bounded.raw.close()


def _location(url: str, response: http.client.HTTPResponse) -> str | None:
    """The redirect's target, absolute and redacted (it may carry a token)."""
    location = response.getheader("Location")
    if not location:
        return None
    return redact(urljoin(url, location.strip()))[:MAX_LOCATION]

"""Webhooks: each sound event start and end POSTed as JSON to one or more URLs, from the
event store's outbox.

``daemon.py --webhook URL`` (repeatable). Every URL is a consumer of the outbox of its own
(``webhook:<first 12 hex digits of the URL's SHA-256>``: the name holds no credential a
URL may carry) with a thread of its own, so a URL that is down delays nobody else, and the
loop never waits for any. The body is the JSON of ``audio.sinks.payloads`` (the MQTT
``events`` message) with ``device``; headers ``X-Audio-Analysis-Event`` (start/end) and
``X-Audio-Analysis-Delivery`` (the row's seq: the same for a delivery sent again) and, with
``--webhook_secret`` (or ``AUDIO_ANALYSIS_WEBHOOK_SECRET``), ``X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the body>``, the signature receivers already verify.

Outcomes: 2xx delivered (the cursor moves); a network error, 408, 429 or 5xx is retried
after an exponential backoff (``backoff_initial`` doubling up to ``backoff_max``) for as
long as it takes, in order: nothing committed is skipped; any other status (a 400, a 404, a
redirect) is final: counted as ``rejected``, shown in the status with the status code, and
the cursor moves on (sending it again would be refused again). At least once: a POST
whose answer was lost, or in flight at a kill, is sent again (same delivery id).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from audio.errors import UsageError
from audio.events import Event, SoundEvent
from audio.sinks.payloads import event_payload
from audio.store import START_NOW, Record, Store, StoreError

logger = logging.getLogger("audio.webhook")

SIGNATURE_HEADER = "X-Hub-Signature-256"
RETRIED_STATUSES = frozenset({408, 429})
STOP_JOIN = 1.0
SENT_KINDS = ("start", "end")


class WebhookConfigError(UsageError, ValueError):
    """A webhook URL cannot work."""


def consumer_name(url: str) -> str:
    return f"webhook:{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body>`` (verify with ``hmac.compare_digest``)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def redact(url: str) -> str:
    """The URL as status shows it: userinfo and query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{'***@' if '@' in parts.netloc else ''}{netloc}{parts.path}" \
           + ("?***" if parts.query else "")


@dataclass(frozen=True)
class WebhookSettings:
    """The URLs and the secret (never shown: ``public()`` says only whether there is one)."""

    urls: tuple[str, ...]
    secret: str = field(default="", repr=False)
    device_id: str = ""
    timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 60.0

    def validate(self) -> WebhookSettings:
        for url in self.urls:
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018  (raises ValueError on a bad port)
            except ValueError:
                raise WebhookConfigError(f"webhook URL is malformed: {redact(url)}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise WebhookConfigError(f"a webhook URL starts with http:// or https://, "
                                         f"got {redact(url)}")
        if len(set(self.urls)) != len(self.urls):
            raise WebhookConfigError("the same webhook URL is given twice")
        return self

    def public(self) -> dict[str, Any]:
        return {"urls": [redact(u) for u in self.urls], "secret_set": bool(self.secret)}


class _Target:
    """One URL: its consumer, its thread, its counters."""

    def __init__(self, url: str, settings: WebhookSettings, store: Store) -> None:
        self.url = url
        self.settings = settings
        self.store = store
        self.name = consumer_name(url)
        self.read = store.register(self.name, START_NOW)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.state, self.last_error, self.last_status = "idle", None, None
        self.sent = self.rejected = self.retries = 0
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                rows = self.store.since(self.read, 100)
            except StoreError as error:
                self._note(last_error=str(error))
                self.stop.wait(1.0)
                continue
            if not rows:
                self._note(state="idle")
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            for row in rows:
                if self.stop.is_set() or not self._deliver(row):
                    return
                self.read = row.seq
                try:
                    self.store.advance(self.name, row.seq)
                except StoreError:
                    return  # closed under a late stop; the cursor stays where it was

    def _deliver(self, row: Record) -> bool:
        """POST the row until it is delivered or refused for good; False when stopping."""
        item = row.item
        if not isinstance(item, SoundEvent) or item.kind not in SENT_KINDS:
            return True
        body = json.dumps({**event_payload(item, row.stored),
                           "device": self.settings.device_id}).encode()
        backoff = self.settings.backoff_initial
        while not self.stop.is_set():
            self._note(state="sending")
            status, error = self._post(body, item.kind, row.seq)
            if status is not None and 200 <= status < 300:
                self._note(sent=self.sent + 1, last_status=status, last_error=None)
                return True
            if status is not None and status < 500 and status not in RETRIED_STATUSES:
                logger.warning("webhook %s refused event %d (%s): not retried",
                               redact(self.url), item.id, status)
                self._note(rejected=self.rejected + 1, last_status=status,
                           last_error=f"HTTP {status} (not retried)")
                return True
            self._note(state="retrying", retries=self.retries + 1, last_status=status,
                       last_error=error or f"HTTP {status}")
            logger.info("webhook %s: %s; retry in %.1f s", redact(self.url),
                        error or f"HTTP {status}", backoff)
            if self.stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.settings.backoff_max)
        return False

    def _post(self, body: bytes, kind: str, seq: int) -> tuple[int | None, str | None]:
        parts = urlsplit(self.url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else \
            http.client.HTTPConnection
        headers = {"Content-Type": "application/json", "User-Agent": "audio-analysis",
                   "X-Audio-Analysis-Event": kind, "X-Audio-Analysis-Delivery": str(seq)}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret, body)
        if parts.username:
            token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode())
            headers["Authorization"] = "Basic " + token.decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = cls(parts.hostname or "", parts.port, timeout=self.settings.timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, None
        except (OSError, http.client.HTTPException) as error:
            return None, f"{type(error).__name__}: {error}"
        finally:
            conn.close()

    def _note(self, **fields: Any) -> None:
        with self.lock:
            for key, value in fields.items():
                setattr(self, key, value)

    def drained(self) -> bool:
        return self.store.cursor(self.name) >= self.store.last_seq()

    def status(self) -> dict[str, Any]:
        consumer = next((c for c in self.store.consumers() if c.name == self.name), None)
        with self.lock:
            return {"url": redact(self.url), "consumer": self.name, "state": self.state,
                    "sent": self.sent, "rejected": self.rejected, "retries": self.retries,
                    "last_status": self.last_status, "last_error": self.last_error,
                    "pending": consumer.pending if consumer else None,
                    "cursor": consumer.cursor if consumer else None,
                    "duplicates": consumer.duplicates if consumer else None}


class WebhookSink:
    """The :class:`audio.events.Sink` that POSTs sound event starts and ends (module doc)."""

    def __init__(self, settings: WebhookSettings, *, store: Store) -> None:
        self.settings = settings.validate()
        self._targets = [_Target(url, settings, store) for url in settings.urls]

    def handle(self, event: Event) -> None:
        """Windows are not sent; nothing to do."""

    def handle_sound(self, record: SoundEvent) -> None:
        """Committed already: wake the senders, which read it from the store."""
        if record.kind in SENT_KINDS:
            for target in self._targets:
                target.wake.set()

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(t.drained() for t in self._targets):
                    return True
            except StoreError:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self, timeout: float = 2.0) -> None:
        self.flush(timeout)
        for target in self._targets:
            target.stop.set()
            target.wake.set()
        deadline = time.monotonic() + STOP_JOIN
        for target in self._targets:
            target.thread.join(max(0.0, deadline - time.monotonic()))

    def status(self) -> dict[str, Any]:
        try:
            targets = [t.status() for t in self._targets]
        except StoreError as error:
            return {"error": str(error), **self.settings.public()}
        return {"targets": targets, **self.settings.public(),
                "sent": sum(t["sent"] for t in targets),
                "rejected": sum(t["rejected"] for t in targets)}


def webhook_settings(urls: Iterable[str], secret: str | None, device_id: str
                     ) -> WebhookSettings:
    return WebhookSettings(tuple(urls), secret or "", device_id).validate()

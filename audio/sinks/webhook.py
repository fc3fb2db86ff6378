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

Outcomes: 2xx delivered (the cursor moves); a network error, a redirect (3xx: not
followed, so the signed body never leaves the configured URL; its ``Location`` is shown),
408, 429 or 5xx is retried after an exponential backoff (``backoff_initial`` doubling up to
``backoff_max``), or after the answer's ``Retry-After`` when that is longer (capped at
``RETRY_AFTER_MAX``), for as long as it takes, in order: nothing committed is skipped; a
``410 Gone`` disables the URL (state ``disabled (410 Gone)``): nothing more is POSTed to it
and its cursor stays on the refused event, so that the backlog goes once the URL is
configured again (the settings saved, or the daemon restarted); any other 4xx is final:
counted as ``rejected``, shown in the status with the status code, and the cursor moves on
(sending it again would be refused again). Each POST has one deadline (``timeout``) for
all of it, and reads no more than a few KB of the answer (``audio.sinks.webhook_http``).
At least once: a POST whose answer was lost, or in flight at a kill, is sent again (same
delivery id).
"""

from __future__ import annotations

import hashlib
import hmac
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
from audio.sinks.webhook_http import RETRY_AFTER_MAX, Answer, post, redact, retry_after
from audio.store import START_NOW, Record, Store, StoreError

logger = logging.getLogger("audio.webhook")

SIGNATURE_HEADER = "X-Hub-Signature-256"
RETRIED_STATUSES = frozenset({408, 429})
STOP_JOIN = 1.0
SENT_KINDS = ("start", "end")
GONE_STATE = "disabled (410 Gone)"
GONE_ERROR = ("HTTP 410 Gone: nothing more is sent to this URL until the settings change "
              "or the daemon restarts (its events wait)")
__all__ = ["RETRY_AFTER_MAX", "WebhookConfigError", "WebhookSettings", "WebhookSink",
           "consumer_name", "redact", "retry_after", "signature", "webhook_settings"]


class WebhookConfigError(UsageError, ValueError):
    """A webhook URL cannot work."""


def consumer_name(url: str) -> str:
    return f"webhook:{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body>`` (verify with ``hmac.compare_digest``)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookSettings:
    """The URLs and the secret (never shown: ``public()`` says only whether there is one);
    ``timeout``: seconds for the whole of one POST, answer included."""

    urls: tuple[str, ...]
    secret: str = field(default="", repr=False)
    device_id: str = ""
    timeout: float = 10.0
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
        self.location: str | None = None
        self.disabled = False
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
        """POST the row until it is delivered or refused for good; False when stopping or
        when the URL is gone (the cursor then stays on the row: nothing is lost)."""
        item = row.item
        if not isinstance(item, SoundEvent) or item.kind not in SENT_KINDS:
            return True
        body = json.dumps({**event_payload(item, row.stored),
                           "device": self.settings.device_id}).encode()
        headers = self._headers(body, item.kind, row.seq)
        backoff = self.settings.backoff_initial
        while not self.stop.is_set():
            self._note(state="sending")
            answer = post(self.url, body, headers, self.settings.timeout)
            settled = self._settle(answer, item.id)
            if settled is not None:
                return settled
            wait = max(backoff, answer.retry_after or 0.0)
            logger.info("webhook %s: %s; retry in %.1f s", redact(self.url),
                        self.last_error, wait)
            if self.stop.wait(wait):
                break
            backoff = min(backoff * 2, self.settings.backoff_max)
        return False

    def _settle(self, answer: Answer, event_id: int) -> bool | None:
        """Count a final answer (True: the cursor moves on; False: the URL is gone) or
        note one to retry (None)."""
        status = answer.status
        if status is not None and 200 <= status < 300:
            self._note(sent=self.sent + 1, last_status=status, last_error=None, location=None)
            return True
        if status == 410:
            logger.warning("webhook %s answered 410 Gone: disabled until the settings change "
                           "or the daemon restarts", redact(self.url))
            self._note(state=GONE_STATE, disabled=True, last_status=status,
                       last_error=GONE_ERROR, location=None)
            return False
        if status is not None and 400 <= status < 500 and status not in RETRIED_STATUSES:
            logger.warning("webhook %s refused event %d (%s): not retried",
                           redact(self.url), event_id, status)
            self._note(rejected=self.rejected + 1, last_status=status, location=None,
                       last_error=f"HTTP {status} (not retried)")
            return True
        if status is not None and 300 <= status < 400:
            error = f"HTTP {status} redirect to {answer.location or '(no Location)'} " \
                    "(not followed; retried)"
        else:
            error = answer.error or f"HTTP {status}"
        self._note(state="retrying", retries=self.retries + 1, last_status=status,
                   last_error=error, location=answer.location)
        return None

    def _headers(self, body: bytes, kind: str, seq: int) -> dict[str, str]:
        headers = {"X-Audio-Analysis-Event": kind, "X-Audio-Analysis-Delivery": str(seq)}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret, body)
        return headers

    def _note(self, **fields: Any) -> None:
        with self.lock:
            for key, value in fields.items():
                setattr(self, key, value)

    def drained(self) -> bool:
        """Nothing left to send: all delivered, or the URL is gone (nothing more goes)."""
        return self.disabled or self.store.cursor(self.name) >= self.store.last_seq()

    def status(self) -> dict[str, Any]:
        consumer = next((c for c in self.store.consumers() if c.name == self.name), None)
        with self.lock:
            return {"url": redact(self.url), "consumer": self.name, "state": self.state,
                    "sent": self.sent, "rejected": self.rejected, "retries": self.retries,
                    "last_status": self.last_status, "last_error": self.last_error,
                    "location": self.location, "disabled": self.disabled,
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
                "rejected": sum(t["rejected"] for t in targets),
                "disabled": sum(t["disabled"] for t in targets)}

    @property
    def disabled(self) -> bool:
        """Some URL answered 410 Gone (``web.home.reconfigure`` then builds it anew)."""
        return any(t.disabled for t in self._targets)


def webhook_settings(urls: Iterable[str], secret: str | None, device_id: str
                     ) -> WebhookSettings:
    return WebhookSettings(tuple(urls), secret or "", device_id).validate()

"""DeviceHive sink: one notification per classified window, and one ``soundEvent``
notification per sound event start and end, delivered once and in order.

Where the notifications come from is the sink's feed (``audio.sinks.devicehive.feeds``):
with an event store (the daemon) the store's outbox, so that nothing committed is ever
lost and delivery resumes after a restart; without one, a bounded in-memory queue whose
oldest notification is dropped and counted when it is full. Either way ``handle`` never
blocks on the network. A sender thread owns the connection
(``audio.sinks.devicehive.connection``), reconnects with exponential backoff that never
gives up, and after a reconnect settles the notification that was in flight when the
connection dropped before sending anything else. A server that refuses that lookup (a
token that may not list notifications) gets it again: delivery goes on, at least once,
and the possible duplicate is counted (``duplicates`` in the status).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from audio.events import Event, SoundEvent
from audio.sinks.devicehive.connection import (
    Ambiguous,
    Connection,
    ConnectionDead,
    LookupRefused,
    Rejected,
    describe,
)
from audio.sinks.devicehive.feeds import Feed, MemoryFeed, OutboxFeed, sends_sound
from audio.sinks.devicehive.notification import OutgoingNotification
from audio.sinks.devicehive.settings import (
    DEFAULT_NOTIFICATION_NAME,
    DEFAULT_QUEUE_SIZE,
    DeviceHiveSettings,
    redact_url,
)
from audio.store import StoreError

if TYPE_CHECKING:
    from audio.store import Store

STORE_RETRY = 1.0
"""Seconds before the sender tries again after the event store failed (a full disk)."""

# The name the logger had before DeviceHive moved under audio.sinks: the daemon's log
# lines name it, and they stay as they were.
logger = logging.getLogger("audio.devicehive")


@dataclass
class _Link:
    """The sender thread's own state: its connection, the settings it serves, its backoff.

    ``generation`` is the sink's settings generation the connection belongs to; when
    ``reconfigure`` bumps it, the connection is dropped and the backoff starts over.
    """

    connection: Connection | None = None
    generation: int = -1
    backoff: float = 0.0

    def drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def back_off(self, settings: DeviceHiveSettings) -> None:
        """Double the wait before the next try, within the settings' bounds."""
        self.backoff = min(max(self.backoff * 2, settings.backoff_initial), settings.backoff_max)


class DeviceHiveSink:
    """The :class:`audio.events.Sink` that forwards events to DeviceHive.

    ``settings=None`` means "not configured": events are ignored until ``reconfigure``.
    ``store``: deliver from this event store's outbox (the loop commits to it before the
    sink sees anything; ``queue_size`` then plays no part); without it, from memory.
    """

    def __init__(self, settings: DeviceHiveSettings | None = None, *,
                 notification_name: str = DEFAULT_NOTIFICATION_NAME,
                 legacy_format: bool = False, queue_size: int = DEFAULT_QUEUE_SIZE,
                 store: Store | None = None) -> None:
        self._defaults = (notification_name, legacy_format, queue_size)
        self._settings = self._complete(settings)
        self._cond = threading.Condition()
        self._feed: Feed = (MemoryFeed() if store is None
                            else OutboxFeed(store, self._settings))
        self._generation = 0
        self._stop = threading.Event()
        self.state = "disabled" if self._settings is None else "connecting"
        self.sent = 0
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
            self._feed.add_window(event, settings)
            self._cond.notify_all()

    def handle_sound(self, record: SoundEvent) -> None:
        """A ``start`` or ``end`` record as a ``soundEvent`` notification (``update``
        records are not sent; nor is anything in the legacy format, which had no events).

        Queued like the windows' notifications: never blocks, same order and delivery."""
        with self._cond:
            settings = self._settings
            if settings is None or not sends_sound(record, settings):
                return
            self._feed.add_sound(record, settings)
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
            self._feed.reconfigure(settings)
            self._cond.notify_all()

    def report_error(self, message: str) -> None:
        """Show a problem found outside the sink (e.g. an unusable saved configuration)."""
        self._set(last_error=message)

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._feed.backlog():
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
                **self._feed.status(),  # queued, dropped, duplicates, outbox (or None)
                "rejected": self.rejected,
                "reconnects": self.reconnects,
                "last_error": self.last_error,
                "connected_since": self.connected_since,
                "url": redact_url(settings.url) if settings else None,
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
        """Connect, send one notification at a time, reconnect; until ``close``."""
        link = _Link()
        while not self._stop.is_set():
            try:
                self._step(link)
            except StoreError as error:  # the disk, or the store closed under a late stop
                if self._stop.is_set():
                    break
                logger.error("DeviceHive: %s", error)
                link.drop()
                self._set(state="disconnected", last_error=str(error))
                self._wait_interruptible(STORE_RETRY, link.generation)
        link.drop()
        self._set(state="stopped")

    def _step(self, link: _Link) -> None:
        settings = self._settings_for(link)
        if settings is None:
            return
        connection = link.connection
        if connection is None:
            connection = self._connect(link, settings)
            if connection is None:
                return
        note = self._take(link, connection, settings)
        if note is not None:
            self._deliver(link, connection, settings, note)

    def _settings_for(self, link: _Link) -> DeviceHiveSettings | None:
        """The settings to serve; a new generation drops the connection and the backoff.

        With no settings it waits for a change and returns None (the loop starts over).
        """
        with self._cond:
            settings = self._settings
            if self._generation != link.generation:
                link.generation = self._generation
                link.backoff = 0.0
                link.drop()
            if settings is None:
                self._cond.wait()
            return settings

    def _connect(self, link: _Link, settings: DeviceHiveSettings) -> Connection | None:
        """Open a connection after the backoff and settle the uncertain notification.

        None when there is none to use (stopping, new settings, or the attempt failed:
        the error is logged and shown, and the backoff grows).
        """
        if link.backoff:
            self._wait_interruptible(link.backoff, link.generation)
            if self._stop.is_set() or self._generation != link.generation:
                return None
        self._set(state="connecting")
        try:
            connection = link.connection = Connection(settings, self._stop)
            connection.wait_ready()
            self._resolve_uncertain(connection)
        except StoreError:
            raise
        except (ConnectionDead, Ambiguous) as error:
            link.drop()
            link.back_off(settings)
            if not self._stop.is_set():
                logger.warning("DeviceHive: cannot connect to %s: %s (retry in %.1f s)",
                               redact_url(settings.url), error, link.backoff)
            self._set(state="disconnected", last_error=str(error))
            return None
        except Exception as error:  # library bug or bad input: never kill the thread
            logger.exception("DeviceHive: unexpected error while connecting")
            link.drop()
            link.back_off(settings)
            self._set(state="disconnected", last_error=describe(error))
            return None
        link.backoff = 0.0
        logger.info("DeviceHive: connected to %s as device %s",
                    redact_url(settings.url), settings.device_id)
        self._set(state="connected", last_error=None, connected_since=time.time())
        return connection

    def _take(self, link: _Link, connection: Connection,
              settings: DeviceHiveSettings) -> OutgoingNotification | None:
        """The next notification to send, now in flight; waits while the queue is empty.

        None when the loop must start over: stopping, new settings, or the connection
        died while idle (then it is dropped as lost).
        """
        with self._cond:
            while not self._feed.ready() and not self._stop.is_set() \
                    and self._generation == link.generation:
                if not connection.alive():
                    break
                self._cond.wait(0.5)
            if self._stop.is_set() or self._generation != link.generation:
                return None
            note = self._feed.take() if connection.alive() else None
        if note is None:  # the connection died while idle
            self._lose(link, connection.failure(), settings)
        return note

    def _deliver(self, link: _Link, connection: Connection, settings: DeviceHiveSettings,
                 note: OutgoingNotification) -> None:
        """Send the notification in flight and account for the outcome."""
        try:
            connection.send(note)
        except Rejected as error:
            logger.warning("DeviceHive refused notification %d: %s", note.seq, error)
            self._finish(note, rejected=True, error=str(error))
        except (Ambiguous, ConnectionDead) as error:
            self._put_back(note, uncertain=isinstance(error, Ambiguous))
            self._lose(link, str(error), settings)
        except Exception as error:
            logger.exception("DeviceHive: unexpected error while sending")
            self._put_back(note, uncertain=True)
            self._lose(link, describe(error), settings)
        else:
            self._finish(note)

    def _put_back(self, note: OutgoingNotification, uncertain: bool) -> None:
        """A failed send: settle after reconnecting (``uncertain``) or send again first."""
        with self._cond:
            self._feed.put_back(note, uncertain)

    def _lose(self, link: _Link, error: str, settings: DeviceHiveSettings) -> None:
        """Drop a connection that failed; the next one is tried after the first backoff."""
        link.drop()
        self._lost(error, settings)
        link.backoff = settings.backoff_initial

    def _lost(self, error: str, settings: DeviceHiveSettings) -> None:
        if not self._stop.is_set():  # closing abandons the connection: nothing was lost
            logger.warning("DeviceHive: connection to %s lost: %s",
                           redact_url(settings.url), error)
        self._set(state="disconnected", last_error=error, connected_since=None,
                  reconnects=self.reconnects + 1)

    def _finish(self, note: OutgoingNotification, rejected: bool = False,
                error: str | None = None) -> None:
        with self._cond:
            self._feed.done(note)
            if rejected:
                self.rejected += 1
                self.last_error = error
            else:
                self.sent += 1
            self._cond.notify_all()

    def _resolve_uncertain(self, connection: Connection) -> None:
        """After a reconnect: was the notification in flight stored? Re-queue it if not."""
        with self._cond:
            note = self._feed.uncertain()
        if note is None:
            return
        try:
            stored = connection.was_stored(note)
        except LookupRefused as error:  # never ask again: re-send, at least once
            logger.warning("DeviceHive: cannot check whether notification %d was stored "
                           "(%s); re-sending it, possibly a duplicate", note.seq, error)
            stored = None
        with self._cond:
            self._feed.settle(note, stored)
            self.sent += bool(stored)
            self._cond.notify_all()
        if stored is not None:
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

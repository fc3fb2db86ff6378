"""Where the DeviceHive sink's notifications come from: its own memory, or the event store.

The sender thread (``audio.sinks.devicehive.sink``) sends one notification at a time and
sees the same few operations either way: what is ready, take the next one (now in flight),
done with it (the server confirmed it, or refused it for good), put it back (the send
failed: definitely not stored, or uncertain), and settle the uncertain one after a
reconnect (stored, not stored, or unknown because the server refused the lookup).

``MemoryFeed`` (library use, no store): the loop's thread builds each notification as it
hands over the window or record, into a bounded deque; beyond ``queue_size`` the oldest is
dropped and counted. Everything queued is lost when the process ends.

``OutboxFeed`` (the daemon): the loop has committed every row before the sink hears of it,
so the loop's thread only wakes the sender. The sender reads the rows after its position
in order, as consumer ``devicehive`` of the store's outbox, builds their notifications,
and moves the consumer's cursor only when the server has confirmed one (or refused it for
good): a row is never lost, whatever happens to the process, and after a restart delivery
resumes from the cursor. The first row after the cursor at start may have been sent by
the process that ended (killed in the middle of a send), so it starts uncertain and is
looked up on the first connection like any in-flight notification: exactly once when the
server answers the lookup; when it refuses it (403) the row is sent again and the possible
duplicate counted in the store (``duplicates`` in the status, kept across restarts).

Notifications are built from the rows alone, the same way in every process, so that the
one looked up after a restart is exactly the one the killed process may have sent: its
client timestamp is the row's own time (a window's end, a sound event's start or end)
and its parameters carry ``id`` (a window's seq; a sound event's id with its ``kind``),
which is what the lookup recognises it by (``Connection.was_stored``). (In memory the
timestamps are instead made strictly increasing, which is what recognised a notification
before it carried an id, and still does for the legacy format.)

Every method is called with the sink's condition held.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

from audio.events import Event, SoundEvent
from audio.sinks.devicehive.notification import (
    OutgoingNotification,
    build_notification,
    build_sound_notification,
    format_timestamp,
)
from audio.sinks.devicehive.settings import DeviceHiveSettings
from audio.store import START_NOW, ConsumerStatus, Record, Store

CONSUMER = "devicehive"
"""The sink's name as a consumer of the store's outbox."""
READ_BATCH = 100
"""Rows read from the store at a time."""


def sends_sound(record: SoundEvent, settings: DeviceHiveSettings) -> bool:
    """Only starts and ends are sent (not updates), and nothing in the legacy format,
    which had no sound events."""
    return record.kind in ("start", "end") and not settings.legacy_format


class _Stamps:
    """Client timestamps, strictly increasing with millisecond precision."""

    def __init__(self) -> None:
        self._last_ms = 0

    def __call__(self, seconds: float) -> str:
        ms = max(round(seconds * 1000), self._last_ms + 1)
        self._last_ms = ms
        return format_timestamp(ms)


def _row_stamp(seconds: float) -> str:
    return format_timestamp(round(seconds * 1000))


def _sound_clock(record: SoundEvent, fallback: float) -> float:
    clock = record.start_time if record.kind == "start" else record.end_time
    return fallback if clock is None else clock


class Feed(Protocol):
    def add_window(self, event: Event, settings: DeviceHiveSettings) -> None: ...

    def add_sound(self, record: SoundEvent, settings: DeviceHiveSettings) -> None: ...

    def ready(self) -> bool: ...

    def take(self) -> OutgoingNotification | None: ...

    def done(self, note: OutgoingNotification) -> None: ...

    def put_back(self, note: OutgoingNotification, uncertain: bool) -> None: ...

    def uncertain(self) -> OutgoingNotification | None: ...

    def settle(self, note: OutgoingNotification, stored: bool | None) -> None: ...

    def backlog(self) -> int: ...

    def reconfigure(self, settings: DeviceHiveSettings | None) -> None: ...

    def status(self) -> dict[str, Any]: ...


class MemoryFeed:
    """A bounded in-memory queue (see the module's docstring)."""

    def __init__(self) -> None:
        self._queue: deque[OutgoingNotification] = deque()
        self._inflight: OutgoingNotification | None = None
        self._uncertain: OutgoingNotification | None = None
        self._seq = 0
        self._stamp = _Stamps()
        self.dropped = 0
        self.duplicates = 0

    def add_window(self, event: Event, settings: DeviceHiveSettings) -> None:
        self._seq += 1
        self._add(build_notification(event, self._seq, self._stamp(event.timestamp),
                                     settings.notification_name, settings.legacy_format),
                  settings)

    def add_sound(self, record: SoundEvent, settings: DeviceHiveSettings) -> None:
        if not sends_sound(record, settings):
            return
        self._seq += 1
        self._add(build_sound_notification(
            record, self._seq, self._stamp(_sound_clock(record, time.time()))), settings)

    def _add(self, note: OutgoingNotification, settings: DeviceHiveSettings) -> None:
        self._queue.append(note)
        while len(self._queue) + (self._inflight is not None) > settings.queue_size:
            self._queue.popleft()
            self.dropped += 1

    def ready(self) -> bool:
        return bool(self._queue)

    def take(self) -> OutgoingNotification | None:
        self._inflight = self._queue.popleft() if self._queue else None
        return self._inflight

    def done(self, note: OutgoingNotification) -> None:
        self._inflight = None

    def put_back(self, note: OutgoingNotification, uncertain: bool) -> None:
        self._inflight = None
        if uncertain:
            self._uncertain = note
        else:
            self._queue.appendleft(note)

    def uncertain(self) -> OutgoingNotification | None:
        return self._uncertain

    def settle(self, note: OutgoingNotification, stored: bool | None) -> None:
        self._uncertain = None
        if not stored:
            self._queue.appendleft(note)
            self.duplicates += stored is None

    def backlog(self) -> int:
        return len(self._queue) + (self._inflight is not None) + (self._uncertain is not None)

    def reconfigure(self, settings: DeviceHiveSettings | None) -> None:
        if settings is None:
            self._queue.clear()
            self._uncertain = None

    def status(self) -> dict[str, Any]:
        return {"queued": self.backlog(), "dropped": self.dropped,
                "duplicates": self.duplicates}


class OutboxFeed:
    """Consumer ``name`` of ``store``'s outbox (see the module's docstring).

    ``settings`` None: not configured (not registered as a consumer either); with settings
    the consumer is registered at once, from now on when it is new (so a store's history
    is not sent to a server configured later), from its cursor when it exists.
    Disabling the sink (``reconfigure(None)``) removes the consumer: a disabled sink must
    not hold back the pruning; enabling it again starts from then.
    """

    def __init__(self, store: Store, settings: DeviceHiveSettings | None,
                 name: str = CONSUMER) -> None:
        self.store = store
        self.name = name
        self._settings: DeviceHiveSettings | None = None
        self._buffer: deque[OutgoingNotification] = deque()
        self._inflight: OutgoingNotification | None = None
        self._uncertain: OutgoingNotification | None = None
        self._read = 0
        """The last seq read into the buffer (or in flight, or uncertain)."""
        self.reconfigure(settings)

    # -- reading the outbox --------------------------------------------------------------
    def _open(self, settings: DeviceHiveSettings) -> None:
        """Register; what follows the cursor may have been sent by the last process."""
        self._settings = settings
        self._read = self.store.register(self.name, START_NOW)
        self._refill()
        if self._buffer:
            self._uncertain = self._buffer.popleft()

    def _note(self, record: Record) -> OutgoingNotification | None:
        settings, item = self._settings, record.item
        if settings is None:
            return None
        if isinstance(item, Event):
            return build_notification(item, record.seq, _row_stamp(item.timestamp),
                                      settings.notification_name, settings.legacy_format)
        if not sends_sound(item, settings):
            return None
        return build_sound_notification(
            item, record.seq, _row_stamp(_sound_clock(item, record.stored)))

    def _refill(self) -> None:
        """Read the next rows that have a notification; rows with none (sound updates,
        any sound in the legacy format) are passed over, the cursor moved past them."""
        while not self._buffer:
            rows = self.store.since(self._read, READ_BATCH)
            if not rows:
                return
            self._read = rows[-1].seq
            notes = [note for note in map(self._note, rows) if note is not None]
            if notes:
                self._buffer.extend(notes)
            elif self._inflight is None and self._uncertain is None:
                self.store.advance(self.name, self._read)

    # -- the sender's operations ---------------------------------------------------------
    def add_window(self, event: Event, settings: DeviceHiveSettings) -> None:
        """Nothing to do: the loop has committed it; the sender reads it from the store."""

    def add_sound(self, record: SoundEvent, settings: DeviceHiveSettings) -> None:
        """Nothing to do (as ``add_window``)."""

    def ready(self) -> bool:
        if self._settings is None or self._inflight is not None or self._uncertain is not None:
            return False
        self._refill()
        return bool(self._buffer)

    def take(self) -> OutgoingNotification | None:
        self._inflight = self._buffer.popleft() if self.ready() else None
        return self._inflight

    def done(self, note: OutgoingNotification) -> None:
        """Delivered or refused for good: the cursor moves past it, and past the rows
        without a notification read after it when nothing else is waiting."""
        self._inflight = None
        if self._settings is not None:  # else disabled meanwhile: the consumer is gone
            self.store.advance(self.name, note.seq if self._buffer else self._read)

    def put_back(self, note: OutgoingNotification, uncertain: bool) -> None:
        self._inflight = None
        if uncertain:
            self._uncertain = note
        else:
            self._buffer.appendleft(note)

    def uncertain(self) -> OutgoingNotification | None:
        return self._uncertain

    def settle(self, note: OutgoingNotification, stored: bool | None) -> None:
        self._uncertain = None
        if stored:
            self.done(note)
            return
        if self._settings is None:
            return
        self._buffer.appendleft(note)
        if stored is None:
            self.store.count_duplicates(self.name)

    def consumer(self) -> ConsumerStatus | None:
        return next((c for c in self.store.consumers() if c.name == self.name), None)

    def backlog(self) -> int:
        consumer = self.consumer() if self._settings is not None else None
        return 0 if consumer is None else consumer.pending

    def reconfigure(self, settings: DeviceHiveSettings | None) -> None:
        """New settings: the notifications not yet sent are built again for them (name,
        format); none: the consumer is removed (see the class's docstring)."""
        if settings is None:
            if self._settings is not None:
                self.store.remove_consumer(self.name)
            self._settings = None
            self._buffer.clear()
            self._uncertain = None
            return
        if self._settings is None:
            self._open(settings)
            return
        self._settings = settings
        self._buffer.clear()
        held = self._inflight or self._uncertain
        self._read = held.seq if held is not None else self.store.cursor(self.name)

    def status(self) -> dict[str, Any]:
        consumer = self.consumer() if self._settings is not None else None
        if consumer is None:
            return {"queued": 0, "dropped": 0, "duplicates": 0, "outbox": None}
        return {"queued": consumer.pending, "dropped": 0, "duplicates": consumer.duplicates,
                "outbox": {"consumer": self.name, "cursor": consumer.cursor,
                           "pending": consumer.pending, "duplicates": consumer.duplicates,
                           "lost": consumer.lost}}

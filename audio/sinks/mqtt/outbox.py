"""The MQTT sink's side of the event store's outbox: rows to messages, messages in flight,
and the cursor moved only once the broker has acknowledged them (PUBACK).

Consumer ``mqtt`` reads the rows after its cursor in order. A sound event row becomes its
``<base>/events`` message (every kind) and, for a ``start`` of a listened sound, its
``<base>/sound_event`` message, both QoS 1; a window row becomes nothing (predictions are
live data, published at QoS 0 as they come, not from the outbox). The rows published and
not yet acknowledged are "in flight", in order; the cursor moves to the last row whose
messages, and every earlier row's, were acknowledged. So a row is never lost: after a
broker restart paho sends the unacknowledged messages again on the same session, and
after a ``kill -9`` the next process sends again everything after the cursor. Delivery is
at least once; a duplicate carries the same event ``id``.

Rows sent again on a new connection because their acknowledgement had not come are
counted as possible duplicates in the store (``duplicates``, kept across restarts).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from audio.events import SoundEvent
from audio.sinks.mqtt.topics import Topics, dumps, sound_event_payload, sound_slug
from audio.sinks.payloads import event_payload
from audio.store import START_NOW, Record, Store

CONSUMER = "mqtt"
READ_BATCH = 100
MAX_IN_FLIGHT = 16
"""QoS 1 messages published and not yet acknowledged, at most (paho's own limit is set
above it, so that none waits in paho's queue, from which it would resend out of order)."""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = False


@dataclass
class Flight:
    """One row on its way: its seq, and the handles of its published messages
    (``acked(handle)`` says whether the broker acknowledged one)."""

    seq: int
    handles: list[Any] = field(default_factory=list)
    generation: int = 0


def row_messages(record: Record, topics: Topics, listened: Collection[str]) -> list[Message]:
    """What one row of the log becomes on the broker (module docstring)."""
    item = record.item
    if not isinstance(item, SoundEvent):
        return []
    out = [Message(topics.events, dumps(event_payload(item, record.stored)))]
    if item.kind == "start" and sound_slug(item.sound) in listened:
        out.append(Message(topics.sound_event, dumps(sound_event_payload(item))))
    return out


class Outbox:
    """Consumer ``name`` of ``store``; used on the sender thread only."""

    def __init__(self, store: Store, name: str = CONSUMER) -> None:
        self.store = store
        self.name = name
        self.read = store.register(name, START_NOW)
        """The last seq read (published, or passed over)."""
        self.flights: deque[Flight] = deque()
        self.sent = 0

    def in_flight(self) -> int:
        return sum(len(f.handles) for f in self.flights)

    def rows(self) -> list[Record]:
        """The next rows to publish, oldest first."""
        return self.store.since(self.read, READ_BATCH)

    def launched(self, seq: int, handles: list[Any], generation: int) -> None:
        self.read = seq
        self.flights.append(Flight(seq, handles, generation))

    def settle(self, acked: Callable[[Any], bool]) -> int:
        """Pop the acknowledged rows at the head; move the cursor past them. Returns how
        many rows with messages were confirmed."""
        last, confirmed = None, 0
        while self.flights and all(acked(h) for h in self.flights[0].handles):
            flight = self.flights.popleft()
            last = flight.seq
            confirmed += bool(flight.handles)
        if last is not None:
            self.store.advance(self.name, last)
            self.sent += confirmed
        return confirmed

    def resent(self, generation: int) -> int:
        """A new connection: the rows still in flight from an older one are sent again by
        paho (possible duplicates, counted in the store). Returns their number."""
        old = [f for f in self.flights if f.generation != generation and f.handles]
        for flight in self.flights:
            flight.generation = generation
        if old:
            self.store.count_duplicates(self.name, len(old))
        return len(old)

    def old_in_flight(self, generation: int) -> bool:
        return any(f.generation != generation and f.handles for f in self.flights)

    def drained(self) -> bool:
        """Everything committed so far is confirmed."""
        return not self.flights and self.store.cursor(self.name) >= self.store.last_seq()

    def status(self) -> dict[str, Any]:
        consumer = next((c for c in self.store.consumers() if c.name == self.name), None)
        if consumer is None:
            return {"consumer": self.name, "cursor": None, "pending": 0, "duplicates": 0,
                    "lost": 0}
        return {"consumer": self.name, "cursor": consumer.cursor,
                "pending": consumer.pending, "duplicates": consumer.duplicates,
                "lost": consumer.lost}

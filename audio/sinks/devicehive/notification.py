"""The wire form of a notification, and the timestamps that make each one unique.

Each notification carries a client timestamp, strictly increasing with millisecond
precision, so that after a reconnect the sink can tell whether the one in flight was
stored (``Connection.was_stored``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from audio.events import Event, SoundEvent

SOUND_NOTIFICATION_NAME = "soundEvent"
"""The name of the notifications that carry sound event records."""


def format_timestamp(ms: int) -> str:
    """DeviceHive's ``yyyy-MM-ddTHH:mm:ss.SSS`` (UTC) for a time in unix milliseconds."""
    when = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"


def parse_ms(stamp: str) -> int:
    """Unix milliseconds of a DeviceHive timestamp (the inverse of ``format_timestamp``)."""
    when = dt.datetime.strptime(stamp[:23], "%Y-%m-%dT%H:%M:%S.%f")
    return round(when.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


@dataclass(frozen=True)
class OutgoingNotification:
    """A notification ready to send; ``timestamp`` is unique per sink (see module doc)."""

    seq: int
    name: str
    parameters: dict[str, Any] | None
    timestamp: str


def build_notification(event: Event, seq: int, timestamp: str, name: str,
                       legacy: bool) -> OutgoingNotification:
    """The wire form: the original's JSON-list name, or ``name`` + structured parameters:
    the window's ``id`` (in the daemon the event store's seq, unique across restarts: a
    receiver can drop a duplicate by it), its predictions, timestamp and span."""
    predictions = [p.as_dict() for p in event.predictions]
    if legacy:
        legacy_name = json.dumps([[p["label"], p["score"]] for p in predictions])
        return OutgoingNotification(seq, legacy_name, None, timestamp)
    parameters = {"id": event.id, "predictions": predictions, "timestamp": timestamp,
                  "window": {"start": round(event.start, 3), "end": round(event.end, 3)}}
    return OutgoingNotification(seq, name, parameters, timestamp)


def build_sound_notification(record: SoundEvent, seq: int, timestamp: str,
                             ) -> OutgoingNotification:
    """A sound event record as ``soundEvent`` with the record's fields as parameters (its
    kind, id, sound, classes, start/end, scores, levels, source, wall-clock times)."""
    parameters = {**record.as_dict(), "timestamp": timestamp}
    return OutgoingNotification(seq, SOUND_NOTIFICATION_NAME, parameters, timestamp)

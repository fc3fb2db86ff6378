"""The JSON form of a sound event change, shared by the home automation sinks (MQTT's
``<base>/events`` and the webhooks' POST body), so that a receiver parses one shape.

``{"type": "start"|"update"|"end", "id", "sound", "classes", "start", "end",
"timestamp", "score", "peak_score", "dbfs", "source"}``:

* ``id``: the event's id (the event store's seq of its ``start`` record): the same in the
  ``start``, ``update`` and ``end`` messages of one event, in ``/api/sounds``, the log and
  DeviceHive; a message delivered twice (at least once delivery) carries the same id.
* ``start``/``end``: seconds from the start of the source (the stream, or the file).
* ``timestamp``: wall-clock time (unix seconds) of this change: when the sound started for
  a ``start``, when it was last heard for an ``update`` or ``end``; the time the record
  was stored when the source gave no wall clock.
* ``score``: the mean score over the event's frames so far; ``peak_score``: the highest.
* ``dbfs``: the loudest frame's RMS level in dBFS (0 = full scale; silence -120).
* ``synthetic`` (only in an ``end`` the daemon made up: ``"store_overflow"``, the event
  store could not be written for so long that the event's own end was lost;
  ``"unfinished"``, an earlier run could not end it (killed, or stopped while the store
  could not be written) and this run's start closed it; either way so that no sensor
  stays on).
"""

from __future__ import annotations

from typing import Any

from audio.events import SoundEvent


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def event_timestamp(record: SoundEvent, fallback: float) -> float:
    """The wall-clock time of this change (module docstring)."""
    clock = record.start_time if record.kind == "start" else record.end_time
    return fallback if clock is None else clock


def event_payload(record: SoundEvent, stored: float) -> dict[str, Any]:
    """The message for one sound event record; ``stored``: its row's time (the fallback
    for ``timestamp``)."""
    return {"type": record.kind, "id": record.id, "sound": record.sound,
            "classes": list(record.classes), "start": _round(record.start, 3),
            "end": _round(record.end, 3),
            "timestamp": _round(event_timestamp(record, stored), 3),
            "score": _round(record.mean_score, 4), "peak_score": _round(record.peak_score, 4),
            "dbfs": _round(record.peak_dbfs, 1), "source": record.source,
            **({} if record.synthetic is None else {"synthetic": record.synthetic})}

"""What one row of the log holds, and its encoding.

A row is a window prediction (:class:`audio.events.Event`, kind ``window``) or a sound
event record (:class:`audio.detect.SoundEvent`, kind ``sound``), stored as compact JSON.
The encoding keeps every field exactly (scores are not rounded as ``as_dict()`` rounds
them for display), so what a sink reads back after a restart equals what the loop
stored: a resend after a crash sends the same notification.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Union

from audio.detect import SoundEvent
from audio.events import Event, Prediction

WINDOW = "window"
SOUND = "sound"
KINDS = (WINDOW, SOUND)

Item = Union[Event, SoundEvent]  # noqa: UP007 (a runtime alias: isinstance needs the classes)


@dataclass(frozen=True)
class Record:
    """One row: ``seq`` is the store's id (monotonic across both kinds and restarts, never
    reused); ``stored`` is the store's clock (unix seconds) when it was appended."""

    seq: int
    kind: str
    stored: float
    item: Item

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the item's own ``as_dict()`` with ``seq``, ``record`` (the kind;
        a sound event's ``kind`` is its phase) and ``stored`` added."""
        return {"seq": self.seq, "record": self.kind, "stored": self.stored,
                **self.item.as_dict()}


def kind_of(item: Item) -> str:
    if isinstance(item, Event):
        return WINDOW
    if isinstance(item, SoundEvent):
        return SOUND
    raise TypeError(f"the event store keeps Event and SoundEvent, not {type(item).__name__}")


def encode(item: Item) -> tuple[str, str]:
    """``(kind, body)`` for a row (NaN, should a score be one, is kept as JSON's ``NaN``)."""
    data: dict[str, object]
    if isinstance(item, Event):
        kind = WINDOW
        data = {
            "id": int(item.id), "timestamp": float(item.timestamp),
            "start": float(item.start), "end": float(item.end), "source": item.source,
            "sample_rate": int(item.sample_rate),
            "predictions": [[p.label, float(p.score)] for p in item.predictions],
        }
    else:
        kind = kind_of(item)
        data = asdict(item)
        data["classes"] = list(item.classes)
        if item.synthetic is None:
            del data["synthetic"]  # rows of detector records stay as they were
    return kind, json.dumps(data, separators=(",", ":"))


def decode(seq: int, kind: str, stored: float, body: str) -> Record:
    data = json.loads(body)
    item: Item
    if kind == WINDOW:
        predictions = tuple(Prediction(label, score) for label, score in data.pop("predictions"))
        item = Event(predictions=predictions, **data)
    else:
        data["classes"] = tuple(data["classes"])
        item = SoundEvent(**data)
    return Record(seq=seq, kind=kind, stored=stored, item=item)

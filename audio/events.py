"""The values that flow out of the processing loop, and the sink contract.

Everything downstream of the pipeline (log lines, wav files, the web page, DeviceHive,
MQTT) sees only these types: ``Event`` (one classified window, with its ranked
``Prediction`` s) and ``SoundEvent`` (a ``start``/``update``/``end`` record of a sound
event, from ``audio.detect``; re-exported here so that sinks import every type they
receive from one place).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from audio.detect import SoundEvent

__all__ = ["Event", "Prediction", "Sink", "SoundEvent"]


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": round(float(self.score), 6)}


@dataclass(frozen=True)
class Event:
    """One classified window of audio.

    ``id`` is given by the loop (``audio.commit``): 1, 2, 3... per run, or, with the
    daemon's event store, the window's row seq, monotonic across restarts.
    ``timestamp`` is the wall-clock (unix seconds) time the window *ended*;
    ``start``/``end`` are seconds from the start of the source (stream or file).
    ``audio`` is the window's 16 kHz mono float32 waveform in [-1, 1] when the
    source provides it (sinks that save wav files need it), else None.
    """

    id: int
    timestamp: float
    start: float
    end: float
    predictions: tuple[Prediction, ...]
    source: str = ""
    sample_rate: int = 16000
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (without the audio)."""
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "start": self.start,
            "end": self.end,
            "source": self.source,
            "predictions": [p.as_dict() for p in self.predictions],
        }


@runtime_checkable
class Sink(Protocol):
    """Receives every event of the loop, in order, on the loop's thread.

    ``handle`` gets each classified window; ``handle_sound`` each sound event record
    (``start``, ``update``, ``end``) when the loop follows sounds, as soon as the
    detector emits it, so a record usually arrives before the window that holds its
    audio. Neither may block on the network: sinks that talk to servers queue the value
    and do their I/O on their own thread. An exception raised by either is logged and
    counted by the loop, which goes on with the other sinks and the next value.
    """

    def handle(self, event: Event) -> None: ...

    def handle_sound(self, record: SoundEvent) -> None: ...

    def close(self) -> None: ...

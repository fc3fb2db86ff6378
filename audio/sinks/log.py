"""The sink that logs one line of predictions per classified window (``capture.py``), and
one line per sound event start and end."""

from __future__ import annotations

import logging
from pathlib import PurePath

from audio.events import Event, SoundEvent


def _format(event: Event) -> str:
    if not event.predictions:
        return "no class above the threshold"
    return ", ".join(f"{p.label}: {p.score:.2f}" for p in event.predictions)


def format_sound(record: SoundEvent) -> str:
    """``Event start: dog at 12.40 s (peak 0.83, -18 dBFS, #3)`` or
    ``Event end: dog 12.40-15.10 s (peak 0.83, mean 0.61, -18 dBFS, #3)``."""
    if record.kind == "start":
        return (f"Event start: {record.sound} at {record.start:.2f} s "
                f"(peak {record.peak_score:.2f}, {record.peak_dbfs:.0f} dBFS, #{record.id})")
    return (f"Event {record.kind}: {record.sound} {record.start:.2f}-{record.end:.2f} s "
            f"(peak {record.peak_score:.2f}, mean {record.mean_score:.2f}, "
            f"{record.peak_dbfs:.0f} dBFS, #{record.id})")


class LogSink:
    """Logs ``Predictions: Speech: 0.75, Music: 0.12`` for every window (the original's line)
    and ``Event start: ...`` / ``Event end: ...`` for every sound event; ``update`` records
    go to the debug level, so that a long event still gives one line at each end.

    ``predictions=False`` logs the sound events only (``daemon.py --quiet``: a daemon that
    runs for months should not have to write a line every second to say what it heard).
    ``name_source=True`` puts the file name in the line (``Predictions [a.wav
    0.00-4.00 s]``): with ``daemon.py --source DIR`` every file restarts at 0.00 s.
    """

    def __init__(self, log: logging.Logger | None = None, level: int = logging.INFO, *,
                 predictions: bool = True, name_source: bool = False) -> None:
        self._log = log or logging.getLogger("audio_analysis.capture")
        self._level = level
        self._predictions = predictions
        self._name_source = name_source

    def handle(self, event: Event) -> None:
        if not self._predictions:
            return
        source = f"{PurePath(event.source).name} " if self._name_source and event.source else ""
        self._log.log(self._level, "Predictions [%s%.2f-%.2f s]: %s", source, event.start,
                      event.end, _format(event))

    def handle_sound(self, record: SoundEvent) -> None:
        level = logging.DEBUG if record.kind == "update" else self._level
        self._log.log(level, "%s", format_sound(record))

    def close(self) -> None:
        pass

"""The sink that logs one line of predictions per classified window (``capture.py``)."""

from __future__ import annotations

import logging

from audio.events import Event


def _format(event: Event) -> str:
    if not event.predictions:
        return "no class above the threshold"
    return ", ".join(f"{p.label}: {p.score:.2f}" for p in event.predictions)


class LogSink:
    """Logs ``Predictions: Speech: 0.75, Music: 0.12`` for every window (the original's line)."""

    def __init__(self, log: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self._log = log or logging.getLogger("audio_analysis.capture")
        self._level = level

    def handle(self, event: Event) -> None:
        self._log.log(self._level, "Predictions [%.2f-%.2f s]: %s", event.start, event.end,
                      _format(event))

    def close(self) -> None:
        pass

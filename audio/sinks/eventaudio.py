"""The sink that saves each sound event's audio, with context (``capture.py --save_events``).

Sound event records reach the sinks as soon as the detector emits them, while the audio
arrives with the classified windows (``Event.audio``), up to a window later; in a file
stream without real-time pacing the order can also be the other way round. The sink
therefore keeps a short history of the windows' audio (``HISTORY_SECONDS``), so that a
``start`` record finds the second of context before the sound, and collects the audio of
each open event from the windows as they come, until one second after its ``end``.

Memory stays bounded: the history holds ``HISTORY_SECONDS`` of audio, and an event's
recording at most ``MAX_EVENT_SECONDS`` (context included); a longer event (an hour of
music) is saved when it reaches the cap, truncated to its first ``MAX_EVENT_SECONDS``,
and a line says so.

Files are ``event_<id>_<sound>_<unix time>.wav`` (16-bit PCM, 16 kHz): the event id, the
sound's name in lower case with anything but letters and digits turned into ``-``, and
the wall-clock second at which the sound started (the time the file was written when
the source has no clock); ``_1``, ``_2``... when a name is taken.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio.events import Event, SoundEvent
from audio.sinks.wav import check_save_directory, save_unique

logger = logging.getLogger("audio.sinks")

CONTEXT_SECONDS = 1.0
"""Audio saved before an event's start and after its end."""
HISTORY_SECONDS = 10.0
"""Audio kept after it was delivered, for ``start`` records that come after their audio
(detection needs a frame or two, VGGish's scoring context more)."""
MAX_EVENT_SECONDS = 120.0
"""The most audio saved for one event, context included (7.7 MB of float32 at 16 kHz)."""


@dataclass
class _Recording:
    """The audio of one event being collected, in samples from the start of its source."""

    record: SoundEvent
    first: int
    stop: int | None = None
    """One past the last sample wanted; None until the ``end`` record comes."""
    parts: list[np.ndarray] = field(default_factory=list)
    until: int = 0
    """One past the last sample collected."""


def _stem(record: SoundEvent) -> str:
    sound = re.sub(r"[^0-9a-z]+", "-", record.sound.lower()).strip("-") or "sound"
    when = record.start_time if record.start_time is not None else time.time()
    return f"event_{record.id}_{sound}_{when:.0f}"


class EventAudioSink:
    """Saves every sound event's audio with ``context`` seconds on each side in a directory.

    Args:
      directory: an existing directory (``SaveDirectoryError`` otherwise).
      context: seconds of audio saved before the start and after the end.
      max_seconds: cap of one event's audio (see the module docstring).
      history: seconds of delivered audio kept for late ``start`` records.
    """

    def __init__(self, directory: str | os.PathLike[str], *, context: float = CONTEXT_SECONDS,
                 max_seconds: float = MAX_EVENT_SECONDS, history: float = HISTORY_SECONDS,
                 ) -> None:
        self.directory = check_save_directory(directory)
        self.context, self.max_seconds, self.history = context, max_seconds, history
        self.saved: list[Path] = []
        self.failed = 0
        self._rate = 16000
        self._source: str | None = None
        self._pieces: deque[tuple[int, np.ndarray]] = deque()  # (first sample, audio)
        self._open: dict[int, _Recording] = {}

    # -- the Sink contract ----------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if event.audio is None:
            return
        self._rate = event.sample_rate
        first = round(event.start * self._rate)
        if not self._continues(event.source, first):
            self._finish_all()  # a gap: the audio after it belongs to no open event
            self._pieces.clear()
        self._source = event.source
        audio = np.asarray(event.audio, dtype=np.float32).reshape(-1)
        self._pieces.append((first, audio))
        end = first + audio.shape[0]
        while self._pieces and self._pieces[0][0] + self._pieces[0][1].shape[0] \
                < end - self.history * self._rate:
            self._pieces.popleft()
        for recording in list(self._open.values()):
            self._collect(recording, first, audio)

    def handle_sound(self, record: SoundEvent) -> None:
        if record.kind == "start":
            if self._source is not None and record.source != self._source:
                self._finish_all()
                self._pieces.clear()
                self._source = record.source
            first = max(0, round((record.start - self.context) * self._rate))
            recording = _Recording(record, first, until=first)
            self._open[record.id] = recording
            for start, audio in self._pieces:
                self._collect(recording, start, audio)
        elif record.kind == "end" and record.id in self._open:
            recording = self._open[record.id]
            recording.record = record
            recording.stop = min(round((record.end + self.context) * self._rate),
                                 recording.first + self._cap())
            self._save_if_done(recording)

    def close(self) -> None:
        self._finish_all()
        self._pieces.clear()

    # -- internals ------------------------------------------------------------------------
    def _cap(self) -> int:
        return round(self.max_seconds * self._rate)

    def _continues(self, source: str, first: int) -> bool:
        if self._source is None:
            return True
        if source != self._source:
            return False
        if not self._pieces:
            return True
        start, audio = self._pieces[-1]
        return abs(first - (start + audio.shape[0])) <= 1

    def _collect(self, recording: _Recording, start: int, audio: np.ndarray) -> None:
        """Append the part of a piece of audio the recording still wants."""
        limit = recording.first + self._cap()
        if recording.stop is not None:
            limit = min(limit, recording.stop)
        lo = max(start, recording.until)
        hi = min(start + audio.shape[0], limit)
        if hi > lo:
            recording.parts.append(audio[lo - start:hi - start])
            recording.until = hi
        if recording.until >= limit:
            if recording.until >= recording.first + self._cap():
                logger.warning("event %d (%s) is longer than %g s: its audio is saved "
                               "truncated to the first %g s", recording.record.id,
                               recording.record.sound, self.max_seconds, self.max_seconds)
            self._save(recording)

    def _save_if_done(self, recording: _Recording) -> None:
        if recording.stop is not None and recording.until >= recording.stop:
            self._save(recording)

    def _finish_all(self) -> None:
        for recording in list(self._open.values()):
            self._save(recording)

    def _save(self, recording: _Recording) -> None:
        """Write what the recording holds (nothing when it holds no audio) and forget it."""
        self._open.pop(recording.record.id, None)
        if not recording.parts:
            logger.warning("event %d (%s): no audio to save", recording.record.id,
                           recording.record.sound)
            return
        try:
            path = save_unique(self.directory, _stem(recording.record),
                               np.concatenate(recording.parts), self._rate)
        except OSError as exc:
            self.failed += 1
            logger.error("cannot save %s: %s", exc.filename, (exc.strerror or str(exc)).lower())
            return
        self.saved.append(path)
        logger.info('"%s" saved.', path)

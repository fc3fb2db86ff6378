"""Audio in, sound events out: framing, per-frame scoring and the detector, chained.

:class:`FrameEvents` follows one continuous stretch of audio: frames (from
``audio.framestream.FrameStream``) are scored over their context (``FrameScorer``) and
fed to an ``audio.detect.EventDetector``. The pipeline uses it on the frames it computes
anyway for a file's ranking, so events cost no second pass over the audio.

:class:`EventStream` is what the processing loop holds for a live or watched source. It
takes windows of 16 kHz audio as they come and keeps one ``FrameEvents`` per continuous
segment: when a window does not follow the previous one (the loop dropped a window
because classification fell behind, or a folder source moved on to the next file), the
segment's frames are finished, its active events end where they were last heard, and a
new segment starts at the window. Event ids run on across segments.

For live sources each window carries the wall-clock time its last sample was available;
frames get wall-clock starts from it, so events report both stream seconds and time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from audio.blocks import CONTINUITY_TOLERANCE
from audio.detect import EventDetector, Sound, SoundEvent
from audio.framestream import Frames, FrameScorer, FrameStream

logger = logging.getLogger(__name__)


class FrameEvents:
    """Scores frames over their context and detects events in one continuous segment."""

    def __init__(self, backend: Any, sounds: Sequence[Sound], source: str = "", *,
                 context: int | None = None, update_every: float | None = None,
                 first_id: int = 1) -> None:
        self._scorer = FrameScorer(backend, context)
        self.detector = EventDetector(sounds, source=source, update_every=update_every,
                                      first_id=first_id)
        self.clock_offset: float | None = None
        """Wall-clock time minus stream time, for live sources (None: no wall clock)."""

    def push(self, frames: Frames) -> list[SoundEvent]:
        return self._detect(self._scorer.push(frames))

    def finish(self) -> list[SoundEvent]:
        """Score the frames held for context, then end every active event."""
        return self._detect(self._scorer.finish()) + self.detector.close()

    def _detect(self, scored: Frames) -> list[SoundEvent]:
        if not len(scored):
            return []
        stamps = None if self.clock_offset is None else scored.starts + self.clock_offset
        return self.detector.feed(scored.features, scored.starts, scored.durations,
                                  scored.levels, stamps)


class EventStream:
    """Windows of 16 kHz mono audio → sound event records, across gaps and sources.

    Args:
      backend: a loaded backend (``WavProcessor.backend``).
      sounds: what to follow (``audio.sounds.resolve_sounds``).
      context: frames each frame is scored over (default: the backend's ``event_context``).
      update_every: seconds between ``update`` records of an active event (None: none).
    """

    def __init__(self, backend: Any, sounds: Sequence[Sound], *, context: int | None = None,
                 update_every: float | None = None) -> None:
        self._backend = backend
        self._sounds = tuple(sounds)
        self._context = context
        self._update_every = update_every
        self._frames: FrameStream | None = None
        self._events: FrameEvents | None = None
        self._source = ""
        self._next_id = 1

    @property
    def sounds(self) -> tuple[Sound, ...]:
        return self._sounds

    def push(self, audio: np.ndarray, start: float, *, timestamp: float | None = None,
             source: str = "") -> list[SoundEvent]:
        """One window: its samples (16 kHz mono), its start (seconds from the start of the
        source), the wall-clock time its last sample was available, and its source."""
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        records: list[SoundEvent] = []
        if self._frames is not None and not self._continues(start, source):
            logger.debug("%s: audio does not continue at %.3f s; events restart", source,
                         start)
            records += self.close()
        if self._frames is None or self._events is None:
            self._frames, self._events = self._start_segment(start, source)
        if timestamp is not None:
            end = start + samples.shape[0] / self._backend.sample_rate
            self._events.clock_offset = float(timestamp) - end
        return records + self._events.push(self._frames.push(samples))

    def close(self) -> list[SoundEvent]:
        """End the current segment (end of stream): pad its tail, end its events."""
        if self._frames is None or self._events is None:
            return []
        records = self._events.push(self._frames.finish()) + self._events.finish()
        self._next_id = self._events.detector.next_id
        self._frames, self._events = None, None
        return records

    def _continues(self, start: float, source: str) -> bool:
        if self._frames is None:
            return False
        expected = self._frames.origin + self._frames.duration
        return source == self._source and abs(start - expected) <= CONTINUITY_TOLERANCE

    def _start_segment(self, start: float, source: str) -> tuple[FrameStream, FrameEvents]:
        self._source = source
        return (FrameStream(self._backend, origin=start),
                FrameEvents(self._backend, self._sounds, source, context=self._context,
                            update_every=self._update_every, first_id=self._next_id))

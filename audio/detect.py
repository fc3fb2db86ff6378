"""Sound events from a stream of per-frame scores: "a dog barked from 12.4 s to 15.1 s".

A backend scores the audio frame by frame (VGGish every 0.96 s, YAMNet every 0.48 s);
people want to know when a sound they care about started and ended, how sure the model
was and how loud it was. :class:`EventDetector` turns the frames into ``start``,
optional ``update`` and ``end`` records, one frame at a time, so the same code serves a
file (all frames at once) and a live microphone (a few frames per block), and the result
does not depend on how the frames were chunked. Which sounds it follows, and with which
thresholds, is ``audio.sounds``' business (re-exported here for convenience).

Pure numpy: the detector must run wherever the scores come from.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from audio.errors import AudioAnalysisError
from audio.sounds import (
    DEFAULT_GROUPS_FILE,
    DEFAULT_THRESHOLD,
    OFF_RATIO,
    OVERRIDE_KEYS,
    Sound,
    SoundGroup,
    SoundGroupsError,
    Thresholds,
    UnknownSoundError,
    load_sound_groups,
    resolve_sounds,
)

__all__ = ["DBFS_FLOOR", "DEFAULT_GROUPS_FILE", "DEFAULT_THRESHOLD", "OFF_RATIO",
           "OVERRIDE_KEYS", "DetectorInputError", "EventDetector", "Sound", "SoundEvent",
           "SoundGroup", "SoundGroupsError", "Thresholds", "UnknownSoundError",
           "load_sound_groups", "resolve_sounds", "rms_dbfs"]

logger = logging.getLogger(__name__)

DBFS_FLOOR = -120.0
"""The level reported for digital silence, so that no event carries ``-inf`` into JSON."""
_EPS = 1e-9
"""Frame times are sums of floats: compare durations with this slack."""


class DetectorInputError(AudioAnalysisError, ValueError):
    """The caller fed frames the detector cannot follow (wrong shape, time going back)."""


def rms_dbfs(samples: np.ndarray) -> float:
    """The RMS level of 16 kHz audio in dBFS (0 dBFS = a full-scale square wave).

    Integer samples are scaled to [-1, 1) first. Silence and empty input give
    :data:`DBFS_FLOOR` rather than ``-inf`` so the level can be compared and serialized.
    """
    x = np.asarray(samples)
    if x.size == 0:
        return DBFS_FLOOR
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / (float(np.iinfo(x.dtype).max) + 1.0)
    rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))
    if rms <= 0.0:
        return DBFS_FLOOR
    return max(DBFS_FLOOR, 20.0 * math.log10(rms))


@dataclass(frozen=True)
class SoundEvent:
    """One record of an event: ``kind`` is ``start``, ``update`` or ``end`` (final).

    ``start``/``end`` are seconds from the start of the source; ``start_time`` and
    ``end_time`` are wall-clock (unix seconds) when the frames carried timestamps. Until
    the end, ``end`` is the end of the last frame in which the sound was heard.
    ``synthetic``: None for a record the detector emitted; for an ``end`` made up to close
    an event whose own end was lost, why (``store_overflow``: ``audio.commit``).
    """

    kind: str
    id: int
    sound: str
    classes: tuple[str, ...]
    start: float
    end: float
    peak_score: float
    mean_score: float
    peak_dbfs: float
    mean_dbfs: float
    source: str = ""
    start_time: float | None = None
    end_time: float | None = None
    synthetic: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready; ``synthetic`` only when set (a detector's record has no such key)."""
        data = {**asdict(self), "classes": list(self.classes)}
        if self.synthetic is None:
            del data["synthetic"]
        return data


@dataclass
class _Stats:
    """Running score and level figures of the frames of one event."""

    frames: int = 0
    score_sum: float = 0.0
    peak_score: float = 0.0
    power_sum: float = 0.0
    peak_dbfs: float = DBFS_FLOOR
    fired: set[int] = field(default_factory=set)

    def add(self, score: float, dbfs: float, fired: np.ndarray) -> None:
        self.frames += 1
        self.score_sum += score
        self.peak_score = max(self.peak_score, score)
        self.power_sum += 10.0 ** (dbfs / 10.0)
        self.peak_dbfs = max(self.peak_dbfs, dbfs)
        self.fired.update(int(i) for i in fired)

    def merge(self, other: _Stats) -> None:
        self.frames += other.frames
        self.score_sum += other.score_sum
        self.peak_score = max(self.peak_score, other.peak_score)
        self.power_sum += other.power_sum
        self.peak_dbfs = max(self.peak_dbfs, other.peak_dbfs)
        self.fired |= other.fired


@dataclass
class _Track:
    """What the detector knows about one sound between frames."""

    sound: Sound
    stats: _Stats = field(default_factory=_Stats)
    gap: _Stats = field(default_factory=_Stats)
    candidate_start: float | None = None
    start_time: float | None = None
    event_id: int | None = None
    heard_end: float = 0.0
    heard_end_time: float | None = None
    silent_since: float | None = None
    last_update: float = 0.0


class EventDetector:
    """Follows each sound through the frames and reports its events as they happen.

    Feed frames in time order with :meth:`push` (one) or :meth:`feed` (many), then call
    :meth:`close` at the end of the stream to end what is still sounding. With
    ``update_every`` seconds, an active event also reports an ``update`` that often.
    Event ids count from ``first_id``, so that the detectors of consecutive files or
    stream segments number their events as one sequence.
    """

    def __init__(self, sounds: Sequence[Sound], source: str = "",
                 update_every: float | None = None, first_id: int = 1) -> None:
        self._tracks = [_Track(sound) for sound in sounds]
        self._source = source
        self._update_every = update_every
        self._next_id = int(first_id)
        self._last_start = -math.inf
        self._width = 1 + max((max(s.indices) for s in sounds), default=-1)

    @property
    def next_id(self) -> int:
        """The id the next event will get (a detector that follows on takes it up)."""
        return self._next_id

    @property
    def sounds(self) -> tuple[Sound, ...]:
        return tuple(track.sound for track in self._tracks)

    def feed(self, scores: np.ndarray, starts: Sequence[float], durations: Sequence[float],
             dbfs: Sequence[float], timestamps: Sequence[float] | None = None,
             ) -> list[SoundEvent]:
        """:meth:`push` for each row of ``scores`` (n_frames, n_classes)."""
        scores = np.asarray(scores)
        if scores.ndim != 2 or not len(scores) == len(starts) == len(durations) == len(dbfs):
            raise DetectorInputError("feed wants (n_frames, n_classes) scores and one start, "
                                     "duration and level per frame")
        records: list[SoundEvent] = []
        for i, row in enumerate(scores):
            stamp = None if timestamps is None else float(timestamps[i])
            records += self.push(row, float(starts[i]), float(durations[i]), float(dbfs[i]),
                                 stamp)
        return records

    def push(self, scores: np.ndarray, start: float, duration: float, dbfs: float,
             timestamp: float | None = None) -> list[SoundEvent]:
        """One frame: its (n_classes,) scores, start and duration in seconds from the start
        of the source, its level in dBFS and, for live sources, its wall-clock start."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or scores.shape[0] < self._width:
            raise DetectorInputError(f"frame scores must be a vector of at least {self._width} "
                                     f"classes, got shape {scores.shape}")
        if start < self._last_start - _EPS:
            raise DetectorInputError(f"frame at {start} s comes after one at {self._last_start} s")
        self._last_start = start
        records: list[SoundEvent] = []
        for track in self._tracks:
            member = scores[list(track.sound.indices)]
            frame = (float(member.max()), member, start, start + duration, dbfs, timestamp)
            record = (self._active_step(track, *frame) if track.event_id is not None
                      else self._idle_step(track, *frame))
            if record is not None:
                records.append(record)
        return records

    def close(self) -> list[SoundEvent]:
        """End every active event at the end of its last heard frame (end of stream);
        sounds still short of ``min_duration`` never became events and are dropped."""
        records = [self._end(track) for track in self._tracks if track.event_id is not None]
        for track in self._tracks:
            track.candidate_start = None
        return records

    def _idle_step(self, track: _Track, score: float, member: np.ndarray, start: float,
                   end: float, dbfs: float, stamp: float | None) -> SoundEvent | None:
        """Before an event: count how long the sound has been loud and sure enough."""
        limits = track.sound.thresholds
        loud = limits.min_dbfs is None or dbfs >= limits.min_dbfs
        if score < limits.on or not loud:
            track.candidate_start = None
            return None
        if track.candidate_start is None:
            track.candidate_start, track.start_time = start, stamp
            track.stats = _Stats()
        track.stats.add(score, dbfs, np.flatnonzero(member >= limits.on))
        track.heard_end = end
        track.heard_end_time = None if stamp is None else stamp + (end - start)
        if end - track.candidate_start < limits.min_duration - _EPS:
            return None
        track.event_id, self._next_id = self._next_id, self._next_id + 1
        track.gap, track.silent_since, track.last_update = _Stats(), None, end
        return self._record(track, "start")

    def _active_step(self, track: _Track, score: float, member: np.ndarray, start: float,
                     end: float, dbfs: float, stamp: float | None) -> SoundEvent | None:
        """During an event: extend it while heard, end it after ``max_not_heard`` unheard."""
        limits = track.sound.thresholds
        if score < limits.off:  # type: ignore[operator]
            track.gap.add(score, dbfs, np.flatnonzero(member >= limits.on))
            if track.silent_since is None:
                track.silent_since = start
            if end - track.silent_since >= limits.max_not_heard - _EPS:
                return self._end(track)
            return None
        track.stats.merge(track.gap)
        track.gap = _Stats()
        track.stats.add(score, dbfs, np.flatnonzero(member >= limits.on))
        track.silent_since = None
        track.heard_end = end
        track.heard_end_time = None if stamp is None else stamp + (end - start)
        if self._update_every is not None and end - track.last_update >= self._update_every - _EPS:
            track.last_update = end
            return self._record(track, "update")
        return None

    def _end(self, track: _Track) -> SoundEvent:
        """The final record; the frames heard after the last one above ``off`` are not in it."""
        record = self._record(track, "end")
        track.event_id, track.candidate_start = None, None
        track.stats, track.gap, track.silent_since = _Stats(), _Stats(), None
        return record

    def _record(self, track: _Track, kind: str) -> SoundEvent:
        stats, sound = track.stats, track.sound
        assert track.event_id is not None and track.candidate_start is not None
        return SoundEvent(
            kind=kind, id=track.event_id, sound=sound.name,
            classes=tuple(sound.classes[i] for i in sorted(stats.fired)),
            start=track.candidate_start, end=track.heard_end,
            peak_score=stats.peak_score, mean_score=stats.score_sum / stats.frames,
            peak_dbfs=stats.peak_dbfs,
            mean_dbfs=max(DBFS_FLOOR, 10.0 * math.log10(stats.power_sum / stats.frames)),
            source=self._source, start_time=track.start_time, end_time=track.heard_end_time)

"""Sound events from a stream of per-frame scores: "a dog barked from 12.4 s to 15.1 s".

A backend scores the audio frame by frame (VGGish every 0.96 s, YAMNet every 0.48 s);
people want to know when a sound they care about started and ended, how sure the model
was and how loud it was. :class:`EventDetector` turns the frames into ``start``,
optional ``update`` and ``end`` records, one frame at a time, so the same code serves a
file (all frames at once) and a live microphone (a few frames per block), and the result
does not depend on how the frames were chunked.

A *sound* is one class or a group of classes whose score is the max of its members
(``dog`` = Dog, Bark, Yip, ...). :func:`load_sound_groups` reads the groups shipped in
``sound_groups.json`` or a user's file; :func:`resolve_sounds` turns a ``--listen`` list
(and an ``--ignore`` list) into the sounds to follow.

Pure numpy: the detector must run wherever the scores come from.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from audio.errors import AudioAnalysisError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_GROUPS_FILE = Path(__file__).resolve().with_name("sound_groups.json")
DBFS_FLOOR = -120.0
"""The level reported for digital silence, so that no event carries ``-inf`` into JSON."""
DEFAULT_THRESHOLD = 0.5
OFF_RATIO = 0.75
"""Without an explicit ``off``, a sound keeps sounding down to 3/4 of its ``on`` score."""
OVERRIDE_KEYS = ("threshold", "off", "min_duration", "max_not_heard", "min_dbfs")
_EPS = 1e-9
"""Frame times are sums of floats: compare durations with this slack."""


class UnknownSoundError(UsageError, ValueError):
    """A ``--listen``/``--ignore`` name is neither a class of the backend nor a group."""


class SoundGroupsError(UsageError, ValueError):
    """A groups file cannot be read or says something the detector cannot use."""


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
class Thresholds:
    """When a sound starts and ends: hysteresis, durations and the loudness gate.

    A sound starts once its score has been ``>= on`` (in frames at least ``min_dbfs``
    loud) for ``min_duration`` seconds, and ends once it has stayed ``< off`` for
    ``max_not_heard`` seconds. ``off`` below ``on`` keeps one bark-and-pause from
    flickering into many events. ``off=None`` means ``on * OFF_RATIO``.
    """

    on: float = DEFAULT_THRESHOLD
    off: float | None = None
    min_duration: float = 0.0
    max_not_heard: float = 1.0
    min_dbfs: float | None = None

    def __post_init__(self) -> None:
        if self.off is None:
            object.__setattr__(self, "off", self.on * OFF_RATIO)
        if not 0.0 <= self.off <= self.on:  # type: ignore[operator]
            raise SoundGroupsError(
                f"off threshold {self.off} must lie between 0 and the on threshold {self.on}")
        if self.min_duration < 0 or self.max_not_heard < 0:
            raise SoundGroupsError("min_duration and max_not_heard cannot be negative")

    def overridden(self, overrides: Mapping[str, float]) -> Thresholds:
        """These defaults with one sound's overrides; a new ``threshold`` moves ``off`` too."""
        on = float(overrides.get("threshold", self.on))
        off = overrides.get("off", None if "threshold" in overrides else self.off)
        changes = {k: float(v) for k, v in overrides.items() if k in OVERRIDE_KEYS[2:]}
        return replace(self, on=on, off=None if off is None else float(off), **changes)


@dataclass(frozen=True)
class SoundGroup:
    """One entry of a groups file: member classes (empty = a class override) + overrides."""

    name: str
    classes: tuple[str, ...] = ()
    overrides: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Sound:
    """A sound the detector follows: its classes, their score columns, its thresholds."""

    name: str
    classes: tuple[str, ...]
    indices: tuple[int, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)


def _group_entry(name: str, entry: object, where: str) -> SoundGroup:
    """Check one groups-file entry, so a typo fails at load and not mid-stream."""
    if not isinstance(entry, dict):
        raise SoundGroupsError(f"{where}: {name!r} must map to an object")
    unknown = sorted(set(entry) - {"classes", *OVERRIDE_KEYS})
    if unknown:
        raise SoundGroupsError(f"{where}: {name!r} has unknown keys {unknown}; "
                               f"known: classes, {', '.join(OVERRIDE_KEYS)}")
    classes = entry.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise SoundGroupsError(f"{where}: {name!r}: classes must be a list of names")
    overrides = []
    for key in OVERRIDE_KEYS:
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SoundGroupsError(f"{where}: {name!r}: {key} must be a number")
            overrides.append((key, float(value)))
    return SoundGroup(name, tuple(classes), tuple(overrides))


def load_sound_groups(path: str | Path | None = None) -> dict[str, SoundGroup]:
    """The groups of a JSON file (the shipped defaults without ``path``), by lower-case name.

    Top-level keys starting with ``_`` are comments: JSON has none of its own.
    """
    source = Path(path) if path is not None else DEFAULT_GROUPS_FILE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise SoundGroupsError(f"cannot read the groups file {source}: {error}") from error
    except json.JSONDecodeError as error:
        raise SoundGroupsError(f"{source} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise SoundGroupsError(f"{source}: the top level must be an object of sounds")
    groups: dict[str, SoundGroup] = {}
    for name, entry in data.items():
        if name.startswith("_"):
            continue
        if name.lower() in groups:
            raise SoundGroupsError(f"{source}: {name!r} appears twice (names ignore case)")
        groups[name.lower()] = _group_entry(name, entry, str(source))
    return groups


def _unknown(name: str, known: Sequence[str], what: str) -> UnknownSoundError:
    """The error for an unknown name, with the closest known names to fix a typo."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
    return UnknownSoundError(f"unknown {what} {name!r}{hint}")


def _split_names(names: str | Sequence[str], known: set[str]) -> list[str]:
    """Split a comma list, re-joining pieces that form a known name ("Vehicle horn, car horn,
    honking" is one AudioSet class); the longest known name wins."""
    if not isinstance(names, str):
        return [n.strip() for n in names if n.strip()]
    pieces = [p.strip() for p in names.split(",")]
    out: list[str] = []
    i = 0
    while i < len(pieces):
        j = next((j for j in range(len(pieces), i, -1)
                  if ", ".join(pieces[i:j]).lower() in known), i + 1)
        joined = ", ".join(pieces[i:j])
        if joined:
            out.append(joined)
        i = j
    return out


def _resolve_name(name: str, labels: Sequence[str], groups: Mapping[str, SoundGroup],
                  label_index: Mapping[str, int], prefer_class: bool = False,
                  ) -> tuple[str, tuple[str, ...]]:
    """``name`` as (sound name, member classes). For ``--listen`` a group wins over a class
    of the same name (``dog`` means the group); ``--ignore`` removes classes, so there the
    class wins (``--ignore Dog`` keeps Bark)."""
    group = groups.get(name.lower())
    if prefer_class and name.lower() in label_index:
        group = None
    if group is not None and group.classes:
        for member in group.classes:
            if member.lower() not in label_index:
                raise _unknown(member, labels, f"class in group {group.name!r}")
        return group.name, group.classes
    if name.lower() in label_index:
        return labels[label_index[name.lower()]], (labels[label_index[name.lower()]],)
    known = [*labels, *(g.name for g in groups.values() if g.classes)]
    raise _unknown(name, known, "sound")


def resolve_sounds(labels: Sequence[str], groups: Mapping[str, SoundGroup] | None = None,
                   listen: str | Sequence[str] | None = None,
                   ignore: str | Sequence[str] | None = None,
                   defaults: Thresholds | None = None) -> tuple[Sound, ...]:
    """The sounds to follow: ``--listen`` names (all classes without it), less ``--ignore``.

    Names are classes of the backend (``labels``) or groups, in any case. Ignored names
    remove their classes from every sound; a sound left with no class is dropped.
    """
    groups = groups or {}
    defaults = defaults or Thresholds()
    label_index = {label.lower(): i for i, label in enumerate(labels)}
    known = set(label_index) | {g for g, entry in groups.items() if entry.classes}
    ignored: set[str] = set()
    for name in _split_names(ignore or [], known):
        _, classes = _resolve_name(name, labels, groups, label_index, prefer_class=True)
        ignored.update(c.lower() for c in classes)
    if listen is None:
        chosen = [(label, (label,)) for label in labels]
    else:
        names = _split_names(listen, known)
        if not names:
            raise UsageError("--listen names no sound")
        chosen = [_resolve_name(n, labels, groups, label_index) for n in dict.fromkeys(names)]
    sounds = []
    for name, classes in chosen:
        kept = tuple(c for c in classes if c.lower() not in ignored)
        if not kept:
            logger.info("not listening for %s: all its classes are ignored", name)
            continue
        group = groups.get(name.lower())
        thresholds = defaults.overridden(dict(group.overrides)) if group else defaults
        indices = tuple(label_index[c.lower()] for c in kept)
        sounds.append(Sound(name, tuple(labels[i] for i in indices), indices, thresholds))
    return tuple(sounds)


@dataclass(frozen=True)
class SoundEvent:
    """One record of an event: ``kind`` is ``start``, ``update`` or ``end`` (final).

    ``start``/``end`` are seconds from the start of the source; ``start_time`` and
    ``end_time`` are wall-clock (unix seconds) when the frames carried timestamps. Until
    the end, ``end`` is the end of the last frame in which the sound was heard.
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

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "classes": list(self.classes)}


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
    """

    def __init__(self, sounds: Sequence[Sound], source: str = "",
                 update_every: float | None = None) -> None:
        self._tracks = [_Track(sound) for sound in sounds]
        self._source = source
        self._update_every = update_every
        self._next_id = 1
        self._last_start = -math.inf
        self._width = 1 + max((max(s.indices) for s in sounds), default=-1)

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

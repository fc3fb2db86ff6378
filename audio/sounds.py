"""Which sounds to follow: classes, groups of classes, and their thresholds.

A *sound* is one class of the backend or a group of classes whose score is the max of
its members (``dog`` = Dog, Bark, Yip, ...). :func:`load_sound_groups` reads the groups
shipped in ``sound_groups.json`` (written from the AudioSet ontology's parent/child
facts) or a user's file of the same form; :func:`resolve_sounds` turns a ``--listen``
list (and an ``--ignore`` list) into the :class:`Sound` s the event detector
(``audio.detect``) follows, each with its :class:`Thresholds`.

Kept apart from the detector so that a script can check its flags (an unknown name, a
bad groups file) before any model is loaded, and so that each module stays small.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from audio.errors import UsageError
from audio.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_GROUPS_FILE = Path(__file__).resolve().with_name("sound_groups.json")
DEFAULT_THRESHOLD = 0.5
OFF_RATIO = 0.75
"""Without an explicit ``off``, a sound keeps sounding down to 3/4 of its ``on`` score."""
OVERRIDE_KEYS = ("threshold", "off", "min_duration", "max_not_heard", "min_dbfs")
WEAK_AP = 0.1
"""Below this eval average precision a class is one the classifier rarely recognises."""


class UnknownSoundError(UsageError, ValueError):
    """A ``--listen``/``--ignore`` name is neither a class of the backend nor a group."""


class SoundGroupsError(UsageError, ValueError):
    """A groups file cannot be read or says something the detector cannot use."""


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
        present = tuple(m for m in group.classes if m.lower() in label_index)
        missing = [m for m in group.classes if m.lower() not in label_index]
        if not present:
            raise _unknown(missing[0], labels, f"class in group {group.name!r} (none of its "
                                               f"classes is one of this classifier's)")
        if missing:  # a custom classifier knows fewer classes; a typo shows here too
            logger.warning("sound %r: %s not among this classifier's classes; listening to "
                           "%s", group.name, ", ".join(map(repr, missing)), ", ".join(present))
        return group.name, tuple(labels[label_index[m.lower()]] for m in present)
    if name.lower() in label_index:
        return labels[label_index[name.lower()]], (labels[label_index[name.lower()]],)
    known = [*labels, *(g.name for g in groups.values() if g.classes)]
    raise _unknown(name, known, "sound")


def _calibrated(defaults: Thresholds, classes: Sequence[str],
                class_thresholds: Mapping[str, float] | None) -> Thresholds:
    """``defaults`` with ``on`` from the classifier's per-class thresholds, when it has them."""
    known = [class_thresholds[c] for c in classes if class_thresholds and c in class_thresholds]
    return defaults.overridden({"threshold": min(known)}) if known else defaults


def resolve_sounds(labels: Sequence[str], groups: Mapping[str, SoundGroup] | None = None,
                   listen: str | Sequence[str] | None = None,
                   ignore: str | Sequence[str] | None = None,
                   defaults: Thresholds | None = None,
                   class_thresholds: Mapping[str, float] | None = None) -> tuple[Sound, ...]:
    """The sounds to follow: ``--listen`` names (all classes without it), less ``--ignore``.

    Names are classes of the backend (``labels``) or groups, in any case. Ignored names
    remove their classes from every sound; a sound left with no class is dropped.

    A sound's ``on`` threshold is, first match wins: its entry in the groups file; the
    classifier's own per-class thresholds (``class_thresholds``, by display name; for a
    group, the lowest of its members', since a group is heard when any member is); the
    ``defaults``. A caller passes no ``class_thresholds`` when the user set the global
    threshold explicitly.
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
        thresholds = _calibrated(defaults, kept, class_thresholds)
        if group is not None:
            thresholds = thresholds.overridden(dict(group.overrides))
        indices = tuple(label_index[c.lower()] for c in kept)
        sounds.append(Sound(name, tuple(labels[i] for i in indices), indices, thresholds))
    return tuple(sounds)




def configured_sounds(settings: Settings, labels: Sequence[str],
                      class_thresholds: Mapping[str, float] | None = None,
                      ) -> tuple[Sound, ...] | None:
    """The sounds the scripts' event flags ask for, or None when no events are wanted.

    ``class_thresholds`` (the classifier's per-class thresholds) are used only when the
    user did not set ``--event_threshold``: an explicit flag wins over the bundle's.
    """
    if not settings.wants_events:
        return None
    defaults = Thresholds(on=settings.event_threshold or DEFAULT_THRESHOLD,
                          min_duration=settings.min_duration,
                          max_not_heard=settings.max_not_heard, min_dbfs=settings.min_dbfs)
    calibrated = class_thresholds if settings.event_threshold is None else None
    sounds = resolve_sounds(labels, load_sound_groups(settings.sound_groups),
                            listen=settings.listen, ignore=settings.ignore,
                            defaults=defaults, class_thresholds=calibrated)
    if not sounds:
        raise UsageError("no sound left to listen for (--ignore removed every class)")
    return sounds


def weak_sound_warnings(sounds: Sequence[Sound], class_ap: Mapping[str, float] | None,
                        floor: float = WEAK_AP) -> list[str]:
    """One line per sound that has classes of eval AP below ``floor`` (the bundle's
    ``class_metrics.csv``), so that a user listening for them knows what to expect."""
    if not class_ap:
        return []
    lines = []
    for sound in sounds:
        weak = [f"{c} (eval AP {class_ap[c]:.2f})" for c in sound.classes
                if c in class_ap and class_ap[c] < floor]
        if weak:
            group = "" if sound.classes == (sound.name,) else f"{sound.name}: "
            lines.append(f"{group}this classifier rarely recognises {', '.join(weak)}")
    return lines


def warn_weak_sounds(settings: Settings, sounds: Sequence[Sound] | None, backend: Any,
                     log: logging.Logger) -> None:
    """With ``--listen``: log :func:`weak_sound_warnings` for the backend's classifier
    (capture and the daemon; ``parse_file.py`` and batch report through their own)."""
    if settings.listen is None or not sounds:
        return
    for line in weak_sound_warnings(sounds, getattr(backend, "class_eval_ap", None)):
        log.warning("%s", line)

"""Finding and labelling the recordings a custom classifier learns from.

Kept apart from the embedding and training code because these are the rules people
trip over (folder layout, ``--negative``, ``--target``, too few files): each one fails
early with a one-line :class:`TrainDataError`, before any model is loaded.

Files, not frames, are the unit of the split, so no recording contributes frames to both
the training and the evaluation side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio.errors import UsageError

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff")


class TrainDataError(UsageError, ValueError):
    """The data folder cannot be used for training (one-line message)."""


@dataclass(frozen=True)
class Clip:
    """One recording and its class: the unit of the split, so files never straddle it."""

    path: Path
    label: int


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def scan_dataset(data_dir: Path, negative: Path | None, target: str | None,
                 negative_label: str) -> tuple[list[str], list[Clip]]:
    """Class names and labelled clips. Detector mode: labels are 1 (target) / 0."""
    if not data_dir.is_dir():
        raise TrainDataError(f"{data_dir}: not a directory")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = {f.name: _audio_files(f) for f in folders}
    per_class = {k: v for k, v in per_class.items() if v}
    negatives = _audio_files(negative) if negative else []
    if negative is not None and not negatives:
        raise TrainDataError(f"{negative}: no audio files for --negative")
    if target is not None:
        if target not in per_class:
            raise TrainDataError(f"--target {target!r} is not a sub-folder of {data_dir} with "
                                 f"audio files (found: {', '.join(per_class) or 'none'})")
        clips = [Clip(p, 1) for p in per_class[target]]
        clips += [Clip(p, 0) for name, files in per_class.items() if name != target for p in files]
        clips += [Clip(p, 0) for p in negatives]
        if not any(c.label == 0 for c in clips):
            raise TrainDataError("a detector needs negatives: other class folders or --negative")
        return [target], clips
    names = list(per_class)
    if negatives:
        if negative_label in per_class:
            raise TrainDataError(f"--negative_label {negative_label!r} is also a class folder")
        names.append(negative_label)
        per_class[negative_label] = negatives
    if len(names) < 2:
        raise TrainDataError(f"{data_dir}: need at least two class sub-folders with audio files "
                             f"(or one and --negative), found {len(names)}")
    clips = [Clip(p, i) for i, name in enumerate(names) for p in per_class[name]]
    return names, clips


def split_clips(clips: Sequence[Clip], test_fraction: float, val_fraction: float,
                seed: int) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """Stratified split by file: train, validation, test (each label in each part if it can)."""
    rng = np.random.default_rng(seed)
    train: list[Clip] = []
    val: list[Clip] = []
    test: list[Clip] = []
    for label in sorted({c.label for c in clips}):
        group = [c for c in clips if c.label == label]
        order = rng.permutation(len(group))
        group = [group[i] for i in order]
        if len(group) < 3:
            raise TrainDataError(f"class {label}: need at least 3 files (train, validation, "
                                 f"test), found {len(group)}")
        n_test = max(1, round(test_fraction * len(group)))
        n_val = max(1, round(val_fraction * len(group)))
        n_val = min(n_val, len(group) - n_test - 1)
        test += group[:n_test]
        val += group[n_test:n_test + n_val]
        train += group[n_test + n_val:]
    return train, val, test


def stack_frames(part: Sequence[Clip],
                 feats: Mapping[Path, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All frames of ``part`` and their labels: every frame carries its file's class."""
    x = np.concatenate([feats[c.path] for c in part])
    y = np.concatenate([np.full(feats[c.path].shape[0], c.label) for c in part])
    return x.astype(np.float64), y.astype(np.int64)

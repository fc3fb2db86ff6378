"""The classifier bundle on disk: file names, where bundles are found, the input contract.

A bundle is a directory ``models/<name>/``::

    config.json       what runs it, its hyper-parameters and its input contract
    labels.csv        index, mid, display_name (AudioSet's class_labels_indices.csv form)
    member_<i>.weights.h5   Keras bundles: weights of each ensemble member
    head.npz          numpy heads (``"format": "numpy-head"``): standardisation + layers
    provenance.json   how it was trained (command, data, commit, date, machine)
    metrics.json      its metrics (AudioSet eval split, or a custom head's held-out files)
    class_metrics.csv per-class AP, AUC, threshold, precision, recall (``yt8m.calibrate``)
    calibration.json  how the per-class thresholds were chosen, and the F1 they give

The input contract is explicit in ``config.json``: ``config["input"]`` holds what every
member shares (``dequantize``, ``max_frames``, ``feature_size``); per-frame L2
normalisation is given per member (``members[i]["l2_normalize"]``, format 2) or once in
``config["input"]`` (format 1). This module reads and checks that form; it imports
nothing heavy, so the entry scripts can consult a bundle while parsing their flags.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vggish.environment import MODEL_ENV, env_value
from vggish.errors import ModelFilesError
from vggish.files import atomic_write
from yt8m.paths import models_dir

DEFAULT_BUNDLE = "audioset-ensemble-v3"
"""The shipped classifier's directory name under ``models_dir()``: the single source."""

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.csv"
PROVENANCE_FILE = "provenance.json"
METRICS_FILE = "metrics.json"
HEAD_FORMAT = "numpy-head"
HEAD_WEIGHTS = "head.npz"
FORMAT_VERSION = 2
"""Keras bundles. 1: one ``input`` contract for all members. 2: ``l2_normalize`` moved
into each member (:func:`member_l2_normalize` reads both)."""
LABEL_COLUMNS = ("index", "mid", "display_name")
CLASS_METRICS_FILE = "class_metrics.csv"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_KEYS = ("class_thresholds", "class_thresholds_p80")
"""``config.json`` keys written by ``yt8m.calibrate``: decisions taken on the scores,
not part of what computes them, so :func:`fingerprint` leaves them out."""
UNFINGERPRINTED_FILES = (CLASS_METRICS_FILE, CALIBRATION_FILE)


class BundleError(ModelFilesError, ValueError):
    """A bundle directory exists but is incomplete or inconsistent."""


class BundleNotFoundError(ModelFilesError, FileNotFoundError):
    """No bundle at the resolved path (the message names it and how to get one)."""


class HeadError(BundleError):
    """A custom numpy head bundle is incomplete or inconsistent (one-line message)."""


def resolve_bundle_path(name_or_path: str | os.PathLike[str] | None = None,
                        models_dir_: str | os.PathLike[str] | None = None) -> Path:
    """``None`` → ``$AUDIO_ANALYSIS_MODEL`` or :data:`DEFAULT_BUNDLE`; a bare name →
    ``models_dir()/name``; anything with a path separator (or existing) → as is."""
    if name_or_path is None:
        name_or_path = env_value(MODEL_ENV) or DEFAULT_BUNDLE
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    is_path = os.sep in text or (os.altsep and os.altsep in text) or text.startswith(".")
    if is_path or candidate.is_absolute():
        return candidate
    base = Path(models_dir_) if models_dir_ is not None else models_dir()
    return base / text


def locate_bundle(name_or_path: str | os.PathLike[str] | None) -> Path:
    """The bundle directory named, checked to hold a ``config.json``.

    Cheap, so that an application can fail on a wrong ``--model`` in a fraction of a
    second, before it builds any model.
    """
    path = resolve_bundle_path(name_or_path)
    if not (path / CONFIG_FILE).is_file():
        raise BundleNotFoundError(
            f"classifier bundle not found: {path} (give --model NAME_OR_PATH or "
            f"set {MODEL_ENV}; the project ships its default bundle in models/)")
    return path


def read_config(path: Path) -> dict[str, Any]:
    """A bundle's ``config.json`` (``OSError`` / ``ValueError`` when unreadable)."""
    return json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))


def class_thresholds(config: Any, labels: Sequence[str]) -> dict[str, float] | None:
    """A bundle's per-class decision thresholds, by display name, else None.

    ``config["class_thresholds"]`` is either a list aligned with the labels or an object
    ``{display_name: threshold}`` (classes left out have none). A custom head
    (``audio.train_custom``) that only carries its one tuned ``threshold`` applies it to
    each of its classes: that is the threshold it was tuned to decide with. Values
    outside [0, 1) and unknown names are a ``BundleError``: a threshold silently dropped would make the event
    detector fall back to the global one without saying so.
    """
    if not isinstance(config, dict):
        return None
    raw = config.get("class_thresholds")
    if raw is None:
        return _head_threshold(config, labels)
    if isinstance(raw, list):
        if len(raw) != len(labels):
            raise BundleError(f"class_thresholds has {len(raw)} values for {len(labels)} classes")
        raw = dict(zip(labels, raw, strict=True))
    if not isinstance(raw, dict):
        raise BundleError("class_thresholds must be a list or an object of numbers")
    known = set(labels)
    out: dict[str, float] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if name not in known:
            raise BundleError(f"class_thresholds names {name!r}, which is not a class")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise BundleError(f"class_thresholds[{name!r}] = {value!r} is not in [0, 1)")
        out[name] = float(value)
    return out


def _head_threshold(config: dict[str, Any], labels: Sequence[str]) -> dict[str, float] | None:
    value = config.get("threshold")
    if config.get("format") != HEAD_FORMAT or isinstance(value, bool) \
            or not isinstance(value, (int, float)) or not 0 < value < 1:
        return None
    return {label: float(value) for label in labels}


def read_labels(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(mids, display names) in index order from a class_labels_indices-style CSV."""
    rows: dict[int, tuple[str, str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows[int(row["index"])] = (row["mid"], row["display_name"])
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable labels ({exc})") from None
    if sorted(rows) != list(range(len(rows))):
        raise BundleError(f"{path}: label indices are not 0..{len(rows) - 1}")
    return [rows[i][0] for i in range(len(rows))], [rows[i][1] for i in range(len(rows))]


def write_labels(path: str | os.PathLike[str], mids: Sequence[str],
                 names: Sequence[str]) -> int:
    """Write ``labels.csv`` (``index,mid,display_name``); returns the number of labels."""
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(LABEL_COLUMNS)
    for i, (mid, name) in enumerate(zip(mids, names, strict=True)):
        w.writerow([i, mid, name])
    atomic_write(Path(path), text.getvalue().encode("utf-8"))
    return len(mids)


def member_l2_normalize(config: dict[str, Any], index: int) -> bool:
    """Whether member ``index`` expects per-frame L2-normalised frames."""
    member = config["members"][index]
    value = member.get("l2_normalize", config["input"].get("l2_normalize"))
    if value is None:
        raise BundleError(f"member {index} ({member.get('model')}) has no l2_normalize "
                          f"in its input contract")
    return bool(value)


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of what makes a bundle's scores: every file (bundles are a few MB at most)
    except the calibration's (:data:`UNFINGERPRINTED_FILES`), and ``config.json`` as its
    canonical JSON without :data:`CALIBRATION_KEYS`.

    A TFLite export records this (``yt8m.bundle.tflite_export``) and is used only while it
    still matches: recalibrating a bundle changes no score, so it must not make its export
    stale, while any change to weights, labels or the rest of the config must.
    """
    out = {}
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        if f.name in UNFINGERPRINTED_FILES:
            continue
        data = f.read_bytes()
        if f.name == CONFIG_FILE:
            data = _scoring_config(data)
        out[f.name] = hashlib.sha256(data).hexdigest()
    return out


def _scoring_config(data: bytes) -> bytes:
    """``config.json`` bytes → canonical JSON of its scoring part (raw bytes if not JSON)."""
    try:
        config = json.loads(data)
    except ValueError:
        return data
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in CALIBRATION_KEYS}
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8")


def read_class_metrics(path: str | os.PathLike[str]) -> dict[str, dict[str, str]] | None:
    """A bundle's ``class_metrics.csv`` rows by display name, else None (no such file).

    Values are left as the CSV's strings (empty where undefined); a file that cannot be
    parsed is a ``BundleError``.
    """
    target = Path(path) / CLASS_METRICS_FILE
    if not target.is_file():
        return None
    try:
        with open(target, newline="", encoding="utf-8") as f:
            return {row["display_name"]: row for row in csv.DictReader(f)}
    except (OSError, KeyError, ValueError, csv.Error) as exc:
        raise BundleError(f"{target}: unreadable class metrics ({exc})") from None


def class_eval_ap(path: str | os.PathLike[str]) -> dict[str, float] | None:
    """Each class's eval average precision from ``class_metrics.csv``, else None."""
    rows = read_class_metrics(path)
    if rows is None:
        return None
    out = {}
    for name, row in rows.items():
        try:
            out[name] = float(row["ap"])
        except (KeyError, ValueError):
            continue  # no eval positive: no AP to judge the class by
    return out


class InputContract:
    """``max_frames`` and ``feature_size`` read from a bundle config's input contract.

    Shared by every runtime form of a bundle (Keras, LiteRT, numpy head) so they cannot
    disagree about the contract.
    """

    config: dict[str, Any]

    @property
    def max_frames(self) -> int:
        return int(self.config["input"]["max_frames"])

    @property
    def feature_size(self) -> int:
        return int(self.config["input"]["feature_size"])

"""Load a classifier bundle and score uint8 AudioSet embeddings with it.

A bundle is a directory ``models/<name>/``::

    config.json       model name(s) + hyper-parameters + input contract
    member_<i>.weights.h5   Keras weights of each member (an ensemble averages members),
                      stored as members[i]["weights_dtype"] says (``yt8m.weights``)
    labels.csv        index, mid, display_name (from AudioSet's class_labels_indices.csv)
    provenance.json   how it was trained (command, data, commit, date, wall time, machine)
    metrics.json      its metrics on the AudioSet eval split

The input contract is explicit in ``config.json``: ``config["input"]`` holds what all
members share: ``dequantize`` (always true: inputs are the uint8 values stored in the
TFRecords), ``max_frames`` and ``feature_size``; ``l2_normalize`` (per-frame, YouTube-8M
style, or not) is given per member (``members[i]["l2_normalize"]``, format 2) or once in
``config["input"]`` (format 1). :meth:`Bundle.predict` applies it, so callers pass exactly
what the VGGish post-processor or the TFRecords give.

Importing this module is cheap: TensorFlow is imported inside :func:`load_bundle`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.paths import models_dir
from yt8m.weights import WEIGHTS_DTYPES, dequantize_weights_file

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = "audioset-ensemble-v3"
"""The shipped classifier's directory name under ``models_dir()``: the single source."""

MODEL_ENV = "AUDIO_ANALYSIS_MODEL"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.csv"
PROVENANCE_FILE = "provenance.json"
METRICS_FILE = "metrics.json"
PREDICT_CHUNK = 1024


class BundleError(ValueError):
    """A bundle directory exists but is incomplete or inconsistent."""


class BundleNotFoundError(FileNotFoundError):
    """No bundle at the resolved path (the message names it and how to get one)."""


def resolve_bundle_path(name_or_path: str | os.PathLike[str] | None = None,
                        models_dir_: str | os.PathLike[str] | None = None) -> Path:
    """``None`` → ``$AUDIO_ANALYSIS_MODEL`` or :data:`DEFAULT_BUNDLE`; a bare name →
    ``models_dir()/name``; anything with a path separator (or existing) → as is."""
    if name_or_path is None:
        name_or_path = os.environ.get(MODEL_ENV) or DEFAULT_BUNDLE
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    is_path = os.sep in text or (os.altsep and os.altsep in text) or text.startswith(".")
    if is_path or candidate.is_absolute():
        return candidate
    base = Path(models_dir_) if models_dir_ is not None else models_dir()
    return base / text


def read_labels(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(mids, display names) in index order from a class_labels_indices-style CSV."""
    rows: dict[int, tuple[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[int(row["index"])] = (row["mid"], row["display_name"])
    if sorted(rows) != list(range(len(rows))):
        raise BundleError(f"{path}: label indices are not 0..{len(rows) - 1}")
    return [rows[i][0] for i in range(len(rows))], [rows[i][1] for i in range(len(rows))]


def write_labels(source_csv: str | os.PathLike[str], dest: str | os.PathLike[str]) -> int:
    mids, names = read_labels(source_csv)
    with open(dest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for i, (mid, name) in enumerate(zip(mids, names, strict=True)):
            w.writerow([i, mid, name])
    return len(mids)


def member_l2_normalize(config: dict[str, Any], index: int) -> bool:
    """Whether member ``index`` expects per-frame L2-normalised frames."""
    member = config["members"][index]
    value = member.get("l2_normalize", config["input"].get("l2_normalize"))
    if value is None:
        raise BundleError(f"member {index} ({member.get('model')}) has no l2_normalize "
                          f"in its input contract")
    return bool(value)


def build_members(config: dict[str, Any], weight_files: list[Path]):
    """Rebuild each member from the registry and load its weights."""
    from yt8m.models import build_model, make_hparams

    members = []
    feature_size = int(config["input"]["feature_size"])
    for spec, wf in zip(config["members"], weight_files, strict=True):
        model = build_model(spec["model"], int(config["num_classes"]),
                            make_hparams(spec["model"], spec.get("hparams")),
                            feature_size=feature_size)
        dtype = spec.get("weights_dtype", "float32")
        if dtype not in WEIGHTS_DTYPES:
            raise BundleError(f"{wf}: unknown weights_dtype {dtype!r}")
        if dtype == "int8":
            # Keras cannot apply the per-channel scales: load a float32 copy of the file.
            with tempfile.TemporaryDirectory(prefix="yt8m-weights-") as tmp:
                plain = Path(tmp) / Path(wf).name
                dequantize_weights_file(wf, plain)
                model.load_weights(str(plain))
        else:  # float32, or float16 that Keras casts back itself
            model.load_weights(str(wf))
        members.append(model)
    return members


class InputContract:
    """``max_frames`` and ``feature_size`` read from a bundle config's input contract.

    Shared by every runtime form of a bundle (Keras here, TFLite and numpy heads in
    ``audio.heads``) so they cannot disagree about the contract.
    """

    config: dict[str, Any]

    @property
    def max_frames(self) -> int:
        return int(self.config["input"]["max_frames"])

    @property
    def feature_size(self) -> int:
        return int(self.config["input"]["feature_size"])


@dataclass
class Bundle(InputContract):
    """A loaded classifier. ``predict`` takes uint8 embeddings, returns float32 scores."""

    name: str
    path: Path
    config: dict[str, Any]
    labels: list[str]
    label_ids: list[str]
    members: list[Any] = field(repr=False)
    _fn: Any = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def _function(self):
        if self._fn is None:
            import tensorflow as tf

            from yt8m.reader import preprocess_frames

            members = self.members
            l2_flags = [member_l2_normalize(self.config, i) for i in range(len(members))]

            # One trace for every batch size and clip length (dynamic input signature).
            @tf.function(input_signature=[
                tf.TensorSpec([None, None, self.feature_size], tf.uint8),
                tf.TensorSpec([None], tf.int32)])
            def fn(frames, num_frames):
                inputs = {l2: preprocess_frames(frames, num_frames, l2) for l2 in set(l2_flags)}
                scores = [m((inputs[l2], num_frames), training=False)
                          for m, l2 in zip(members, l2_flags, strict=True)]
                return tf.add_n(scores) / float(len(scores))

            self._fn = fn
        return self._fn

    def predict(self, embeddings: np.ndarray, num_frames: np.ndarray | None = None) -> np.ndarray:
        """Scores (N, num_classes) float32 for uint8 embeddings (N, frames, feature_size).

        ``num_frames`` defaults to every frame; frames beyond ``max_frames`` are dropped
        (as in training). A clip with 0 frames is scored as if its pooled features were
        all zero (every model masks, so no padding frame ever contributes).
        """
        x = np.asarray(embeddings)
        if x.ndim == 2:
            raise ValueError("embeddings must be (N, frames, feature_size); add a batch axis")
        if x.ndim != 3 or x.shape[2] != self.feature_size:
            raise ValueError(f"embeddings must be (N, frames, {self.feature_size}), got {x.shape}")
        if x.dtype != np.uint8:
            raise TypeError(f"embeddings must be uint8 as stored in the TFRecords, got {x.dtype}")
        n, t = x.shape[0], x.shape[1]
        nf = (np.full(n, t, np.int32) if num_frames is None
              else np.asarray(num_frames, dtype=np.int64).reshape(-1))
        if nf.shape[0] != n:
            raise ValueError(f"num_frames has {nf.shape[0]} entries for {n} clips")
        if np.any(nf < 0) or np.any(nf > t):
            raise ValueError(f"num_frames must be within [0, {t}]")
        t_keep = min(t, self.max_frames)
        x = x[:, :t_keep]
        nf = np.minimum(nf, t_keep).astype(np.int32)
        if n == 0:
            return np.zeros((0, self.num_classes), np.float32)
        fn = self._function()
        out = [fn(x[i: i + PREDICT_CHUNK], nf[i: i + PREDICT_CHUNK]).numpy()
               for i in range(0, n, PREDICT_CHUNK)]
        return np.concatenate(out).astype(np.float32, copy=False)


def load_bundle(name_or_path: str | os.PathLike[str] | None = None,
                models_dir: str | os.PathLike[str] | None = None) -> Bundle:
    """Load a bundle by name (under ``models_dir()``), by path, or the default."""
    path = resolve_bundle_path(name_or_path, models_dir)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise BundleNotFoundError(
            f"classifier bundle not found: {config_path} (train and export one with "
            f"`python -m yt8m.train` and `python -m yt8m.export`, see docs/results.md, or "
            f"set ${MODEL_ENV} to a bundle name or path)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        weight_files = [path / m["weights"] for m in config["members"]]
        config["input"]["feature_size"]
        for i in range(len(config["members"])):
            member_l2_normalize(config, i)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{config_path}: invalid bundle config ({exc})") from None
    missing = [str(w) for w in weight_files if not w.is_file()]
    if not (path / LABELS_FILE).is_file():
        missing.append(str(path / LABELS_FILE))
    if missing:
        raise BundleError(f"bundle {path} is incomplete: missing {', '.join(missing)}")
    label_ids, labels = read_labels(path / LABELS_FILE)
    if len(labels) != int(config["num_classes"]):
        raise BundleError(f"{path / LABELS_FILE}: {len(labels)} labels for "
                          f"{config['num_classes']} classes")
    members = build_members(config, weight_files)
    return Bundle(name=config.get("name", path.name), path=path, config=config,
                  labels=labels, label_ids=label_ids, members=members)

"""Classifiers without TensorFlow: custom numpy heads and TFLite exports of bundles.

Two kinds of classifier can sit behind a backend without TensorFlow at inference:

* **Custom heads** trained by ``python -m audio.train_custom`` on VGGish or YAMNet
  embeddings. A head is a bundle directory with the same layout as ``yt8m``'s bundles
  (``config.json`` + ``labels.csv`` in the same ``index,mid,display_name`` form) but
  ``"format": "numpy-head"`` in its config and its weights in ``head.npz``. It classifies
  every frame (standardise → [dense + ReLU] → dense → softmax or sigmoid) and a window's
  score is the mean of its frames' probabilities: the recipe of TensorFlow's "transfer
  learning with YAMNet" tutorial, and what makes the per-window timeline and
  ``--count`` of a binary detector meaningful.
* **TFLite exports** of a ``yt8m`` bundle (``python -m vggish.export --model NAME``):
  the bundle's whole scoring function (dequantise, per-frame L2 normalisation, every
  ensemble member, averaging) frozen into ``models/exported/<bundle>/classifier.tflite``
  with a sidecar recording the sha256 of the bundle's files, so an edited or retrained
  bundle is never shadowed by a stale export.

:func:`load_classifier` picks, for a bundle path: a numpy head as it is; else a matching
TFLite export; else ``yt8m.inference.load_bundle`` (TensorFlow). Every classifier it
returns has ``name``, ``path``, ``labels``, ``max_frames``, ``num_classes`` and
``predict(uint8 or float (N, T, D), num_frames) -> (N, C) float32``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.inference import InputContract

logger = logging.getLogger(__name__)

HEAD_FORMAT = "numpy-head"
HEAD_WEIGHTS = "head.npz"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.csv"
EXPORT_FILE = "classifier.tflite"
EXPORT_SIDECAR = "export.json"
EMBEDDINGS = ("vggish", "yamnet")


class HeadError(ValueError):
    """A custom head bundle is incomplete or inconsistent (one-line message)."""


def _dequantize(q: np.ndarray) -> np.ndarray:
    from vggish.postprocess import dequantize

    return np.asarray(dequantize(q), dtype=np.float32)


def write_labels(path: Path, names: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for i, name in enumerate(names):
            w.writerow([i, f"custom:{name}", name])


def read_labels(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        names = {int(r["index"]): r["display_name"] for r in rows}
    except (OSError, KeyError, ValueError) as exc:
        raise HeadError(f"{path}: unreadable labels ({exc})") from None
    if sorted(names) != list(range(len(names))):
        raise HeadError(f"{path}: label indices are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


@dataclass
class Head(InputContract):
    """A per-frame classifier in numpy: the runtime form of a custom-trained bundle.

    ``layers`` is a list of (W, b) pairs; every layer but the last is followed by ReLU,
    the last by softmax (``multiclass``) or sigmoid (``detector``).
    """

    name: str
    path: Path
    config: dict[str, Any]
    labels: list[str]
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)

    @property
    def embedding(self) -> str:
        return str(self.config["embedding"])

    @property
    def mode(self) -> str:
        return str(self.config["mode"])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def threshold(self) -> float | None:
        value = self.config.get("threshold")
        return None if value is None else float(value)

    def features(self, frames: np.ndarray) -> np.ndarray:
        """Float features of (..., D) frames: uint8 VGGish embeddings are dequantised."""
        x = np.asarray(frames)
        return _dequantize(x) if x.dtype == np.uint8 else x.astype(np.float32, copy=False)

    def logits(self, frames: np.ndarray) -> np.ndarray:
        h = (self.features(frames) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def frame_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """(F, C) probabilities of each frame of (F, D) features."""
        z = self.logits(frames).astype(np.float64)
        if self.mode == "detector":
            p = 1.0 / (1.0 + np.exp(-z))
        else:
            z = z - z.max(axis=-1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=-1, keepdims=True)
        return p.astype(np.float32)

    def predict(self, embeddings: np.ndarray, num_frames: np.ndarray | None = None) -> np.ndarray:
        """(N, C) clip scores: the mean frame probability over each clip's frames."""
        x = np.asarray(embeddings)
        if x.ndim != 3 or x.shape[2] != self.feature_size:
            raise ValueError(f"embeddings must be (N, frames, {self.feature_size}), got {x.shape}")
        n, t = x.shape[:2]
        nf = np.full(n, t) if num_frames is None else np.asarray(num_frames).reshape(-1)
        out = np.zeros((n, self.num_classes), dtype=np.float32)
        for i in range(n):
            k = int(min(max(nf[i], 0), t))
            if k:
                out[i] = self.frame_probabilities(x[i, :k]).mean(axis=0)
        return out


def save_head(directory: Path, *, name: str, embedding: str, mode: str, labels: Sequence[str],
              mean: np.ndarray, scale: np.ndarray, layers: Sequence[tuple[np.ndarray, np.ndarray]],
              feature_size: int, max_frames: int, threshold: float | None,
              extra: dict[str, Any] | None = None) -> Path:
    """Write a head bundle: ``config.json``, ``labels.csv``, ``head.npz``."""
    if embedding not in EMBEDDINGS:
        raise HeadError(f"unknown embedding {embedding!r}")
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"mean": mean.astype(np.float32),
                                     "scale": scale.astype(np.float32)}
    for i, (w, b) in enumerate(layers):
        arrays[f"w{i}"] = np.asarray(w, np.float32)
        arrays[f"b{i}"] = np.asarray(b, np.float32)
    np.savez(directory / HEAD_WEIGHTS, **arrays)
    write_labels(directory / LABELS_FILE, labels)
    config: dict[str, Any] = {
        "format": HEAD_FORMAT,
        "name": name,
        "embedding": embedding,
        "mode": mode,
        "num_classes": len(labels),
        "num_layers": len(layers),
        "threshold": threshold,
        "weights": HEAD_WEIGHTS,
        "input": {"feature_size": feature_size, "max_frames": max_frames,
                  "dequantize": embedding == "vggish"},
    }
    config.update(extra or {})
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def is_head_bundle(path: Path) -> bool:
    try:
        return json.loads((path / CONFIG_FILE).read_text()).get("format") == HEAD_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def load_head(name_or_path: str | os.PathLike[str]) -> Head:
    """Load a custom head bundle by name (in the models directory) or path."""
    from yt8m.inference import resolve_bundle_path

    path = resolve_bundle_path(name_or_path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise HeadError(f"classifier bundle not found: {config_path}")
    try:
        config = json.loads(config_path.read_text())
        if config.get("format") != HEAD_FORMAT:
            raise HeadError(f"{path} is not a custom head bundle (train one with "
                            "`python -m audio.train_custom`)")
        with np.load(path / config["weights"]) as npz:
            layers = [(npz[f"w{i}"], npz[f"b{i}"]) for i in range(int(config["num_layers"]))]
            mean, scale = npz["mean"], npz["scale"]
        config["input"]["feature_size"]
        config["embedding"]
    except (OSError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, HeadError):
            raise
        raise HeadError(f"{path}: broken custom head bundle ({exc})") from None
    labels = read_labels(path / LABELS_FILE)
    if layers[-1][0].shape[1] != len(labels) or mean.shape[0] != int(config["input"]["feature_size"]):
        raise HeadError(f"{path}: weights do not match {len(labels)} labels / feature size")
    return Head(name=config.get("name", path.name), path=path, config=config, labels=labels,
                mean=mean, scale=scale, layers=layers)


# --- TFLite export of yt8m bundles ----------------------------------------------------


def bundle_fingerprint(path: Path) -> dict[str, str]:
    """sha256 of every file of a bundle (bundles are small: a few MB at most)."""
    out = {}
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def export_dir_for(bundle_path: Path) -> Path:
    from vggish.export import default_export_dir

    return default_export_dir() / bundle_path.resolve().name


def export_bundle(name_or_path: str | os.PathLike[str], out_dir: Path | None = None) -> Path:
    """Freeze a ``yt8m`` bundle's scoring function into a ``.tflite`` (TensorFlow needed).

    The function takes one clip, uint8 ``(1, max_frames, 128)`` zero-padded, and its
    int32 ``(1,)`` frame count, and returns ``(1, C)`` scores, as ``Bundle.predict``.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from vggish.export import ExportError, _atomic_write
    from yt8m.inference import load_bundle

    bundle = load_bundle(name_or_path)
    inner = bundle._function()  # the one tf.function Bundle.predict itself runs

    # A fixed (1, max_frames) input: with dynamic batch and time the converter meets a
    # StridedSlice (the frame mask's new axis) that only TensorFlow's own kernels can run.
    # With static shapes it folds away; clips are zero-padded, their true length given.
    @tf.function(input_signature=[
        tf.TensorSpec([1, bundle.max_frames, bundle.feature_size], tf.uint8, name="frames"),
        tf.TensorSpec([1], tf.int32, name="num_frames")])
    @tf.autograph.experimental.do_not_convert
    def fixed(frames: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
        return inner(frames, num_frames)

    frozen = convert_variables_to_constants_v2(fixed.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    try:
        data = converter.convert()
    except Exception as exc:
        raise ExportError(f"bundle {bundle.path}: TFLite conversion failed: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
                          ) from exc
    out = out_dir or export_dir_for(bundle.path)
    target = out / EXPORT_FILE
    (out / EXPORT_SIDECAR).unlink(missing_ok=True)
    _atomic_write(target, data)
    sidecar = {"bundle": str(bundle.path.resolve()), "files": bundle_fingerprint(bundle.path),
               "tflite_sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
               "tensorflow": tf.__version__}
    _atomic_write(out / EXPORT_SIDECAR, (json.dumps(sidecar, indent=2) + "\n").encode())
    return target


class TFLiteBundle(InputContract):
    """A bundle's exported scoring function run by LiteRT (no TensorFlow)."""

    def __init__(self, bundle_path: Path, tflite_path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        config = json.loads((bundle_path / CONFIG_FILE).read_text())
        self.path = bundle_path
        self.config = config
        self.name = config.get("name", bundle_path.name)
        from yt8m.inference import read_labels as read_bundle_labels

        self.label_ids, self.labels = read_bundle_labels(bundle_path / LABELS_FILE)
        self._it = Interpreter(model_path=str(tflite_path))
        inputs = self._it.get_input_details()
        self._frames_in = next(int(d["index"]) for d in inputs if len(d["shape"]) == 3)
        self._count_in = next(int(d["index"]) for d in inputs if len(d["shape"]) == 1)
        self._out = int(self._it.get_output_details()[0]["index"])
        self._it.allocate_tensors()

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def predict(self, embeddings: np.ndarray, num_frames: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(embeddings)
        if x.ndim != 3 or x.shape[2] != self.feature_size or x.dtype != np.uint8:
            raise ValueError(f"embeddings must be uint8 (N, frames, {self.feature_size}), "
                             f"got {x.dtype} {x.shape}")
        n, t = x.shape[:2]
        t_keep = min(t, self.max_frames)
        x = np.ascontiguousarray(x[:, :t_keep])
        nf = (np.full(n, t_keep) if num_frames is None
              else np.minimum(np.asarray(num_frames).reshape(-1), t_keep)).astype(np.int32)
        out = np.zeros((n, self.num_classes), np.float32)
        clip = np.zeros((1, self.max_frames, self.feature_size), np.uint8)
        for i in range(n):
            clip[:] = 0
            clip[0, :t_keep] = x[i]
            self._it.set_tensor(self._frames_in, clip)
            self._it.set_tensor(self._count_in, nf[i:i + 1])
            self._it.invoke()
            out[i] = self._it.get_tensor(self._out)[0]
        return out


def find_bundle_export(bundle_path: Path) -> Path | None:
    """The ``.tflite`` exported from exactly this bundle's files, else None."""
    out = export_dir_for(bundle_path)
    try:
        sidecar = json.loads((out / EXPORT_SIDECAR).read_text())
    except (OSError, ValueError):
        return None
    if sidecar.get("files") != bundle_fingerprint(bundle_path):
        logger.info("TFLite export of %s is stale (bundle changed); using the bundle", bundle_path)
        return None
    target = out / EXPORT_FILE
    return target if target.is_file() and target.stat().st_size == sidecar.get("size") else None


def load_classifier(name_or_path: str | os.PathLike[str] | None, prefer_tflite: bool = True) -> Any:
    """A custom head, else a matching TFLite export, else the TensorFlow bundle."""
    from yt8m.inference import load_bundle, resolve_bundle_path

    path = resolve_bundle_path(name_or_path)
    if is_head_bundle(path):
        return load_head(path)
    if prefer_tflite and (path / CONFIG_FILE).is_file():
        exported = find_bundle_export(path)
        if exported is not None:
            logger.info("classifier %s: using its TFLite export %s", path, exported)
            return TFLiteBundle(path, exported)
    return load_bundle(path)


def bundle_threshold(name_or_path: str | os.PathLike[str] | None) -> float | None:
    """The decision threshold a detector bundle was tuned with, else None.

    Reads only ``config.json`` (cheap: the entry scripts call it while parsing flags).
    """
    if not name_or_path:
        return None
    from yt8m.inference import resolve_bundle_path

    try:
        config = json.loads((resolve_bundle_path(name_or_path) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("format") != HEAD_FORMAT:
        return None
    value = config.get("threshold")
    return float(value) if isinstance(value, (int, float)) and 0 <= value < 1 else None

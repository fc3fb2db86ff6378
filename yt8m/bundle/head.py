"""The numpy runtime of custom heads: the bundles ``python -m audio.train_custom`` writes.

A head is a bundle directory with the usual ``config.json`` and ``labels.csv`` but
``"format": "numpy-head"`` in its config and its weights in ``head.npz``. It classifies
every frame (standardise → [dense + ReLU] → dense → softmax or sigmoid) and a window's
score is the mean of its frames' probabilities: the recipe of TensorFlow's "transfer
learning with YAMNet" tutorial, and what makes the per-window timeline and ``--count`` of
a binary detector meaningful. Neither training nor inference needs TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.bundle.format import (
    CONFIG_FILE,
    HEAD_FORMAT,
    HEAD_WEIGHTS,
    LABELS_FILE,
    HeadError,
    InputContract,
    read_config,
    read_labels,
    resolve_bundle_path,
)
from yt8m.bundle.writer import BundleWriter

EMBEDDINGS = ("vggish", "yamnet")


def _dequantize(q: np.ndarray) -> np.ndarray:
    from vggish.postprocess import dequantize

    return np.asarray(dequantize(q), dtype=np.float32)


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
    """Write a head bundle: ``config.json``, ``labels.csv`` (mids ``custom:<name>``), ``head.npz``."""
    if embedding not in EMBEDDINGS:
        raise HeadError(f"unknown embedding {embedding!r}")
    writer = BundleWriter(directory)
    arrays: dict[str, np.ndarray] = {"mean": mean.astype(np.float32),
                                     "scale": scale.astype(np.float32)}
    for i, (w, b) in enumerate(layers):
        arrays[f"w{i}"] = np.asarray(w, np.float32)
        arrays[f"b{i}"] = np.asarray(b, np.float32)
    writer.arrays(HEAD_WEIGHTS, arrays)
    writer.labels([f"custom:{label}" for label in labels], labels)
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
    writer.config(config)
    return directory


def is_head_bundle(path: Path) -> bool:
    try:
        return read_config(path).get("format") == HEAD_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def load_head(name_or_path: str | os.PathLike[str]) -> Head:
    """Load a custom head bundle by name (in the models directory) or path."""
    path = resolve_bundle_path(name_or_path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise HeadError(f"classifier bundle not found: {config_path}")
    try:
        config = read_config(path)
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
    _, labels = read_labels(path / LABELS_FILE)
    if layers[-1][0].shape[1] != len(labels) or mean.shape[0] != int(config["input"]["feature_size"]):
        raise HeadError(f"{path}: weights do not match {len(labels)} labels / feature size")
    return Head(name=config.get("name", path.name), path=path, config=config, labels=labels,
                mean=mean, scale=scale, layers=layers)

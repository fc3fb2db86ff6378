"""The small classifier head trained on top of the embeddings, in plain numpy.

Numpy rather than Keras because the head is tiny (logistic regression, or one hidden
layer), full-batch training on a few thousand frames is fast and deterministic, and the
bundle's numpy runtime (``yt8m.bundle``) then runs it without TensorFlow. The forward
pass here is the same arithmetic that runtime does: ReLU hidden layers, then a sigmoid
(detector) or softmax (multi-class) output.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio.custom.data import Clip


def _init_layers(sizes: Sequence[int], rng: np.random.Generator) -> list[list[np.ndarray]]:
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
        layers.append([rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)])
    return layers


def _forward(layers: Sequence[Sequence[np.ndarray]], x: np.ndarray) -> tuple[np.ndarray, list]:
    acts = [x]
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return h, acts


def _probs(z: np.ndarray, binary: bool) -> np.ndarray:
    if binary:
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_head(x: np.ndarray, y: np.ndarray, num_outputs: int, binary: bool, hidden: int,
               l2: float, epochs: int, lr: float, seed: int) -> list[list[np.ndarray]]:
    """Full-batch Adam on class-balanced cross-entropy (+ L2 on weights).

    ``x`` is already standardised. Full batch is fine: a few thousand frames at most for
    the recordings people collect for a custom class, and it makes training deterministic.
    """
    rng = np.random.default_rng(seed)
    sizes = [x.shape[1], *([hidden] if hidden else []), num_outputs]
    layers = _init_layers(sizes, rng)
    if binary:
        pos = max(1, int(y.sum()))
        neg = max(1, len(y) - pos)
        weights = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * neg))
        target = y.reshape(-1, 1).astype(np.float64)
    else:
        counts = np.bincount(y, minlength=num_outputs).astype(np.float64)
        weights = len(y) / (num_outputs * np.maximum(counts, 1))[y]
        target = np.eye(num_outputs)[y]
    weights = weights / weights.sum()
    m = [[np.zeros_like(p) for p in layer] for layer in layers]
    v = [[np.zeros_like(p) for p in layer] for layer in layers]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, epochs + 1):
        z, acts = _forward(layers, x)
        grad = (_probs(z, binary) - target) * weights[:, None]  # d loss / d logits
        for i in range(len(layers) - 1, -1, -1):
            w, _ = layers[i]
            gw = acts[i].T @ grad + l2 * w
            gb = grad.sum(axis=0)
            if i > 0:
                grad = (grad @ w.T) * (acts[i] > 0)
            for j, g in enumerate((gw, gb)):
                m[i][j] = beta1 * m[i][j] + (1 - beta1) * g
                v[i][j] = beta2 * v[i][j] + (1 - beta2) * g * g
                mhat = m[i][j] / (1 - beta1**step)
                vhat = v[i][j] / (1 - beta2**step)
                layers[i][j] = layers[i][j] - lr * mhat / (np.sqrt(vhat) + eps)
    return layers


@dataclass(frozen=True)
class Head:
    """A trained head with the standardisation it was trained under.

    The two only make sense together (the bundle stores both), so evaluation goes through
    this object and cannot score raw, unstandardised frames by mistake.
    """

    layers: list[list[np.ndarray]]
    mean: np.ndarray
    scale: np.ndarray
    binary: bool

    def frame_probs(self, x: np.ndarray) -> np.ndarray:
        """Per-frame probabilities: (F, 1) for a detector, (F, classes) otherwise."""
        z, _ = _forward(self.layers, (x - self.mean) / self.scale)
        return _probs(z, self.binary)

    def clip_scores(self, part: Sequence[Clip], feats: Mapping[Path, np.ndarray]) -> np.ndarray:
        """A clip's score is the mean of its frames' probabilities, as in the entry scripts."""
        return np.array([self.frame_probs(feats[c.path]).mean(axis=0) for c in part])


def fit_head(x: np.ndarray, y: np.ndarray, num_outputs: int, binary: bool, hidden: int,
             l2: float, epochs: int, lr: float, seed: int) -> Head:
    """Standardise with the training frames' statistics, then :func:`train_head`."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    layers = train_head((x - mean) / scale, y, num_outputs, binary, hidden, l2, epochs, lr, seed)
    return Head(layers, mean, scale, binary)

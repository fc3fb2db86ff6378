"""Per-class decision thresholds chosen on held-out scores, and the F1 they give.

Pure numpy. ``scores`` are (N, C) classifier outputs, ``labels`` (N, C) 0/1. A class is
predicted when its score is **strictly above** its threshold, as
``audio.pipeline.WavProcessor.rank`` decides. Each chosen threshold lies halfway between
the lowest score kept and the highest score left out, so ``>`` and ``>=`` (the event
detector's start test) make the same decisions on the scores it was chosen on, and a
score on the other side of a tie group is never split from it.

Choices, per class, over every cut between distinct scores (ties are one cut):

* **max F1**: the cut of highest F1 (the highest threshold among equal F1: fewer false
  alarms for the same F1);
* **precision ≥ p**: the lowest threshold (deepest cut) whose precision is at least
  ``p``; none when no cut reaches it;
* a class without positives gets neither (NaN): :func:`with_fallback` fills them.

**Shrinkage.** With a few validation positives per class (AudioSet's balanced split holds
~59 clips per class, so a 10 % split ~6), a class's max-F1 threshold is mostly noise: on
the shipped bundles' validation splits, thresholds chosen on four folds lose F1 on the
fifth against one global threshold. :func:`shrink` pulls each toward the global threshold
in logit space with weight ``P / (P + k)`` (``P``: the class's validation positives), and
:func:`cross_validate_shrinkage` picks ``k`` by K-fold cross-validation *within* the
validation split (``k = 0``: the raw per-class thresholds; ``inf``: the global one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SHRINKAGE_GRID",
    "ClassThresholds",
    "F1Summary",
    "best_global_threshold",
    "choose_thresholds",
    "counts_at",
    "cross_validate_shrinkage",
    "f1_summary",
    "global_grid",
    "precision_recall",
    "shrink",
    "with_fallback",
]

SHRINKAGE_GRID = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, float("inf"))
TOP = float(np.nextafter(1.0, 0.0))
"""Thresholds are kept below 1 (``yt8m.bundle.class_thresholds`` requires [0, 1))."""


@dataclass(frozen=True)
class ClassThresholds:
    """What :func:`choose_thresholds` found on one set of scores (arrays of length C)."""

    max_f1: np.ndarray
    """Threshold of maximum F1; NaN for a class without positives."""
    precise: np.ndarray
    """Lowest threshold with precision >= ``min_precision``; NaN where none reaches it."""
    f1: np.ndarray
    """F1 at ``max_f1`` on the scores it was chosen on (NaN without positives)."""
    positives: np.ndarray
    min_precision: float


@dataclass(frozen=True)
class F1Summary:
    """Micro and macro F1 of one set of thresholds (macro over classes with positives)."""

    micro_f1: float
    macro_f1: float
    micro_precision: float
    micro_recall: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in self.__dict__.items()}


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels) > 0
    if s.ndim != 2 or s.shape != y.shape or s.shape[0] == 0:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be equal non-empty "
                         f"(N, C) arrays")
    return s, y


def _midpoints(sorted_scores: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Threshold between row ``cut`` (kept) and row ``cut + 1`` (left out), per column."""
    n, c = sorted_scores.shape
    cols = np.arange(c)
    cut = np.clip(cut, 0, n - 1)
    kept = sorted_scores[cut, cols]
    below = np.where(cut + 1 < n, sorted_scores[np.minimum(cut + 1, n - 1), cols], 0.0)
    # The last row: halfway down to 0 (a score of exactly 0 cannot pass ``> t`` for any
    # t in [0, 1); classifier scores are sigmoids, never 0).
    below = np.minimum(below, kept)
    return np.minimum((kept + below) / 2.0, TOP)


def choose_thresholds(scores: np.ndarray, labels: np.ndarray,
                      min_precision: float = 0.8) -> ClassThresholds:
    """Each class's max-F1 threshold and lowest threshold of precision >= ``min_precision``."""
    s, y = _check(scores, labels)
    n, _ = s.shape
    order = np.argsort(-s, axis=0, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=0)
    tp = np.cumsum(np.take_along_axis(y, order, axis=0), axis=0, dtype=np.int64)
    kept = np.arange(1, n + 1)[:, None]
    positives = tp[-1]
    is_end = np.ones_like(s_sorted, dtype=bool)
    is_end[:-1] = s_sorted[:-1] != s_sorted[1:]
    f1 = np.where(is_end, 2.0 * tp / (kept + positives), -1.0)
    best = np.argmax(f1, axis=0)  # first maximum: the highest threshold of equal F1
    precise_ok = is_end & (tp >= min_precision * kept) & (tp > 0)
    deepest = np.where(precise_ok, np.arange(n)[:, None], -1).max(axis=0)
    has = positives > 0
    cols = np.arange(s.shape[1])
    return ClassThresholds(
        max_f1=np.where(has, _midpoints(s_sorted, best), np.nan),
        precise=np.where(has & (deepest >= 0), _midpoints(s_sorted, deepest), np.nan),
        f1=np.where(has, f1[best, cols], np.nan),
        positives=positives,
        min_precision=float(min_precision),
    )


def with_fallback(thresholds: np.ndarray, fallback: float) -> np.ndarray:
    """``thresholds`` with NaN (no choice possible) replaced by ``fallback``."""
    t = np.asarray(thresholds, dtype=np.float64)
    return np.where(np.isnan(t), float(fallback), t)


def counts_at(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives and positives at ``score > threshold``."""
    s, y = _check(scores, labels)
    predicted = s > np.broadcast_to(np.asarray(thresholds, dtype=np.float64), s.shape[1:])
    tp = (predicted & y).sum(axis=0)
    fp = (predicted & ~y).sum(axis=0)
    return tp, fp, y.sum(axis=0)


def precision_recall(tp: np.ndarray, fp: np.ndarray, positives: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision (NaN when nothing is predicted) and recall (NaN without positives)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        recall = np.where(positives > 0, tp / np.maximum(positives, 1), np.nan)
    return precision, recall


def f1_summary(scores: np.ndarray, labels: np.ndarray,
               thresholds: np.ndarray | float) -> F1Summary:
    """Micro F1 (pooled counts) and macro F1 (mean over classes with a positive; a class
    that predicts nothing right scores 0)."""
    tp, fp, pos = counts_at(scores, labels, thresholds)
    return _summary(tp, fp, pos)


def _summary(tp: np.ndarray, fp: np.ndarray, pos: np.ndarray) -> F1Summary:
    fn = pos - tp
    has = pos > 0
    per_class = 2.0 * tp[has] / (2.0 * tp[has] + fp[has] + fn[has])
    t, f, m = int(tp.sum()), int(fp.sum()), int(fn.sum())
    return F1Summary(
        micro_f1=2.0 * t / (2 * t + f + m) if t else 0.0,
        macro_f1=float(per_class.mean()) if per_class.size else 0.0,
        micro_precision=t / (t + f) if t + f else 0.0,
        micro_recall=t / (t + m) if t + m else 0.0,
    )


def global_grid() -> np.ndarray:
    """Candidate single thresholds: 0.001 steps up to 0.1 (most scores are small), then
    0.005 steps to 0.995."""
    return np.unique(np.round(np.concatenate([np.arange(1, 100) / 1000.0,
                                              np.arange(20, 200) / 200.0]), 6))


def best_global_threshold(scores: np.ndarray, labels: np.ndarray, metric: str = "micro_f1",
                          grid: np.ndarray | None = None) -> tuple[float, F1Summary]:
    """The one threshold of ``grid`` (default :func:`global_grid`) that maximises
    ``metric`` (``micro_f1`` or ``macro_f1``) for every class at once; the lowest of equals."""
    if metric not in ("micro_f1", "macro_f1"):
        raise ValueError(f"metric must be micro_f1 or macro_f1, got {metric!r}")
    s, y = _check(scores, labels)
    candidates = global_grid() if grid is None else np.asarray(grid, dtype=np.float64)
    best: tuple[float, F1Summary] | None = None
    for t in candidates:
        summary = _summary(*counts_at(s, y, float(t)))
        if best is None or getattr(summary, metric) > getattr(best[1], metric):
            best = (float(t), summary)
    if best is None:
        raise ValueError("the threshold grid is empty")
    return best


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def shrink(max_f1: np.ndarray, positives: np.ndarray, global_threshold: float,
           k: float) -> np.ndarray:
    """Per-class thresholds pulled toward ``global_threshold``: in logit space, weight
    ``P / (P + k)`` on the class's own (NaN, no positives: the global one)."""
    p = np.asarray(positives, dtype=np.float64)
    if np.isinf(k):
        w = np.zeros_like(p)
    else:
        w = np.divide(p, p + k, out=(p > 0).astype(np.float64), where=(p + k) > 0)
    own = with_fallback(max_f1, global_threshold)
    mixed = w * _logit(own) + (1 - w) * _logit(global_threshold)
    out = np.minimum(1.0 / (1.0 + np.exp(-mixed)), TOP)
    # The end points exactly (no round trip through the logit).
    return np.where(w == 0, float(global_threshold), np.where(w == 1, own, out))


def cross_validate_shrinkage(scores: np.ndarray, labels: np.ndarray,
                             grid: tuple[float, ...] = SHRINKAGE_GRID, folds: int = 5,
                             seed: int = 0, metric: str = "macro_f1"
                             ) -> tuple[float, dict[float, F1Summary]]:
    """The ``k`` of ``grid`` whose thresholds, chosen on ``folds - 1`` folds of these clips
    (and shrunk toward the global threshold of best ``metric`` there), give the best mean
    ``metric`` on the fold left out (the smallest of equals), and each ``k``'s mean
    figures. Folds are a seeded permutation."""
    s, y = _check(scores, labels)
    fold = np.random.default_rng(seed).permutation(s.shape[0]) % folds
    sums = {k: np.zeros(4) for k in grid}
    for f in range(folds):
        fit, held = fold != f, fold == f
        chosen = choose_thresholds(s[fit], y[fit])
        g, _ = best_global_threshold(s[fit], y[fit], metric)
        for k in grid:
            t = shrink(chosen.max_f1, chosen.positives, g, k)
            sums[k] += list(f1_summary(s[held], y[held], t).as_dict().values())
    means = {k: F1Summary(*(v / folds)) for k, v in sums.items()}
    best = max(grid, key=lambda k: (round(getattr(means[k], metric), 9), -k))
    return best, means

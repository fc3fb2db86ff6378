"""Evaluation metrics: YouTube-8M's (hit@1, PERR, GAP@20) and AudioSet's (mAP, AUC, d′).

Pure numpy/scipy (no TensorFlow), vectorised: 20,000 clips × 527 classes evaluate in a
couple of seconds. ``predictions`` are (N, C) scores, ``labels`` (N, C) 0/1.

Conventions, chosen explicitly and unit-tested:

* **Clips without labels** count in the denominator of hit@1 and PERR and score 0 there
  (YouTube-8M ``eval_util`` divides by the number of clips); they add nothing to GAP.
* **Classes without positives** are left out of mAP, AUC and d′ (their AP/AUC is
  undefined); classes without negatives are left out of AUC as well.
* **Ties.** hit@1 takes the lowest class index among equal top scores (``argmax``);
  PERR ranks equal scores by class index. Average precision (mAP and GAP) treats equal
  scores as one threshold, like ``sklearn.metrics.average_precision_score`` (which
  AudioSet's published mAP uses), so the result never depends on input order.
  (YouTube-8M shuffles ties with a fixed seed instead.)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

__all__ = [
    "average_precision",
    "d_prime",
    "evaluate",
    "gap",
    "hit_at_one",
    "macro_auc",
    "mean_average_precision",
    "per_class_auc",
    "per_class_average_precision",
    "perr",
]


def _check(predictions: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"predictions {p.shape} and labels {y.shape} must be equal (N, C) arrays")
    return p, (y > 0)


def hit_at_one(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of clips whose top-scoring class is one of their labels."""
    p, y = _check(predictions, labels)
    if p.shape[0] == 0:
        return 0.0
    top = np.argmax(p, axis=1)
    return float(np.mean(y[np.arange(p.shape[0]), top]))


def perr(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Precision at equal recall rate: a clip with k labels scores the precision of its
    top k predictions; averaged over all clips (label-less clips score 0)."""
    p, y = _check(predictions, labels)
    n = p.shape[0]
    if n == 0:
        return 0.0
    k = y.sum(axis=1)
    order = np.argsort(-p, axis=1, kind="stable")
    hits = np.cumsum(np.take_along_axis(y, order, axis=1), axis=1)
    has = k > 0
    rows = np.nonzero(has)[0]
    precision = hits[rows, k[rows] - 1] / k[rows]
    return float(precision.sum() / n)


def average_precision(scores: np.ndarray, relevant: np.ndarray,
                      num_positives: int | None = None) -> float:
    """AP of one ranked list, ties as one threshold. ``num_positives`` defaults to the
    number of relevant items; GAP passes the total including items outside the list."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    r = np.asarray(relevant).reshape(-1, 1)
    total = int(r.sum()) if num_positives is None else int(num_positives)
    if total <= 0:
        return 0.0
    return float(_ap_columns(s, r > 0, np.array([total]))[0])


def _ap_columns(scores: np.ndarray, relevant: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """AP of every column at once: each relevant item contributes the precision at the
    end of its group of tied scores, divided by the column's number of positives."""
    n = scores.shape[0]
    if n == 0:
        return np.zeros(scores.shape[1])
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    r = np.take_along_axis(relevant, order, axis=0)
    tp = np.cumsum(r, axis=0, dtype=np.int64)
    is_end = np.ones_like(s, dtype=bool)
    is_end[:-1] = s[:-1] != s[1:]
    idx = np.arange(n)[:, None]
    # Index of the end of each item's tie group: reverse running minimum of group ends.
    group_end = np.minimum.accumulate(np.where(is_end, idx, n)[::-1], axis=0)[::-1]
    precision_at_end = np.take_along_axis(tp, group_end, axis=0) / (group_end + 1.0)
    contrib = np.where(r, precision_at_end, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, contrib / np.maximum(totals, 1), 0.0)


def gap(predictions: np.ndarray, labels: np.ndarray, top_k: int = 20) -> float:
    """Global average precision over the pooled top-``top_k`` predictions of every clip,
    normalised by the total number of labels (YouTube-8M ``calculate_gap``)."""
    p, y = _check(predictions, labels)
    n, c = p.shape
    total = int(y.sum())
    if n == 0 or total == 0:
        return 0.0
    k = min(top_k, c)
    top = np.argpartition(-p, k - 1, axis=1)[:, :k] if k < c else np.tile(np.arange(c), (n, 1))
    pooled_scores = np.take_along_axis(p, top, axis=1).reshape(-1, 1)
    pooled_relevant = np.take_along_axis(y, top, axis=1).reshape(-1, 1)
    return float(_ap_columns(pooled_scores, pooled_relevant, np.array([total]))[0])


def per_class_average_precision(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP of each class over all clips; NaN for classes without positives."""
    p, y = _check(predictions, labels)
    totals = y.sum(axis=0)
    ap = _ap_columns(p, y, totals)
    return np.where(totals > 0, ap, np.nan)


def mean_average_precision(predictions: np.ndarray, labels: np.ndarray) -> float:
    """AudioSet mAP: mean per-class AP over the classes that have a positive clip."""
    ap = per_class_average_precision(predictions, labels)
    return float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else 0.0


def per_class_auc(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of each class (Mann–Whitney, ties count ½); NaN without both classes."""
    p, y = _check(predictions, labels)
    n = p.shape[0]
    pos = y.sum(axis=0)
    neg = n - pos
    if n == 0:
        return np.full(p.shape[1], np.nan)
    ranks = stats.rankdata(p, axis=0)  # average ranks for ties
    rank_sum = np.where(y, ranks, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)
    return np.where((pos > 0) & (neg > 0), auc, np.nan)


def macro_auc(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Mean ROC AUC over the classes that have both positives and negatives."""
    auc = per_class_auc(predictions, labels)
    return float(np.nanmean(auc)) if np.any(~np.isnan(auc)) else float("nan")


def d_prime(auc: float) -> float:
    """d′ = √2 · Φ⁻¹(AUC), the AudioSet papers' sensitivity index."""
    return float(math.sqrt(2.0) * special.ndtri(auc))


def evaluate(predictions: np.ndarray, labels: np.ndarray, top_k: int = 20) -> dict[str, float]:
    """All metrics in one dict (the eval CLI's JSON)."""
    auc = macro_auc(predictions, labels)
    return {
        "hit_at_one": hit_at_one(predictions, labels),
        "perr": perr(predictions, labels),
        "gap": gap(predictions, labels, top_k=top_k),
        "map": mean_average_precision(predictions, labels),
        "auc": auc,
        "d_prime": d_prime(auc),
        "num_clips": int(np.asarray(labels).shape[0]),
        "num_classes_with_positives": int((np.asarray(labels) > 0).any(axis=0).sum()),
    }

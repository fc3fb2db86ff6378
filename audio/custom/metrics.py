"""How well a custom head does on the held-out files, and the detector's threshold.

Scores are at clip level (a file's frames averaged), because that is what the entry
scripts report for a recording; the detector's threshold is chosen on the validation
files only, so the test files stay an honest estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio.custom.data import Clip, stack_frames
from audio.custom.head import Head


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t, p] += 1
    return cm


def prf(cm: np.ndarray) -> list[tuple[float, float, float, int]]:
    """Per-class (precision, recall, F1, support) from a confusion matrix (rows: truth)."""
    out = []
    for k in range(cm.shape[0]):
        tp = cm[k, k]
        p = tp / cm[:, k].sum() if cm[:, k].sum() else 0.0
        r = tp / cm[k].sum() if cm[k].sum() else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out.append((float(p), float(r), float(f), int(cm[k].sum())))
    return out


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising F1 of ``score > t``: midway between adjacent scores."""
    order = np.unique(scores)
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2])
    best, best_t = -1.0, 0.5
    for t in candidates:
        pred = scores > t
        tp = np.sum(pred & (labels == 1))
        fp = np.sum(pred & (labels == 0))
        fn = np.sum(~pred & (labels == 1))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best:
            best, best_t = f1, float(t)
    return float(np.clip(best_t, 1e-4, 1 - 1e-4))


def format_report(names: Sequence[str], cm: np.ndarray) -> str:
    width = max(12, *(len(n) for n in names)) + 2
    lines = [f"{'class':<{width}}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>9}"]
    stats = prf(cm)
    for name, (p, r, f, s) in zip(names, stats, strict=True):
        lines.append(f"{name:<{width}}{p:>10.3f}{r:>10.3f}{f:>10.3f}{s:>9d}")
    macro = np.mean([s[2] for s in stats])
    acc = np.trace(cm) / max(1, cm.sum())
    lines.append(f"{'accuracy':<{width}}{acc:>30.3f}{int(cm.sum()):>9d}")
    lines.append(f"{'macro F1':<{width}}{macro:>30.3f}")
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    short = [n[:10] for n in names]
    lines.append(" " * width + "".join(f"{s:>11}" for s in short))
    for name, row in zip(names, cm, strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>11d}" for v in row))
    return "\n".join(lines)


@dataclass(frozen=True)
class Evaluation:
    """The held-out result: report rows, confusion matrix, and the detector's threshold."""

    names: list[str]
    cm: np.ndarray
    threshold: float | None

    def report(self) -> str:
        return format_report(self.names, self.cm)

    def metrics(self, train: Sequence[Clip], val: Sequence[Clip],
                test: Sequence[Clip]) -> dict[str, Any]:
        """What ``metrics.json`` holds (key order is the file's order)."""
        cm = self.cm
        return {
            "test_files": len(test), "train_files": len(train), "validation_files": len(val),
            "accuracy": float(np.trace(cm) / max(1, cm.sum())),
            "per_class": {n: {"precision": p, "recall": r, "f1": f, "support": s}
                          for n, (p, r, f, s) in zip(self.names, prf(cm), strict=True)},
            "confusion": cm.tolist(), "threshold": self.threshold,
        }


def evaluate_detector(head: Head, feats: Mapping[Path, np.ndarray], target: str,
                      val: Sequence[Clip], test: Sequence[Clip]) -> Evaluation:
    """Tune the threshold for max frame-level F1 on the validation files, then apply it
    to the test clips. Rows/columns: 0 = not target, 1 = target."""
    x_val, y_val = stack_frames(val, feats)
    threshold = best_f1_threshold(head.frame_probs(x_val)[:, 0], y_val)
    s_test = head.clip_scores(test, feats)[:, 0]
    pred = (s_test > threshold).astype(int)
    cm = confusion([c.label for c in test], pred.tolist(), 2)
    return Evaluation([f"not {target}", target], cm, threshold)


def evaluate_multiclass(head: Head, feats: Mapping[Path, np.ndarray], names: list[str],
                        test: Sequence[Clip]) -> Evaluation:
    """Each test clip goes to its highest-scoring class."""
    s_test = head.clip_scores(test, feats)
    cm = confusion([c.label for c in test], s_test.argmax(axis=1).tolist(), len(names))
    return Evaluation(names, cm, None)

"""yt8m.metrics against values computed by hand (ties, label-less clips, empty classes)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from yt8m import metrics as M

# 3 clips × 4 classes.
P = np.array([[0.9, 0.8, 0.1, 0.0],
              [0.2, 0.7, 0.6, 0.1],
              [0.5, 0.4, 0.3, 0.2]])
Y = np.array([[0, 1, 0, 0],
              [0, 1, 1, 0],
              [1, 0, 0, 0]])


def test_hit_at_one_hand_computed():
    # top classes 0, 1, 0 → miss, hit, hit
    assert M.hit_at_one(P, Y) == pytest.approx(2 / 3)


def test_hit_at_one_tie_takes_lowest_index_and_labelless_clip_counts_as_miss():
    p = np.array([[0.5, 0.5], [0.1, 0.9], [0.3, 0.2]])
    y = np.array([[0, 1], [0, 1], [0, 0]])
    # clip 0: tie → class 0 → miss; clip 1 hit; clip 2 has no label → miss
    assert M.hit_at_one(p, y) == pytest.approx(1 / 3)


def test_perr_hand_computed():
    # clip0 k=1: top1 = class0 → 0; clip1 k=2: top2 = {1, 2} → 1; clip2 k=1: class0 → 1
    assert M.perr(P, Y) == pytest.approx(2 / 3)


def test_perr_labelless_clip_in_denominator_and_ties_by_index():
    p = np.array([[0.5, 0.5, 0.5], [0.2, 0.1, 0.0]])
    y = np.array([[0, 0, 1], [0, 0, 0]])
    # clip 0: k=1, tied scores ranked by index → class 0 → precision 0; clip 1: no labels.
    assert M.perr(p, y) == 0.0
    y2 = np.array([[1, 0, 1], [0, 0, 0]])
    # clip 0: k=2, top-2 = classes 0, 1 → 1/2; averaged over 2 clips → 1/4
    assert M.perr(p, y2) == pytest.approx(0.25)


def test_average_precision_hand_computed_and_ties_as_one_threshold():
    # ranked relevant: 1,0,1 → (1/1 + 2/3)/2
    assert M.average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    # all three tied: one threshold, precision 2/3 for both positives → 2/3, any order
    assert M.average_precision([0.5, 0.5, 0.5], [1, 0, 1]) == pytest.approx(2 / 3)
    assert M.average_precision([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(2 / 3)
    # explicit total (GAP): positives outside the list lower the AP
    assert M.average_precision([0.9], [1], num_positives=4) == pytest.approx(0.25)
    assert M.average_precision([0.9], [0]) == 0.0


def test_gap_hand_computed():
    # top-2 per clip pooled: (0.9,0) (0.8,1) (0.7,1) (0.6,1) (0.5,1) (0.4,0); 4 labels.
    # precisions at positives: 1/2, 2/3, 3/4, 4/5 → sum/4
    expected = (1 / 2 + 2 / 3 + 3 / 4 + 4 / 5) / 4
    assert M.gap(P, Y, top_k=2) == pytest.approx(expected)
    # top-1: (0.9,0) (0.7,1) (0.5,1) → (1/2 + 2/3) / 4
    assert M.gap(P, Y, top_k=1) == pytest.approx((1 / 2 + 2 / 3) / 4)
    assert M.gap(P, Y, top_k=20) == pytest.approx(M.gap(P, Y, top_k=4))


def test_map_skips_classes_without_positives():
    # class 0: clip2 (0.5) ranks 2nd of 3 (0.9, 0.5, 0.2) → AP 1/2
    # class 1: scores 0.8(+), 0.7(+), 0.4 → AP 1; class 2: 0.6(+) top → 1; class 3: none
    ap = M.per_class_average_precision(P, Y)
    assert ap[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert math.isnan(ap[3])
    assert M.mean_average_precision(P, Y) == pytest.approx(2.5 / 3)


def test_auc_and_d_prime_hand_computed():
    # class 0: positive 0.5 vs negatives 0.9, 0.2 → 1/2; class 1: 1; class 2: 1; class 3: NaN
    auc = M.per_class_auc(P, Y)
    assert auc[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert math.isnan(auc[3])
    assert M.macro_auc(P, Y) == pytest.approx(2.5 / 3)
    # ties count one half
    assert M.per_class_auc(np.array([[0.5], [0.5]]), np.array([[1], [0]]))[0] == 0.5
    assert M.d_prime(0.5) == pytest.approx(0.0)
    assert M.d_prime(0.9) == pytest.approx(math.sqrt(2) * 1.2815515655446004)


def test_evaluate_keys_and_shape_errors():
    result = M.evaluate(P, Y)
    assert set(result) >= {"hit_at_one", "perr", "gap", "map", "auc", "d_prime", "num_clips"}
    assert result["num_clips"] == 3
    with pytest.raises(ValueError):
        M.hit_at_one(P, Y[:2])


def test_matches_loop_reference_on_random_data(rng):
    """The vectorised AP agrees with a plain per-class loop (no ties in random floats)."""
    p = rng.random((200, 30))
    y = (rng.random((200, 30)) < 0.1).astype(int)
    for c in range(30):
        order = np.argsort(-p[:, c])
        rel = y[order, c]
        if rel.sum() == 0:
            continue
        prec = np.cumsum(rel) / (np.arange(len(rel)) + 1)
        expected = float((prec * rel).sum() / rel.sum())
        assert M.per_class_average_precision(p, y)[c] == pytest.approx(expected)


def test_metrics_module_does_not_import_tensorflow():
    code = "import sys, yt8m.metrics; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

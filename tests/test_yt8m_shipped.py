"""The shipped classifier bundles: complete, small, calibrated, and their published
metrics hold.

The slow tests evaluate each bundle on the real AudioSet eval split (``../shared``; CI
requires it) through ``load_keras_bundle``/``predict`` and compare with the figures it
publishes in ``metrics.json`` and ``class_metrics.csv`` — recomputed here, never copied.
Scoring the eval split is the cost (about a minute for the six-member ensemble on two
cores); once scored, every class's AP is recomputed (a fraction of a second), so the
check covers all 527 classes rather than a sample.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from yt8m import bundle as bundles
from yt8m.bundle.edge import STUDENT_BUNDLE
from yt8m.paths import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "models" / bundles.DEFAULT_BUNDLE
SHIPPED_BUNDLES = (bundles.DEFAULT_BUNDLE, "audioset-logistic-v1", STUDENT_BUNDLE)
TOLERANCE = 0.005


def test_default_bundle_is_committed_complete_and_small():
    assert (SHIPPED / "config.json").is_file(), f"{SHIPPED} missing"
    names = {p.name for p in SHIPPED.iterdir()}
    assert {"config.json", "labels.csv", "provenance.json", "metrics.json"} <= names
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["name"] == bundles.DEFAULT_BUNDLE
    assert config["input"]["dequantize"] is True
    assert {"max_frames", "feature_size"} <= set(config["input"])
    for i, member in enumerate(config["members"]):
        assert member["weights"] in names
        assert isinstance(bundles.member_l2_normalize(config, i), bool)
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 20e6
    prov = json.loads((SHIPPED / "provenance.json").read_text())
    assert prov["export_command"] and prov["git"]["commit"]
    for member in prov["members"]:
        assert member["train_data"]["pattern"].endswith("bal_train/*.tfrecord")
        assert member["train_wall_seconds"] > 0 and member["git"]["commit"]


@pytest.mark.shared
def test_labels_are_derived_from_audioset_class_list(shared_dir):
    source = shared_dir / "data" / "audioset_v1_embeddings" / "class_labels_indices.csv"
    with open(source, newline="", encoding="utf-8") as f:
        expected = [(r["index"], r["mid"], r["display_name"]) for r in csv.DictReader(f)]
    with open(SHIPPED / "labels.csv", newline="", encoding="utf-8") as f:
        shipped = [(r["index"], r["mid"], r["display_name"]) for r in csv.DictReader(f)]
    assert shipped == expected and len(shipped) == 527


@pytest.fixture(scope="module")
def eval_scores(shared_dir):
    """Each shipped bundle's scores on the eval split, with the labels (scored once)."""
    from yt8m.reader import load_clips

    pattern = str(shared_dir / "data" / "audioset_v1_embeddings" / "eval" / "*.tfrecord")
    clips = load_clips(pattern)
    cache = {}

    def scores(name: str):
        if name not in cache:
            bundle = bundles.load_keras_bundle(name)
            cache[name] = bundle.predict(clips.frames, clips.num_frames)
        return cache[name], clips.labels

    return scores


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED_BUNDLES)
def test_shipped_bundle_metrics_on_eval_split(name, eval_scores):
    from yt8m.metrics import evaluate

    published = json.loads((PROJECT_ROOT / "models" / name / "metrics.json").read_text())
    measured = evaluate(*eval_scores(name), top_k=published["top_k"])
    assert measured["num_clips"] == published["num_clips"]
    for key in ("hit_at_one", "perr", "gap", "map", "auc", "d_prime"):
        assert measured[key] == pytest.approx(published[key], abs=TOLERANCE), key


def _class_rows(path):
    with open(path / bundles.CLASS_METRICS_FILE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", SHIPPED_BUNDLES)
def test_shipped_bundles_carry_their_calibration(name):
    path = PROJECT_ROOT / "models" / name
    config = json.loads((path / "config.json").read_text())
    _, labels = bundles.read_labels(path / "labels.csv")
    rows = _class_rows(path)
    assert [r["display_name"] for r in rows] == labels
    assert [float(r["threshold"]) for r in rows] == config["class_thresholds"]
    assert [float(r["threshold_p80"]) if r["threshold_p80"] else None
            for r in rows] == config["class_thresholds_p80"]
    assert bundles.class_thresholds(config, labels) == dict(
        zip(labels, config["class_thresholds"], strict=True))
    record = json.loads((path / bundles.CALIBRATION_FILE).read_text())
    assert record["validation"]["clips"] > 0 and record["eval"]["clips"] == 20371
    assert sum(p.stat().st_size for p in path.iterdir()) < 20e6


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED_BUNDLES)
def test_class_metrics_match_the_bundle_on_eval(name, eval_scores):
    """Every class's AP and AUC recomputed from the bundle's own eval scores, and the
    precision and recall at its threshold."""
    from yt8m import thresholds
    from yt8m.metrics import per_class_auc, per_class_average_precision

    scores, labels = eval_scores(name)
    rows = _class_rows(PROJECT_ROOT / "models" / name)
    ap = per_class_average_precision(scores, labels)
    auc = per_class_auc(scores, labels)
    limits = [float(r["threshold"]) for r in rows]
    precision, recall = thresholds.precision_recall(
        *thresholds.counts_at(scores, labels, np.array(limits)))
    for i, r in enumerate(rows):
        assert int(r["eval_positives"]) == int(labels[:, i].sum())
        for column, measured in (("ap", ap), ("auc", auc), ("precision", precision),
                                 ("recall", recall)):
            if r[column]:
                assert float(r[column]) == pytest.approx(measured[i], abs=TOLERANCE), (
                    r["display_name"], column)
            else:
                assert np.isnan(measured[i]), (r["display_name"], column)


def test_student_is_one_small_distilled_model():
    """The edge student: one model, int8 weights, ≤ 4 MB, distilled from the ensemble."""
    path = PROJECT_ROOT / "models" / STUDENT_BUNDLE
    config = json.loads((path / "config.json").read_text())
    assert len(config["members"]) == 1 and config["members"][0]["weights_dtype"] == "int8"
    assert sum(p.stat().st_size for p in path.iterdir()) <= 4e6
    (member,) = json.loads((path / "provenance.json").read_text())["members"]
    assert member["distillation"]["teacher"] == bundles.DEFAULT_BUNDLE
    assert member["train_data"]["pattern"].endswith("bal_train/*.tfrecord")


@pytest.mark.slow
def test_student_tflite_export_is_small(tmp_path):
    """Its TFLite export keeps int8 weights: ≤ 5 MB (the float32 ensemble's was 76 MB)."""
    out = bundles.export_bundle(STUDENT_BUNDLE, out_dir=tmp_path)
    assert out.stat().st_size <= 5e6
    assert json.loads((tmp_path / "export.json").read_text())["weights"] == "int8"

"""The shipped classifier bundle: complete, small, and its published metrics hold.

The last test evaluates the bundle on the real AudioSet eval split (``../shared``; CI
requires it) through ``load_keras_bundle``/``predict`` and compares with the figures the bundle
publishes in ``metrics.json`` — recomputed here, never copied.
"""

from __future__ import annotations

import csv
import json

import pytest

from yt8m import bundle as bundles
from yt8m.paths import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "models" / bundles.DEFAULT_BUNDLE
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


@pytest.mark.shared
@pytest.mark.slow
def test_shipped_bundle_metrics_on_eval_split(shared_dir):
    from yt8m.eval import evaluate_predictor

    pattern = str(shared_dir / "data" / "audioset_v1_embeddings" / "eval" / "*.tfrecord")
    published = json.loads((SHIPPED / "metrics.json").read_text())
    measured = evaluate_predictor(bundles.load_keras_bundle(), pattern, cache_dir=None)
    assert measured["num_clips"] == published["num_clips"]
    for key in ("hit_at_one", "perr", "gap", "map", "auc", "d_prime"):
        assert measured[key] == pytest.approx(published[key], abs=TOLERANCE), key

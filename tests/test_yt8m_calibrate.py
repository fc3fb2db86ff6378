"""Per-class thresholds: the choice on synthetic scores, the bundle round trip, the
fingerprint that must not move, and ``python -m yt8m.calibrate`` on a tiny bundle."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from yt8m import bundle as bundles
from yt8m import thresholds as th
from yt8m.bundle.format import fingerprint, read_config


# -- the threshold choice ---------------------------------------------------------------
def _brute_force(scores: np.ndarray, labels: np.ndarray, min_precision: float):
    """Every distinct score as a cut (predict score >= it), by loops: the reference."""
    best_f1, best_cut, precise_cut = -1.0, None, None
    for cut in sorted(set(scores), reverse=True):
        predicted = scores >= cut
        tp = int((predicted & labels).sum())
        f1 = 2 * tp / (predicted.sum() + labels.sum())
        if f1 > best_f1:
            best_f1, best_cut = f1, cut
        if tp and tp / predicted.sum() >= min_precision:
            precise_cut = cut
    return best_f1, best_cut, precise_cut


def test_max_f1_and_precision_thresholds_by_hand():
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.2], [0.1]])
    labels = np.array([[1], [1], [0], [1], [0], [0]])
    chosen = th.choose_thresholds(scores, labels, 0.8)
    # F1 by cut: .5, .8, .667, .857 (top 4), .75, .667; precision >= .8 down to the top 2.
    assert chosen.max_f1[0] == pytest.approx(0.4)  # halfway between 0.6 and 0.2
    assert chosen.f1[0] == pytest.approx(6 / 7)
    assert chosen.precise[0] == pytest.approx(0.75)  # halfway between 0.8 and 0.7
    assert chosen.positives[0] == 3
    # Decided as the application decides (score > threshold): exactly the top 4.
    tp, fp, pos = th.counts_at(scores, labels, chosen.max_f1)
    assert (tp[0], fp[0], pos[0]) == (3, 1, 3)


def test_thresholds_agree_with_brute_force_on_random_scores():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random((300, 40)) * 0.98, 2) + 0.01  # many ties; in (0, 1)
    labels = rng.random((300, 40)) < np.linspace(0.01, 0.4, 40)
    labels[:, 0] = False
    scores[:, 1] = np.where(labels[:, 1], 0.9, 0.1)  # separable: F1 1 and precision 1
    chosen = th.choose_thresholds(scores, labels, 0.8)
    for c in range(1, 40):
        f1, cut, precise = _brute_force(scores[:, c], labels[:, c], 0.8)
        assert chosen.f1[c] == pytest.approx(f1)
        below = scores[:, c][scores[:, c] < cut]
        assert cut > chosen.max_f1[c] > (below.max() if below.size else 0.0)
        tp, fp, _ = th.counts_at(scores[:, c:c + 1], labels[:, c:c + 1], chosen.max_f1[c])
        assert 2 * tp[0] / (tp[0] + fp[0] + labels[:, c].sum()) == pytest.approx(f1)
        if precise is None:
            assert np.isnan(chosen.precise[c])
        else:
            assert (scores[:, c] > chosen.precise[c]).sum() == (scores[:, c] >= precise).sum()
    assert chosen.f1[1] == 1.0 and 0.1 < chosen.max_f1[1] < 0.9


def test_class_without_positives_or_precision_gets_nan_and_the_fallback():
    scores = np.array([[0.9, 0.9], [0.8, 0.1], [0.2, 0.5]])
    labels = np.array([[0, 0], [0, 0], [1, 0]])
    chosen = th.choose_thresholds(scores, labels, 0.8)
    assert not np.isnan(chosen.max_f1[0]) and np.isnan(chosen.precise[0])  # best precision 1/3
    assert np.isnan(chosen.max_f1[1]) and np.isnan(chosen.precise[1]) and chosen.positives[1] == 0
    filled = th.with_fallback(chosen.max_f1, 0.25)
    assert filled[1] == 0.25 and filled[0] == chosen.max_f1[0]


def test_thresholds_stay_below_one_when_scores_saturate():
    scores = np.array([[1.0], [1.0], [0.3]])
    chosen = th.choose_thresholds(scores, np.array([[1], [1], [0]]))
    assert 0.3 < chosen.max_f1[0] < 1.0


def test_f1_summary_and_best_global_threshold():
    scores = np.array([[0.9, 0.05], [0.2, 0.04], [0.6, 0.01]])
    labels = np.array([[1, 1], [0, 1], [1, 0]])
    at_half = th.f1_summary(scores, labels, 0.5)  # class 0: 2 TP; class 1: 2 FN
    assert at_half.micro_f1 == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))
    assert at_half.macro_f1 == pytest.approx((1.0 + 0.0) / 2)
    t, best = th.best_global_threshold(scores, labels, "micro_f1")
    assert t == pytest.approx(0.01) and best.micro_f1 == pytest.approx(2 * 4 / (8 + 1 + 0))
    with pytest.raises(ValueError):
        th.best_global_threshold(scores, labels, "accuracy")


# -- a tiny bundle calibrated end to end (tests.fixtures_yt8m: tiny_bundle, calibrated) --
def _rows(bundle: Path) -> list[dict[str, str]]:
    with open(bundle / bundles.CLASS_METRICS_FILE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_calibrate_writes_thresholds_class_metrics_and_record(calibrated, yt8m_data):
    from yt8m.metrics import per_class_average_precision
    from yt8m.reader import load_clips

    config = read_config(calibrated)
    _, names = bundles.read_labels(calibrated / "labels.csv")
    assert len(config["class_thresholds"]) == len(config["class_thresholds_p80"]) == len(names)
    by_name = bundles.class_thresholds(config, names)  # what the application reads
    assert list(by_name.values()) == config["class_thresholds"]
    rows = _rows(calibrated)
    assert [float(r["threshold"]) for r in rows] == config["class_thresholds"]
    assert [float(r["threshold_p80"]) if r["threshold_p80"] else None
            for r in rows] == config["class_thresholds_p80"]
    record = json.loads((calibrated / bundles.CALIBRATION_FILE).read_text())
    assert record["validation"]["clips"] == 48 and record["validation"]["seed"] == 1
    assert sum(int(r["train_positives"]) for r in rows) > 0
    # Classes without a validation positive get the global threshold of best macro F1.
    fallback = record["global_thresholds_on_validation"]["macro_f1"]
    empty = [r for r in rows if r["validation_positives"] == "0"]
    assert empty and all(float(r["threshold"]) == fallback for r in empty)
    assert len(record["classes_without_validation_positives"]) == len(empty)
    # The AP column is the eval AP of the bundle's scores.
    clips = load_clips(str(yt8m_data["eval"]))
    scores = bundles.load_keras_bundle(calibrated).predict(clips.frames, clips.num_frames)
    ap = per_class_average_precision(scores, clips.labels)
    for r in rows:
        i = int(r["index"])
        assert (r["ap"] == "") == np.isnan(ap[i])
        if r["ap"]:
            assert float(r["ap"]) == pytest.approx(ap[i], abs=1e-9)
    f1 = record["eval"]["f1"]
    assert {"calibrated", "calibrated_raw_max_f1", "global_0.1", "global_best_micro_f1_on_validation"} <= set(f1)


def test_calibration_leaves_the_fingerprint_and_the_tflite_match(tiny_bundle, calibrated,
                                                                  tmp_path, monkeypatch):
    from yt8m.bundle.litert import EXPORT_FILE, EXPORT_SIDECAR, find_bundle_export

    assert fingerprint(calibrated) == fingerprint(tiny_bundle)
    # An export made before calibrating (sidecar as tflite_export writes it) still matches.
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(tmp_path / "models"))
    bundle = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_bundle, bundle)
    exported = tmp_path / "models" / "exported" / "tiny"
    exported.mkdir(parents=True)
    (exported / EXPORT_FILE).write_bytes(b"x" * 10)
    (exported / EXPORT_SIDECAR).write_text(json.dumps({"files": fingerprint(bundle),
                                                       "size": 10}))
    assert find_bundle_export(bundle) == exported / EXPORT_FILE
    for name in ("config.json", bundles.CLASS_METRICS_FILE, bundles.CALIBRATION_FILE):
        shutil.copyfile(calibrated / name, bundle / name)
    assert find_bundle_export(bundle) == exported / EXPORT_FILE
    # What changes scores still makes it stale.
    config = read_config(bundle)
    config["input"]["max_frames"] = 10
    (bundle / "config.json").write_text(json.dumps(config))
    assert find_bundle_export(bundle) is None


def _calibrate(bundle: Path, data: dict[str, Path], *extra: str) -> int:
    from tests.fixtures_yt8m import calibrate_bundle

    return calibrate_bundle(bundle, data, *extra)


def test_refit_bundle_needs_its_validation_twin(tiny_bundle, calibrated, yt8m_data, tmp_path,
                                                capsys):
    refit = tmp_path / "refit"
    shutil.copytree(tiny_bundle, refit)
    prov = json.loads((refit / "provenance.json").read_text())
    member = prov["members"][0]
    member["validation"]["carved_fraction"] = 0.0
    member["num_train_clips"] += member["num_validation_clips"]
    member["num_validation_clips"] = 0
    (refit / "provenance.json").write_text(json.dumps(prov))
    assert _calibrate(refit, yt8m_data) == 2
    assert "--validation_bundle" in capsys.readouterr().err
    assert _calibrate(refit, yt8m_data, f"--validation_bundle={tiny_bundle}") == 0
    # Same weights as the twin: same thresholds; trained on every clip: more positives.
    assert read_config(refit)["class_thresholds"] == read_config(calibrated)["class_thresholds"]
    refit_rows, rows = _rows(refit), _rows(calibrated)
    assert sum(int(r["train_positives"]) for r in refit_rows) > \
        sum(int(r["train_positives"]) for r in rows)


def test_class_metrics_readers(calibrated, tmp_path):
    ap = bundles.class_eval_ap(calibrated)
    rows = _rows(calibrated)
    assert ap == {r["display_name"]: float(r["ap"]) for r in rows if r["ap"]}
    assert bundles.class_eval_ap(tmp_path) is None
    (tmp_path / bundles.CLASS_METRICS_FILE).write_text("index,mid\n0,/m/x\n")
    with pytest.raises(bundles.BundleError):
        bundles.read_class_metrics(tmp_path)


def test_results_doc_gets_the_calibration_section(calibrated, tmp_path):
    from yt8m import calibration_report, results

    doc = tmp_path / "results.md"
    doc.write_text(f"# R\n{results.START}\n{results.END}\n\n{calibration_report.START}\n"
                   f"{calibration_report.END}\ntail\n")
    assert results.main(["--calibration", str(calibrated), f"--doc={doc}"]) == 0
    assert f"{results.START}\n{results.END}" in doc.read_text()  # the model table untouched
    assert results.main([f"--doc={doc}"]) == 2
    assert results.main([str(calibrated), "--calibration", str(calibrated),
                         f"--doc={doc}"]) == 0
    text = doc.read_text()
    record = json.loads((calibrated / bundles.CALIBRATION_FILE).read_text())
    f1 = record["eval"]["f1"]["calibrated"]
    assert "| `tiny` | per-class thresholds, as shipped (`class_thresholds`) |" in text
    assert f"{f1['micro_f1']:.4f} | {f1['macro_f1']:.4f}" in text
    best = max((r for r in _rows(calibrated) if r["ap"]), key=lambda r: float(r["ap"]))
    assert f"| {best['display_name']} | {float(best['ap']):.3f} |" in text
    assert text.endswith("tail\n")


def test_refit_members_of_different_seeds_share_the_empty_split(tmp_path):
    """Nothing carved: the seed chose nothing, so members of different seeds agree."""
    from yt8m.calibrate import CalibrationError, bundle_split

    def member(fraction, seed, n_val):
        return {"validation": {"carved_fraction": fraction, "seed": seed},
                "num_validation_clips": n_val, "num_train_clips": 100 - n_val,
                "train_data": {"sha256_of_file_sha256s": "abc"}}

    (tmp_path / "provenance.json").write_text(json.dumps(
        {"members": [member(0.0, 1, 0), member(0.0, 2, 0)]}))
    assert bundle_split(tmp_path).fraction == 0.0
    (tmp_path / "provenance.json").write_text(json.dumps(
        {"members": [member(0.1, 1, 10), member(0.1, 2, 10)]}))
    with pytest.raises(CalibrationError, match="different splits"):
        bundle_split(tmp_path)

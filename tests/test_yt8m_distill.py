"""Distillation (teacher scores → soft targets → a student), int8 TFLite exports of every
registered model, and the edge-default rule."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_edge import write_random_bundle
from tests.fixtures_yt8m import NUM_CLASSES
from yt8m import distill, export, train
from yt8m.bundle import edge
from yt8m.training.data import training_targets


def _opts(**kw):
    base = {"teacher_scores": None, "distill_weight": 0.5, "label_smoothing": 0.0,
            "num_classes": 4}
    base.update(kw)
    return types.SimpleNamespace(**base)


def _clips(ids, labels):
    return types.SimpleNamespace(video_ids=np.array(ids), labels=np.array(labels, np.float32))


def test_teacher_scores_round_trip_and_align_by_video_id(tmp_path):
    scores = np.array([[0.9, 0.1, 0, 0], [0.2, 0.8, 0.5, 0], [0, 0, 0, 1]], np.float32)
    path = tmp_path / "t.npz"
    distill.write_teacher_scores(path, np.array(["a", "b", "c"]), scores, {"teacher": "T"})
    loaded = distill.load_teacher_scores(path, 4)
    assert loaded.meta == {"teacher": "T"} and len(loaded.sha256()) == 64
    np.testing.assert_allclose(loaded.for_clips(np.array(["c", "a"])), scores[[2, 0]],
                               atol=1e-3)  # stored as float16
    with pytest.raises(distill.TeacherScoresError, match="1 training clips have no teacher"):
        loaded.for_clips(np.array(["a", "zz"]))
    with pytest.raises(distill.TeacherScoresError, match="expected"):
        distill.load_teacher_scores(path, 5)
    with pytest.raises(distill.TeacherScoresError, match="cannot read"):
        distill.load_teacher_scores(tmp_path / "missing.npz", 4)
    distill.write_teacher_scores(path, np.array(["a"]), np.array([[1.5, 0, 0, 0]]), {})
    with pytest.raises(distill.TeacherScoresError, match="probabilities"):
        distill.load_teacher_scores(path, 4)


def test_training_targets_mix_teacher_labels_and_smoothing(tmp_path):
    clips = _clips(["b", "a"], [[1, 0, 0, 0], [0, 0, 1, 0]])
    assert training_targets(_opts(), clips) == (None, None)  # plain labels
    smoothed, info = training_targets(_opts(label_smoothing=0.2), clips)
    assert info is None
    np.testing.assert_allclose(smoothed, [[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.9, 0.1]])
    path = tmp_path / "t.npz"
    teacher = np.array([[0.5, 0.5, 0.5, 0.5], [0.25, 0, 0, 0.75]], np.float32)
    distill.write_teacher_scores(path, np.array(["a", "b"]), teacher, {"teacher": "T"})
    targets, info = training_targets(_opts(teacher_scores=str(path), distill_weight=0.8), clips)
    # clip "b" takes teacher row 1, clip "a" row 0: 0.8·teacher + 0.2·labels.
    np.testing.assert_allclose(targets, [[0.4, 0, 0, 0.6], [0.4, 0.4, 0.6, 0.4]], atol=1e-6)
    assert info["teacher"] == "T" and info["weight"] == 0.8 and info["scores"] == str(path)


def test_bad_distillation_flags_are_one_line_errors(yt8m_data, tmp_path, capsys):
    base = [f"--train_data_pattern={yt8m_data['train']}", f"--train_dir={tmp_path / 'x'}",
            "--frame_features", "--data_cache_dir="]
    assert train.main([*base, "--distill_weight=1.5"]) == 2
    assert "--distill_weight must be within [0, 1]" in capsys.readouterr().err
    assert train.main([*base, "--label_smoothing=1"]) == 2
    assert "--label_smoothing" in capsys.readouterr().err
    assert train.main([*base, f"--teacher_scores={tmp_path / 'none.npz'}",
                       "--num_epochs=1"]) == 2
    assert "cannot read teacher scores" in capsys.readouterr().err


@pytest.mark.slow
def test_student_learns_from_teacher_scores(yt8m_data, yt8m_train_dir, tmp_path, capsys):
    """``yt8m.distill`` scores the training clips with a bundle; a student trained on
    them with λ = 1 follows its teacher (not the labels) and provenance says so."""
    teacher_dir = tmp_path / "teacher"
    assert export.main([f"--train_dir={yt8m_train_dir}", "--name=teacher",
                        f"--output_dir={teacher_dir}", f"--eval_data_pattern={yt8m_data['eval']}",
                        f"--labels_csv={yt8m_data['labels']}"]) == 0
    scores = tmp_path / "teacher.npz"
    assert distill.main([str(teacher_dir), f"--train_data_pattern={yt8m_data['train']}",
                         f"--output={scores}", "--data_cache_dir="]) == 0
    assert "240 clips scored by teacher" in capsys.readouterr().out
    # A teacher that says "nothing, ever": a pure student must learn to say nothing.
    t = distill.load_teacher_scores(scores, NUM_CLASSES)
    distill.write_teacher_scores(scores, t.video_ids, np.zeros_like(t.scores), t.meta)
    student = tmp_path / "student"
    assert train.main([f"--train_data_pattern={yt8m_data['train']}", f"--train_dir={student}",
                       "--frame_features", "--data_cache_dir=", "--model=Logistic",
                       f"--num_classes={NUM_CLASSES}", "--num_epochs=4", "--batch_size=32",
                       "--base_learning_rate=0.1", f"--teacher_scores={scores}",
                       "--distill_weight=1", "--quiet"]) == 0
    prov = json.loads((student / "provenance.json").read_text())
    assert prov["distillation"]["teacher"] == "teacher"
    assert prov["distillation"]["weight"] == 1.0
    assert prov["distillation"]["teacher_fingerprint"]
    assert prov["distillation"]["train_data"]["clips"] == 240
    from yt8m.eval import load_train_dir
    from yt8m.reader import load_clips

    clips = load_clips(str(yt8m_data["eval"]))
    assert load_train_dir(student).predict(clips.frames, clips.num_frames).max() < 0.2


SMALL_HPARAMS = {
    "FrameLevelLogisticModel": {},
    "MoeModel": {"moe_num_mixtures": 2},
    "DbofModel": {"dbof_cluster_size": 32, "dbof_hidden_size": 16},
    "LstmModel": {"lstm_cells": 16, "lstm_layers": 2},
    "AttentionModel": {"hidden_size": 16, "hidden_layers": 2, "attention_levels": [1, 2]},
}


def _bundle(path: Path, name: str, weights_dtype: str = "float32", **hparams) -> Path:
    """A random-weight bundle of one registered model (int8: stored as yt8m.export does)."""
    import keras

    from yt8m.models import build_model, make_hparams
    from yt8m.weights import convert_weights_file

    keras.utils.set_random_seed(5)
    hp = make_hparams(name, {**SMALL_HPARAMS[name], **hparams})
    model = build_model(name, 20, hp)
    write_random_bundle(path, num_classes=20)  # labels.csv and a config to replace
    model.save_weights(str(path / "member_0.weights.h5"))
    if weights_dtype != "float32":
        convert_weights_file(path / "member_0.weights.h5", weights_dtype)
    config = json.loads((path / "config.json").read_text())
    config["members"] = [{"model": name, "hparams": dataclasses.asdict(hp),
                          "weights": "member_0.weights.h5", "weights_dtype": weights_dtype}]
    config["input"]["max_frames"] = 40
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL_HPARAMS))
def test_every_registered_model_has_a_tensorflow_free_path(name, tmp_path, rng):
    """Each model converts (static shapes: the LSTM's masked loop included) and LiteRT
    gives the Keras scores, for any clip length up to max_frames."""
    from yt8m.bundle import TFLiteBundle, export_bundle, load_keras_bundle

    bundle = _bundle(tmp_path / "b", name)
    out = export_bundle(bundle, out_dir=tmp_path / "exported")
    x = rng.integers(0, 256, size=(4, 50, 128), dtype=np.uint8)
    counts = np.array([50, 17, 1, 0], np.int32)
    want = load_keras_bundle(bundle).predict(x, counts)
    got = TFLiteBundle(bundle, out).predict(x, counts)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert json.loads((out.parent / "export.json").read_text())["weights"] == "float32"


@pytest.mark.slow
def test_int8_bundle_export_stays_int8(tmp_path, rng):
    """An int8 bundle's TFLite keeps int8 weights: about a quarter of the float32 export,
    with scores within the hybrid kernels' rounding of the Keras bundle's."""
    from yt8m.bundle import TFLiteBundle, export_bundle, load_keras_bundle

    sizes = {}
    for dtype in ("float32", "int8"):
        # Big enough kernels: the converter leaves tensors under 1,024 values float.
        bundle = _bundle(tmp_path / dtype, "AttentionModel", dtype, hidden_size=128)
        out = export_bundle(bundle, out_dir=tmp_path / f"exported-{dtype}")
        sizes[dtype] = out.stat().st_size
        assert json.loads((out.parent / "export.json").read_text())["weights"] == dtype
    assert sizes["int8"] < 0.4 * sizes["float32"]
    x = rng.integers(0, 256, size=(3, 30, 128), dtype=np.uint8)
    counts = np.array([30, 8, 2], np.int32)
    want = load_keras_bundle(tmp_path / "int8").predict(x, counts)
    got = TFLiteBundle(tmp_path / "int8", tmp_path / "exported-int8" / "classifier.tflite")
    np.testing.assert_allclose(got.predict(x, counts), want, atol=2e-2)


def _published(models: Path, name: str, map_: float | None) -> None:
    d = models / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text("{}")
    if map_ is not None:
        (d / "metrics.json").write_text(json.dumps({"map": map_}))


def test_edge_bundle_rule_reads_the_published_figures(tmp_path):
    models = tmp_path / "models"
    _published(models, edge.DEFAULT_BUNDLE, 0.30)
    assert edge.edge_bundle(models).path.name == edge.DEFAULT_BUNDLE  # no student
    _published(models, edge.STUDENT_BUNDLE, 0.2901)
    choice = edge.edge_bundle(models)
    assert choice.path.name == edge.STUDENT_BUNDLE and "within 0.01" in choice.reason
    _published(models, edge.STUDENT_BUNDLE, 0.2899)
    choice = edge.edge_bundle(models)
    assert choice.path.name == edge.DEFAULT_BUNDLE and "more than 0.01 below" in choice.reason


def test_run_without_model_uses_the_edge_export_only_when_default_has_none(tmp_path,
                                                                        monkeypatch):
    from yt8m.bundle import loader

    models = tmp_path / "models"
    _published(models, edge.DEFAULT_BUNDLE, 0.30)
    _published(models, edge.STUDENT_BUNDLE, 0.295)
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(models))
    monkeypatch.delenv("AUDIO_ANALYSIS_MODEL", raising=False)
    exported: set[str] = set()
    looked_up: list[str] = []

    def find(p: Path) -> Path | None:
        looked_up.append(p.name)
        return p / "x.tflite" if p.name in exported else None

    monkeypatch.setattr(loader, "find_bundle_export", find)
    default, student = models / edge.DEFAULT_BUNDLE, models / edge.STUDENT_BUNDLE
    assert loader.choose_runtime(None) == (default, None)  # no export: the default via TF
    exported.add(edge.STUDENT_BUNDLE)
    assert loader.choose_runtime(None) == (student, student / "x.tflite")
    assert loader.choose_runtime("mine") == (models / "mine", None)  # asked for: unchanged
    exported.add(edge.DEFAULT_BUNDLE)
    looked_up.clear()
    assert loader.choose_runtime(None) == (default, default / "x.tflite")  # its own wins
    assert looked_up == [edge.DEFAULT_BUNDLE]  # each export looked up (hashed) once
    exported.discard(edge.DEFAULT_BUNDLE)
    assert loader.choose_runtime(None, prefer_tflite=False) == (default, None)
    monkeypatch.setenv("AUDIO_ANALYSIS_MODEL", "other")
    assert loader.choose_runtime(None) == (models / "other", None)


def test_validation_seed_holds_out_another_seeds_split(yt8m_data, tmp_path):
    """Members of one ensemble trained with different seeds can hold out one split
    (``--validation_seed``), so that the ensemble has clean validation scores."""
    from yt8m.training.data import load_data
    from yt8m.training.options import resolve_options

    def held_out(*flags: str) -> set[str]:
        args = train.build_parser().parse_args([
            f"--train_data_pattern={yt8m_data['train']}", f"--train_dir={tmp_path / 'x'}",
            "--frame_features", "--data_cache_dir=", *flags])
        args.argv = None
        return set(load_data(resolve_options(args)).validation.video_ids)

    run = tmp_path / "s2"
    assert train.main([f"--train_data_pattern={yt8m_data['train']}", f"--train_dir={run}",
                       "--frame_features", "--data_cache_dir=", "--model=Logistic",
                       f"--num_classes={NUM_CLASSES}", "--num_epochs=1", "--seed=2",
                       "--validation_seed=1", "--quiet"]) == 0
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["validation"] == {"carved_fraction": 0.1, "seed": 1}
    assert held_out("--seed=2", "--validation_seed=1") == held_out("--seed=1")
    assert held_out("--seed=2") != held_out("--seed=1")

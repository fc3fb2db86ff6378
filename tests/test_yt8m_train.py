"""Training, evaluation and export CLIs on tiny data; bundle loading contracts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.fixtures_yt8m import NUM_CLASSES
from yt8m import bundle as bundles
from yt8m import eval as yt8m_eval
from yt8m import export, train


def _seed_flags(data, train_dir, model="LstmModel", epochs=2, extra=()):
    """The seed's command line, verbatim but for paths/epochs, + test-size flags."""
    return [f"--train_data_pattern={data['train']}", f"--num_epochs={epochs}",
            "--learning_rate_decay_examples=400000", "--feature_names=audio_embedding",
            "--feature_sizes=128", "--frame_features", "--batch_size=64",
            f"--num_classes={NUM_CLASSES}", f"--train_dir={train_dir}", f"--model={model}",
            "--data_cache_dir=", *extra]


def _events(log_dir):
    import tensorflow as tf

    tags = set()
    for f in log_dir.glob("events.out.tfevents.*"):
        for e in tf.compat.v1.train.summary_iterator(str(f)):
            tags.update(v.tag for v in e.summary.value)
    return tags


@pytest.mark.slow
def test_seed_command_line_trains_logs_checkpoints_and_resumes(yt8m_data, tmp_path, capsys):
    d = tmp_path / "lstm"
    flags = _seed_flags(yt8m_data, d, extra=["--lstm_cells=16", "--lstm_layers=1",
                                              "--base_learning_rate=0.01"])
    assert train.main(flags) == 0
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "val_mAP" in out
    saved = json.loads((d / "model_flags.json").read_text())
    assert saved["config"]["members"][0]["model"] == "LstmModel"
    assert saved["config"]["members"][0]["hparams"]["lstm_cells"] == 16
    assert saved["config"]["input"] == {"dequantize": True, "l2_normalize": True,
                                        "max_frames": 300, "feature_size": 128,
                                        "feature_name": "audio_embedding"}
    for name in ("best.weights.h5", "last.weights.h5", "last.optimizer.npz",
                 "last.state.json", "provenance.json"):
        assert (d / name).is_file(), name
    assert {"train/loss", "epoch/loss", "epoch/learning_rate", "epoch/val_map",
            "epoch/val_hit_at_one"} <= _events(d / "logs")
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["train_data"]["num_files"] == 3 and prov["epochs"] == 2
    assert prov["num_train_clips"] + prov["num_validation_clips"] == 240
    state = json.loads((d / "last.state.json").read_text())
    steps = state["steps"]

    # Same command with more epochs resumes at epoch 2 (optimizer step included).
    assert train.main(_seed_flags(yt8m_data, d, epochs=3, extra=[
        "--lstm_cells=16", "--lstm_layers=1", "--base_learning_rate=0.01"])) == 0
    out = capsys.readouterr().out
    assert f"resuming {d} at epoch 2 step {steps}" in out
    assert "epoch 3/3" in out and "epoch 1/3" not in out
    # A different model in the same directory is refused unless --start_new_model.
    assert train.main(_seed_flags(yt8m_data, d, model="Logistic")) == 2
    assert "different model" in capsys.readouterr().err
    assert train.main(_seed_flags(yt8m_data, d, model="Logistic", epochs=1,
                                  extra=["--start_new_model", "--steps_per_epoch=1"])) == 0
    assert "epoch 1/1" in capsys.readouterr().out


@pytest.mark.slow
def test_mirrored_strategy_trains_on_cpu(yt8m_data, tmp_path, capsys):
    d = tmp_path / "mirrored"
    assert train.main(_seed_flags(yt8m_data, d, model="Logistic", epochs=1, extra=[
        "--distribution_strategy=mirrored", "--steps_per_epoch=3"])) == 0
    assert (d / "best.weights.h5").is_file()
    assert json.loads((d / "last.state.json").read_text())["steps"] == 3


def test_bad_flags_are_one_line_errors(yt8m_data, tmp_path, capsys):
    assert train.main(_seed_flags(yt8m_data, tmp_path / "x", model="Nope")) == 2
    err = capsys.readouterr().err
    assert err.startswith("yt8m.train: error: unknown model") and err.count("\n") == 1
    assert train.main(["--train_data_pattern=/nonexistent/*.tfrecord",
                       f"--train_dir={tmp_path / 'y'}", "--data_cache_dir="]) == 2
    assert "no file matches" in capsys.readouterr().err


def test_eval_cli_writes_json(yt8m_data, yt8m_train_dir, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert yt8m_eval.main([f"--eval_data_pattern={yt8m_data['eval']}",
                           f"--train_dir={yt8m_train_dir}", f"--output_json={out}",
                           "--data_cache_dir="]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    for key, label in yt8m_eval.METRIC_ROWS:
        assert label in printed and np.isfinite(result[key])
    assert result["num_clips"] == 80
    # The synthetic signal is learnable: far better than chance after 3 epochs.
    assert result["map"] > 0.5 and result["auc"] > 0.9


@pytest.fixture(scope="module")
def exported(yt8m_data, yt8m_train_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("bundles") / "tiny-bundle"
    assert export.main([f"--train_dir={yt8m_train_dir}", "--name=tiny-bundle",
                        f"--output_dir={dest}", f"--eval_data_pattern={yt8m_data['eval']}",
                        f"--labels_csv={yt8m_data['labels']}"]) == 0
    return dest


def test_export_load_round_trip_identical_scores(exported, yt8m_data, yt8m_train_dir):
    from yt8m.reader import load_clips

    files = {p.name for p in exported.iterdir()}
    assert files == {"config.json", "member_0.weights.h5", "labels.csv", "provenance.json",
                     "metrics.json"}
    bundle = bundles.load_keras_bundle(exported)
    assert bundle.name == "tiny-bundle" and bundle.num_classes == NUM_CLASSES
    assert bundle.labels[1] == "Class 1, test" and bundle.label_ids[1] == "/m/test1"
    assert bundle.config["format_version"] == export.FORMAT_VERSION
    member = bundle.config["members"][0]
    assert member["l2_normalize"] is False  # the attention model's default contract
    assert member["weights_dtype"] == "float32"
    assert "l2_normalize" not in bundle.config["input"]
    clips = load_clips(str(yt8m_data["eval"]))
    scores = bundle.predict(clips.frames, clips.num_frames)
    assert scores.dtype == np.float32 and scores.shape == (80, NUM_CLASSES)
    reference = yt8m_eval.load_train_dir(yt8m_train_dir).predict(clips.frames, clips.num_frames)
    np.testing.assert_array_equal(scores, reference)
    metrics = json.loads((exported / "metrics.json").read_text())
    from yt8m.metrics import evaluate

    assert metrics["map"] == pytest.approx(evaluate(scores, clips.labels)["map"], abs=1e-9)
    prov = json.loads((exported / "provenance.json").read_text())
    assert prov["members"][0]["train_data"]["num_files"] == 3
    assert prov["export_command"][:3] == ["python", "-m", "yt8m.export"]


def test_refit_on_all_clips_without_validation(yt8m_data, tmp_path, capsys):
    d = tmp_path / "refit"
    assert train.main(_seed_flags(yt8m_data, d, model="Logistic", epochs=3, extra=[
        "--validation_fraction=0", "--base_learning_rate=0.05",
        "--early_stopping_patience=1"])) == 0
    out = capsys.readouterr().out
    assert out.count("refit on all clips, no validation") == 3  # patience does not apply
    assert "final weights (refit, no validation)" in out
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["num_train_clips"] == 240 and prov["num_validation_clips"] == 0
    assert prov["epochs"] == prov["best_epoch"] == 3 and prov["best_validation"] is None
    final = yt8m_eval.load_train_dir(d)
    final.members[0].load_weights(str(d / "last.weights.h5"))
    best = yt8m_eval.load_train_dir(d)
    x = np.random.default_rng(0).integers(0, 256, size=(4, 5, 128), dtype=np.uint8)
    np.testing.assert_array_equal(best.predict(x), final.predict(x))
    # --refit_epochs_from takes the epoch count from a finished run's provenance.
    prov["best_epoch"] = 2
    (d / "provenance.json").write_text(json.dumps(prov))
    again = tmp_path / "refit2"
    assert train.main(_seed_flags(yt8m_data, again, model="Logistic", epochs=50, extra=[
        f"--refit_epochs_from={d}", "--quiet"])) == 0
    prov2 = json.loads((again / "provenance.json").read_text())
    assert prov2["epochs"] == 2 and prov2["num_validation_clips"] == 0
    assert train.main(_seed_flags(yt8m_data, again, extra=[
        f"--refit_epochs_from={tmp_path}", "--start_new_model"])) == 2
    assert "best_epoch" in capsys.readouterr().err


def test_swa_averages_epoch_weights_across_resume(yt8m_data, tmp_path):
    """--swa_start_epoch=2: after epoch 2 the average is epoch 2's weights; resumed to
    epoch 3 it is the mean of epochs 2 and 3 (BN statistics included), and the kept
    best.weights.h5 is that average when it validates best."""
    from yt8m.models import build_model, make_hparams

    d = tmp_path / "swa"

    def run(epochs):
        return train.main(_seed_flags(yt8m_data, d, model="Attention", epochs=epochs, extra=[
            "--hidden_size=16", "--hidden_layers=2", "--attention_levels=2",
            "--base_learning_rate=0.01", "--swa_start_epoch=2", "--quiet",
            "--early_stopping_metric=loss", "--early_stopping_patience=5"]))

    def weights(name):
        config = json.loads((d / "model_flags.json").read_text())["config"]["members"][0]
        m = build_model(config["model"], NUM_CLASSES,
                        make_hparams(config["model"], config["hparams"]))
        m.load_weights(str(d / name))
        return m.get_weights()

    assert run(2) == 0
    w2 = weights("last.weights.h5")
    for a, b in zip(weights("swa.weights.h5"), w2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert run(3) == 0
    w3 = weights("last.weights.h5")
    assert not np.allclose(w2[0], w3[0])
    for a, b, c in zip(weights("swa.weights.h5"), w2, w3, strict=True):
        np.testing.assert_allclose(a, (b + c) / 2, rtol=1e-6, atol=1e-7)
    state = json.loads((d / "last.state.json").read_text())
    assert state["swa_count"] == 2
    if state["best_epoch"] == 3:
        for a, b in zip(weights("best.weights.h5"), weights("swa.weights.h5"), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_mixed_contract_float16_ensemble(exported, yt8m_data, yt8m_train_dir, tmp_path):
    """An attention run (raw frames) and a DBoF run (L2-normalised frames) in one float16
    bundle: each member gets its own preprocessing, and the bundle's scores are the mean
    of the two runs' own scores up to float16 rounding of the weights."""
    from yt8m.reader import load_clips

    dbof = tmp_path / "dbof"
    assert train.main(_seed_flags(yt8m_data, dbof, model="Dbof", epochs=2, extra=[
        "--dbof_cluster_size=16", "--dbof_hidden_size=16", "--iterations=5",
        "--base_learning_rate=0.01", "--quiet"])) == 0
    dest = tmp_path / "mixed"
    assert export.main([f"--train_dir={yt8m_train_dir}", f"--train_dir={dbof}",
                        "--name=mixed", f"--output_dir={dest}", "--weights_dtype=float16",
                        f"--eval_data_pattern={yt8m_data['eval']}",
                        f"--labels_csv={yt8m_data['labels']}"]) == 0
    from yt8m.weights import stored_dtypes

    assert stored_dtypes(dest / "member_1.weights.h5") == {np.dtype("float16")}
    bundle = bundles.load_keras_bundle(dest)
    assert [m["l2_normalize"] for m in bundle.config["members"]] == [False, True]
    clips = load_clips(str(yt8m_data["eval"]))
    scores = bundle.predict(clips.frames, clips.num_frames)
    parts = [yt8m_eval.load_train_dir(d).predict(clips.frames, clips.num_frames)
             for d in (yt8m_train_dir, dbof)]
    np.testing.assert_allclose(scores, (parts[0] + parts[1]) / 2, atol=2e-3)
    assert not np.allclose(parts[0], parts[1], atol=2e-3)  # two different members
    # Format 1 (one contract for every member) still loads.
    old = tmp_path / "old"
    shutil.copytree(exported, old)
    config = json.loads((old / "config.json").read_text())
    config["format_version"] = 1
    config["input"]["l2_normalize"] = config["members"][0].pop("l2_normalize")
    (old / "config.json").write_text(json.dumps(config))
    np.testing.assert_array_equal(bundles.load_keras_bundle(old).predict(clips.frames[:4]),
                                  bundles.load_keras_bundle(exported).predict(clips.frames[:4]))
    del config["input"]["l2_normalize"]
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(bundles.BundleError, match="l2_normalize"):
        bundles.load_keras_bundle(old)


@pytest.mark.slow
def test_int8_bundle_loads_and_scores_like_float32(exported, yt8m_data, yt8m_train_dir,
                                                   tmp_path):
    """``yt8m.export --weights_dtype int8`` writes int8 kernels that ``load_bundle``
    dequantises; scores stay close to the float32 bundle's and the file is smaller."""
    from yt8m.reader import load_clips
    from yt8m.weights import stored_dtypes

    dest = tmp_path / "int8"
    assert export.main([f"--train_dir={yt8m_train_dir}", "--name=int8",
                        f"--output_dir={dest}", "--weights_dtype=int8",
                        f"--eval_data_pattern={yt8m_data['eval']}",
                        f"--labels_csv={yt8m_data['labels']}"]) == 0
    assert np.dtype("int8") in stored_dtypes(dest / "member_0.weights.h5")
    assert ((dest / "member_0.weights.h5").stat().st_size
            < 0.5 * (exported / "member_0.weights.h5").stat().st_size)
    bundle = bundles.load_keras_bundle(dest)
    assert bundle.config["members"][0]["weights_dtype"] == "int8"
    clips = load_clips(str(yt8m_data["eval"]))
    got = bundle.predict(clips.frames, clips.num_frames)
    want = bundles.load_keras_bundle(exported).predict(clips.frames, clips.num_frames)
    np.testing.assert_allclose(got, want, atol=2e-2)
    assert not np.array_equal(got, want)  # the weights really were quantised
    config = bundle.config
    config["members"][0]["weights_dtype"] = "int4"
    (dest / "config.json").write_text(json.dumps(config))
    with pytest.raises(bundles.BundleError, match="int4"):
        bundles.load_keras_bundle(dest)


def test_predict_any_batch_and_length_without_retracing(exported, rng):
    bundle = bundles.load_keras_bundle(exported)
    x = rng.integers(0, 256, size=(4, 12, 128), dtype=np.uint8)
    one = bundle.predict(x[:1], [12])
    assert one.shape == (1, NUM_CLASSES)
    np.testing.assert_allclose(bundle.predict(x, None)[0], one[0], rtol=1e-5, atol=1e-7)
    # Padding beyond num_frames is ignored; frames beyond max_frames are dropped.
    padded = np.concatenate([x[:1, :5], np.full((1, 300, 128), 7, np.uint8)], axis=1)
    np.testing.assert_allclose(bundle.predict(padded, [5]), bundle.predict(x[:1, :5]),
                               rtol=1e-5, atol=1e-7)
    assert bundle.predict(np.zeros((0, 3, 128), np.uint8)).shape == (0, NUM_CLASSES)
    for t in (1, 3, 10, 30):
        bundle.predict(x[:2, :t] if t <= 12 else np.tile(x[:2], (1, 3, 1))[:, :t])
    assert bundle._function().experimental_get_tracing_count() == 1
    with pytest.raises(TypeError, match="uint8"):
        bundle.predict(x.astype(np.float32))
    with pytest.raises(ValueError):
        bundle.predict(x[0])


def test_load_bundle_resolution_and_errors(exported, tmp_path, monkeypatch):
    with pytest.raises(bundles.BundleNotFoundError, match="no-such-bundle") as info:
        bundles.load_keras_bundle("no-such-bundle", models_dir=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert bundles.resolve_bundle_path("abc", tmp_path) == tmp_path / "abc"
    assert bundles.resolve_bundle_path(str(exported)) == exported
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(exported.parent))
    assert bundles.resolve_bundle_path("tiny-bundle") == exported
    monkeypatch.setenv("AUDIO_ANALYSIS_MODEL", "tiny-bundle")
    assert bundles.resolve_bundle_path() == exported
    assert bundles.load_keras_bundle().name == "tiny-bundle"
    monkeypatch.delenv("AUDIO_ANALYSIS_MODEL")
    assert bundles.resolve_bundle_path().name == bundles.DEFAULT_BUNDLE
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((exported / "config.json").read_text())
    with pytest.raises(bundles.BundleError, match="incomplete"):
        bundles.load_keras_bundle(broken)


def test_export_refuses_existing_and_unfinished(exported, yt8m_data, tmp_path, capsys):
    assert export.main([f"--train_dir={tmp_path}", "--name=x", f"--output_dir={tmp_path / 'b'}",
                        f"--eval_data_pattern={yt8m_data['eval']}"]) == 2
    assert "not found" in capsys.readouterr().err
    assert export.main([f"--train_dir={tmp_path}", "--name=x", f"--output_dir={exported}",
                        f"--eval_data_pattern={yt8m_data['eval']}"]) == 2
    assert "exists" in capsys.readouterr().err


def test_inference_import_is_cheap_and_help_is_instant():
    code = "import sys, yt8m.bundle; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    for module in ("yt8m.train", "yt8m.eval", "yt8m.export"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                              text=True, check=False, timeout=60)
        assert proc.returncode == 0 and "usage" in proc.stdout
        code = f"import sys, {module}; sys.exit('tensorflow' in sys.modules)"
        assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

"""VGGish and classifier bundles as TFLite: equality, int8 accuracy, the TensorFlow-free path.

The checkpoint is H2's random-weight fixture in the official format; the int8 checks are
therefore weak evidence about real VGGish weights (see tests/fixtures_edge.py) and are
also run on the real shared clips' audio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_shared
from tests.fixtures_edge import EDGE_BUNDLE
from vggish.export import (
    SIDECAR_NAME,
    ExportError,
    TFLiteVGGish,
    find_export,
    load_embedder,
    tflite_name,
)

# A probe that runs an entry script as __main__ and reports whether TensorFlow was loaded.
PROBE = (
    "import os, runpy, sys; sys.argv = sys.argv[1:]; "
    "sys.path.insert(0, os.path.dirname(sys.argv[0])); rc = 0\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as e:\n    rc = e.code\n"
    "print('TF', 'tensorflow' in sys.modules, file=sys.stderr); sys.exit(rc)"
)


def _fake_export(directory: Path, checkpoint: Path, variants=("int8", "float32")) -> None:
    st = checkpoint.stat()
    files = {}
    for v in variants:
        (directory / tflite_name(v)).write_bytes(b"x" * 10)
        files[v] = {"file": tflite_name(v), "size": 10, "sha256": "0"}
    (directory / SIDECAR_NAME).write_text(json.dumps({
        "format": 1, "source": {"size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "legacy_fc2_relu": False, "files": files}))


def test_find_export_matches_only_its_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "vggish_model.ckpt"
    ckpt.write_bytes(b"weights")
    out = tmp_path / "exported"
    out.mkdir()
    assert find_export(ckpt, out) is None  # nothing exported
    _fake_export(out, ckpt)
    found = find_export(ckpt, out)
    assert found is not None and found.variant == "int8"
    assert find_export(ckpt, out, ("float32",)).variant == "float32"
    assert find_export(ckpt, out, legacy_fc2_relu=True) is None
    (out / tflite_name("int8")).write_bytes(b"half")  # truncated file: skipped
    assert find_export(ckpt, out).variant == "float32"
    ckpt.write_bytes(b"other weights")  # replaced checkpoint: the export is stale
    assert find_export(ckpt, out) is None


def test_load_embedder_rejects_unknown_preference(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="auto, off, int8 or float32"):
        load_embedder(tmp_path / "x.ckpt", preference="fp16")


def test_export_cli_without_checkpoint_is_one_line(tmp_path: Path, project_root: Path) -> None:
    env = {**os.environ, "AUDIO_ANALYSIS_MODELS_DIR": str(tmp_path)}
    env.pop("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", None)
    out = subprocess.run([sys.executable, "-m", "vggish.export"], capture_output=True,
                         text=True, cwd=project_root, env=env, timeout=120)
    assert out.returncode == 2
    assert "vggish_model.ckpt" in out.stderr and "Traceback" not in out.stderr


# --- real conversions (slow: one ~1 min export per session) ----------------------------


def _examples(rng: np.random.Generator, n: int = 24) -> np.ndarray:
    # Log-mel-like values: the front end's output lives around ln(0.01)..ln(100).
    return rng.normal(-1.0, 2.0, size=(n, 96, 64)).astype(np.float32)


@pytest.mark.slow
def test_sidecar_records_the_checkpoint(edge_models_dir: Path) -> None:
    record = json.loads((edge_models_dir / "exported" / SIDECAR_NAME).read_text())
    ckpt = edge_models_dir / "vggish_model.ckpt"
    assert record["source"]["size"] == ckpt.stat().st_size
    assert len(record["source"]["sha256"]) == 64
    assert set(record["files"]) == {"int8", "float32"}
    int8 = edge_models_dir / "exported" / tflite_name("int8")
    f32 = edge_models_dir / "exported" / tflite_name("float32")
    assert int8.stat().st_size < f32.stat().st_size / 3  # int8 weights: ~1/4 the size


@pytest.mark.slow
def test_float32_export_equals_keras(edge_models_dir: Path, rng) -> None:
    from vggish.model import embed, load_vggish

    x = _examples(rng)
    keras_out = embed(load_vggish(edge_models_dir / "vggish_model.ckpt"), x)
    with TFLiteVGGish(edge_models_dir / "exported" / tflite_name("float32"), batch=7) as m:
        lite = m(x)
    scale = np.abs(keras_out).max()
    assert np.abs(lite - keras_out).max() <= 1e-4 * scale


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
@pytest.mark.shared
def test_int8_close_to_float32_on_real_audio(edge_models_dir: Path, rng, monkeypatch) -> None:
    """Cosine of raw embeddings per 0.96 s example, top-5 agreement per clip.

    Top-5 agreement is measured per clip (what parse_file.py reports) over the real
    clips. With the random 527-class bundle all scores sit within ~0.02 of each other,
    so single-frame rankings are near-ties that int8 noise reorders (~93% per frame,
    printed below); with trained weights the gaps are far larger.
    """
    from audio.io import read_audio
    from vggish.input import waveform_to_examples
    from vggish.postprocess import Postprocessor
    from yt8m.bundle import load_classifier

    clips = sorted(require_shared("audio", "urbansound_samples").glob("*.wav"))
    clips += sorted(require_shared("audio", "misc").glob("*.wav"))
    exported = edge_models_dir / "exported"
    f32 = TFLiteVGGish(exported / tflite_name("float32"))
    i8 = TFLiteVGGish(exported / tflite_name("int8"))
    post = Postprocessor(edge_models_dir / "vggish_pca_params.npz")
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(edge_models_dir))
    clf = load_classifier(EDGE_BUNDLE)

    def top5(scores: np.ndarray) -> list[set[int]]:
        return [set(np.argsort(-row, kind="stable")[:5]) for row in scores]

    cosines, clip_agree, frame_agree = [], [], []
    for path in clips:
        examples = waveform_to_examples(*read_audio(path))
        a, b = f32(examples), i8(examples)
        cosines.extend(_cosines(a, b))
        qa, qb = post.postprocess(a), post.postprocess(b)
        (ta,), (tb,) = top5(clf.predict(qa[None])), top5(clf.predict(qb[None]))
        clip_agree.append(len(ta & tb) / 5)
        frame_agree += [len(x & y) / 5 for x, y in zip(top5(clf.predict(qa[:, None])),
                                                      top5(clf.predict(qb[:, None])), strict=True)]
    synthetic = _examples(rng, 16)
    cosines.extend(_cosines(f32(synthetic), i8(synthetic)))
    print(f"int8 vs float32: cosine min {min(cosines):.5f}, top-5 agreement per clip "
          f"{np.mean(clip_agree):.3f}, per frame {np.mean(frame_agree):.3f}")
    assert min(cosines) >= 0.99
    assert np.mean(clip_agree) >= 0.95


@pytest.mark.slow
def test_bundle_export_equals_bundle(edge_models_dir: Path, rng, monkeypatch) -> None:
    from yt8m.bundle import TFLiteBundle, load_classifier
    from yt8m.bundle import load_keras_bundle as load_bundle

    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(edge_models_dir))
    lite = load_classifier(EDGE_BUNDLE)
    assert isinstance(lite, TFLiteBundle)
    keras_bundle = load_bundle(EDGE_BUNDLE)
    x = rng.integers(0, 256, size=(4, 12, 128), dtype=np.uint8)
    counts = np.array([12, 5, 1, 9])
    np.testing.assert_allclose(lite.predict(x, counts), keras_bundle.predict(x, counts),
                               atol=1e-5)
    assert lite.labels == keras_bundle.labels


def _run_parse_file(project_root: Path, models: Path, wav: Path, tflite: str,
                    cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUDIO_ANALYSIS_MODELS_DIR": str(models),
           "AUDIO_ANALYSIS_VGGISH_TFLITE": tflite}
    for name in ("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", "AUDIO_ANALYSIS_PCA_PARAMS"):
        env.pop(name, None)
    cmd = [sys.executable, "-c", PROBE, str(project_root / "parse_file.py"), "--model",
           EDGE_BUNDLE, "--format", "json", "--top_k", "5", "--threshold", "0", str(wav)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
@pytest.mark.e2e
def test_parse_file_without_tensorflow(edge_models_dir: Path, project_root: Path,
                                       tmp_path: Path) -> None:
    from audio.io import write_wav

    t = np.arange(16000 * 4) / 16000
    wav = write_wav(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
                    16000)
    lite = _run_parse_file(project_root, edge_models_dir, wav, "float32", tmp_path)
    assert lite.returncode == 0, lite.stderr
    assert "TF False" in lite.stderr  # classified without ever importing TensorFlow
    full = _run_parse_file(project_root, edge_models_dir, wav, "off", tmp_path)
    assert full.returncode == 0, full.stderr
    assert "TF True" in full.stderr
    a = json.loads(lite.stdout)["predictions"]
    b = json.loads(full.stdout)["predictions"]
    assert [p["label"] for p in a][:3] == [p["label"] for p in b][:3]
    np.testing.assert_allclose([p["score"] for p in a], [p["score"] for p in b], atol=1e-4)


@pytest.mark.slow
def test_stale_export_is_ignored(edge_models_dir: Path, tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(edge_models_dir / "vggish_model.ckpt", models / "vggish_model.ckpt")
    shutil.copytree(edge_models_dir / "exported", models / "exported")
    # copyfile gives a new mtime: the export no longer provably matches this checkpoint.
    assert find_export(models / "vggish_model.ckpt", models / "exported") is None
    assert find_export(edge_models_dir / "vggish_model.ckpt",
                       edge_models_dir / "exported") is not None


def test_export_cli_bundle_errors(tmp_path: Path, project_root: Path) -> None:
    env = {**os.environ, "AUDIO_ANALYSIS_MODELS_DIR": str(tmp_path)}
    alone = subprocess.run([sys.executable, "-m", "vggish.export", "--skip_vggish"],
                           capture_output=True, text=True, cwd=project_root, env=env, timeout=120)
    assert alone.returncode == 2 and "--skip_vggish needs --model" in alone.stderr
    missing = subprocess.run([sys.executable, "-m", "vggish.export", "--skip_vggish", "--model",
                              str(tmp_path / "no-bundle")], capture_output=True, text=True,
                             cwd=project_root, env=env, timeout=300)
    assert missing.returncode == 2
    assert "no-bundle" in missing.stderr and "Traceback" not in missing.stderr


def test_audio_export_cli_bundle_errors(tmp_path: Path, project_root: Path) -> None:
    """The application command exports bundles; vggish.export points to it for --model."""
    env = {**os.environ, "AUDIO_ANALYSIS_MODELS_DIR": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                              cwd=project_root, env=env, timeout=300)

    alone = cli("audio.export", "--skip_vggish")
    assert alone.returncode == 2 and "--skip_vggish needs --model" in alone.stderr
    missing = cli("audio.export", "--skip_vggish", "--model", str(tmp_path / "no-bundle"))
    assert missing.returncode == 2
    assert "no-bundle" in missing.stderr and "classifier bundle not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    redirected = cli("vggish.export", "--model", "x")
    assert redirected.returncode == 2
    assert "python -m audio.export --model x" in redirected.stderr


@pytest.mark.slow
def test_audio_export_defaults_to_the_edge_bundle(tmp_path: Path, project_root: Path) -> None:
    """Without --model the application exports the edge bundle the published figures
    choose: the student when its eval mAP is within 0.01 of the ensemble's."""
    from tests.fixtures_edge import write_random_bundle
    from yt8m.bundle.edge import DEFAULT_BUNDLE, STUDENT_BUNDLE

    for name, map_ in ((DEFAULT_BUNDLE, 0.30), (STUDENT_BUNDLE, 0.295)):
        write_random_bundle(tmp_path / name, num_classes=5)
        (tmp_path / name / "metrics.json").write_text(json.dumps({"map": map_}))
    env = {**os.environ, "AUDIO_ANALYSIS_MODELS_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "audio.export", "--skip_vggish"],
                         capture_output=True, text=True, cwd=project_root, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"classifier: {STUDENT_BUNDLE} ({STUDENT_BUNDLE} eval mAP 0.2950 is within" in run.stdout
    assert (tmp_path / "exported" / STUDENT_BUNDLE / "classifier.tflite").is_file()
    assert not (tmp_path / "exported" / DEFAULT_BUNDLE).exists()

"""YAMNet through LiteRT: framing, class map, the real model on real clips.

The accuracy test maps each UrbanSound8K class to the AudioSet display names that count as
a correct answer. The rule, applied the same way to every class: the AudioSet class(es)
whose ontology definition is the UrbanSound8K class, their direct children (more specific
kinds of the same sound), and their parents in the AudioSet ontology up to the first
class that is still specific to the source (e.g. Bark → Dog → Domestic animals → Animal,
as the issue's own example accepts "Animal"); never generic roots such as "Vehicle" or
"Sounds of things". Each entry says why.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio.backends.yamnet import (
    YAMNET,
    YamnetError,
    YamnetFilesMissingError,
    YamnetModel,
    frame_times,
    frame_waveform,
    num_frames,
    read_class_map,
    resolve_yamnet_model,
)
from tests.conftest import require_shared

# ---------------------------------------------------------------------------------------
# Pure framing / parsing (no model needed)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 0), (1, 1), (15600, 1), (15601, 2), (15600 + 7680, 2), (15600 + 7681, 3), (64000, 8)],
)
def test_num_frames_matches_yamnet_padding(n: int, expected: int) -> None:
    # pad_waveform in the reference: one frame minimum, then ceil over 0.48 s hops.
    assert num_frames(n) == expected


def test_frame_waveform_layout_and_padding(rng: np.random.Generator) -> None:
    x = rng.standard_normal(15600 + 7680 + 100).astype(np.float32)
    frames = frame_waveform(x)
    assert frames.shape == (3, 15600)
    assert frames.dtype == np.float32
    np.testing.assert_array_equal(frames[0], x[:15600])
    np.testing.assert_array_equal(frames[1], x[7680 : 7680 + 15600])
    tail = x[2 * 7680 :]
    np.testing.assert_array_equal(frames[2, : tail.size], tail)
    assert not frames[2, tail.size :].any()


def test_short_input_is_padded_to_one_frame() -> None:
    frames = frame_waveform(np.ones(100, dtype=np.float32))
    assert frames.shape == (1, 15600)
    assert frames[0, :100].all() and not frames[0, 100:].any()
    assert frame_waveform(np.zeros(0)).shape == (0, 15600)


def test_frame_waveform_rejects_2d() -> None:
    with pytest.raises(YamnetError, match="1-D"):
        frame_waveform(np.zeros((10, 2)))


def test_frame_times() -> None:
    starts, ends = frame_times(3)
    np.testing.assert_allclose(starts, [0.0, 0.48, 0.96])
    np.testing.assert_allclose(ends - starts, YAMNET.frame_seconds)
    assert YAMNET.frame_samples == 15600 and YAMNET.hop_samples == 7680


def test_read_class_map(tmp_path: Path) -> None:
    good = tmp_path / "map.csv"
    good.write_text('index,mid,display_name\n0,/m/a,Speech\n1,/m/b,"Child speech, kid"\n')
    assert read_class_map(good) == ("Speech", "Child speech, kid")
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("a,b,c\n0,/m/a,Speech\n")
    with pytest.raises(YamnetError, match="not a YAMNet class map"):
        read_class_map(bad_header)
    out_of_order = tmp_path / "order.csv"
    out_of_order.write_text("index,mid,display_name\n1,/m/a,Speech\n")
    with pytest.raises(YamnetError, match="expected row 0"):
        read_class_map(out_of_order)
    with pytest.raises(YamnetFilesMissingError):
        read_class_map(tmp_path / "absent.csv")


def test_resolve_model_names_the_download_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("AUDIO_ANALYSIS_YAMNET_MODEL", raising=False)
    with pytest.raises(YamnetFilesMissingError, match=r"audio\.models download yamnet"):
        resolve_yamnet_model(None)
    model = tmp_path / "mine.tflite"
    model.write_bytes(b"x")
    monkeypatch.setenv("AUDIO_ANALYSIS_YAMNET_MODEL", str(model))
    assert resolve_yamnet_model(None) == model
    assert resolve_yamnet_model(str(model)) == model


def test_not_a_tflite_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "yamnet.tflite"
    bogus.write_bytes(b"definitely not a flatbuffer" * 10)
    class_map = tmp_path / "yamnet_class_map.csv"
    class_map.write_text("index,mid,display_name\n0,/m/a,Speech\n")
    with pytest.raises(YamnetError, match="not a loadable"):
        YamnetModel(bogus, class_map)


# ---------------------------------------------------------------------------------------
# The real model


@pytest.fixture(scope="module")
def yamnet() -> YamnetModel:
    path = require_shared("models", "yamnet", "yamnet.tflite")
    return YamnetModel(path)


@pytest.mark.shared
def test_real_model_signature_and_labels(yamnet: YamnetModel) -> None:
    assert len(yamnet.labels) == 521
    assert yamnet.labels[0] == "Speech" and yamnet.labels[132] == "Music"


@pytest.mark.shared
def test_scores_are_probabilities_and_deterministic(yamnet: YamnetModel, rng) -> None:
    x = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    a = yamnet.frame_scores(x)
    b = yamnet.frame_scores(x)
    assert a.shape == (num_frames(x.size), 521)
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(a, b)


@pytest.mark.shared
def test_embedding_is_the_tensor_feeding_the_classifier(yamnet: YamnetModel, rng) -> None:
    # sigmoid(W·e + b) with the model's own (int8, per-channel) dense weights must give the
    # model's scores back: this pins the embedding to the right tensor.
    t = np.arange(16000 * 2) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    emb, scores = yamnet.embed(x)
    assert emb.shape == (num_frames(x.size), 1024)
    np.testing.assert_allclose(scores, yamnet.frame_scores(x), atol=1e-5)
    it = yamnet._embedding_interpreter()
    details = {d["name"]: d for d in it.get_tensor_details()}
    w = details["yamnet_frames/dense/MatMul"]
    q = w["quantization_parameters"]
    weights = it.get_tensor(w["index"]).astype(np.float32) * q["scales"][:, None]
    bias = it.get_tensor(details["yamnet_frames/dense/BiasAdd/ReadVariableOp/resource"]["index"])
    rebuilt = 1.0 / (1.0 + np.exp(-(emb @ weights.T + bias)))
    # The model quantises the dense layer's input on the fly (dynamic range): ~1e-3 apart.
    np.testing.assert_allclose(rebuilt, scores, atol=1e-2)


# ---------------------------------------------------------------------------------------
# Accuracy on the real UrbanSound8K samples

# File stem → UrbanSound8K class (labels.txt lists the classes by index; the files are
# named after their class).
CLIP_CLASS = {
    "carhorn": "car_horn",
    "dogbark": "dog_bark",
    "drill": "drilling",
    "engine": "engine_idling",
    "gunshots": "gun_shot",
    "jackhammer": "jackhammer",
    "music": "street_music",
    "play": "children_playing",
    "siren": "siren",
}

# UrbanSound8K class → AudioSet display names that count as a hit (see module docstring).
ACCEPTED = {
    # "Air conditioning" is the AudioSet class; "Mechanical fan" is what an AC unit
    # sounds like to the ontology. (labels.txt lists it, but no clip of it is shared.)
    "air_conditioner": ("Air conditioning", "Mechanical fan"),
    # The horn class itself, its truck sibling, and its parent "Car" (Car > Vehicle horn).
    "car_horn": ("Vehicle horn, car horn, honking", "Air horn, truck horn", "Toot", "Car"),
    # Children's voices at play: the group class, child speech and its parent "Speech"
    # (Speech > Child speech), children shouting.
    "children_playing": (
        "Children playing",
        "Child speech, kid speaking",
        "Children shouting",
        "Speech",
    ),
    # Bark and its kinds, then Dog → Domestic animals, pets → Animal (the example).
    "dog_bark": (
        "Bark", "Yip", "Howl", "Bow-wow", "Growling", "Whimper (dog)",
        "Dog", "Canidae, dogs, wolves", "Domestic animals, pets", "Animal",
    ),
    # Drill, its dental kind, and its parent Power tool.
    "drilling": ("Drill", "Dental drill, dentist's drill", "Power tool"),
    # Idling is a kind of Engine; the engine-size classes are Engine's children.
    "engine_idling": (
        "Idling", "Engine", "Light engine (high frequency)",
        "Medium engine (mid frequency)", "Heavy engine (low frequency)",
    ),
    # Gunshot and its kinds, and its parent "Explosion" (Explosion > Gunshot, gunfire).
    "gun_shot": (
        "Gunshot, gunfire", "Machine gun", "Fusillade", "Artillery fire", "Cap gun",
        "Explosion",
    ),
    # Jackhammer and its parent Power tool.
    "jackhammer": ("Jackhammer", "Power tool"),
    # Siren and its kinds (the emergency-vehicle sirens), Emergency vehicle, and Siren's
    # parent "Alarm".
    "siren": (
        "Siren", "Civil defense siren", "Police car (siren)", "Ambulance (siren)",
        "Fire engine, fire truck (siren)", "Emergency vehicle", "Alarm",
    ),
    # Street music is music: the top-level class and "Musical instrument".
    "street_music": ("Music", "Musical instrument"),
}

# Measured on the shared clips with the shared model (see the report / README): drilling
# (YAMNet hears "Music") and jackhammer (it hears "Engine"/"Idling") are misses, the other
# seven are hits. There are 9 clips (labels.txt has no air_conditioner clip).
MIN_HITS = 7


def _read_clip(path: Path) -> tuple[np.ndarray, int]:
    from audio.io import read_audio

    return read_audio(path)


def _clip_ranks(yamnet: YamnetModel, path: Path, accepted: tuple[str, ...]) -> int:
    import resampy

    data, rate = _read_clip(path)
    x = data.mean(axis=1) if data.ndim == 2 else data
    if rate != 16000:
        x = resampy.resample(x.astype(np.float64), rate, 16000)
    scores = yamnet.frame_scores(x).mean(axis=0)
    order = list(np.argsort(-scores, kind="stable"))
    return 1 + min(order.index(yamnet.labels.index(name)) for name in accepted)


@pytest.mark.shared
def test_accepted_names_exist_in_the_class_map(yamnet: YamnetModel) -> None:
    labels = set(yamnet.labels)
    missing = {c: [n for n in names if n not in labels] for c, names in ACCEPTED.items()}
    assert not any(missing.values()), missing


@pytest.mark.shared
def test_urbansound_samples_top5(yamnet: YamnetModel) -> None:
    folder = require_shared("audio", "urbansound_samples")
    classes = {line.split()[1] for line in (folder / "labels.txt").read_text().splitlines() if line.strip()}
    assert set(CLIP_CLASS.values()) <= classes
    wavs = sorted(folder.glob("*.wav"))
    assert {p.stem for p in wavs} == set(CLIP_CLASS), "clip set changed: update CLIP_CLASS"
    ranks = {p.stem: _clip_ranks(yamnet, p, ACCEPTED[CLIP_CLASS[p.stem]]) for p in wavs}
    hits = sum(r <= 5 for r in ranks.values())
    print("best rank of an accepted class per clip:", ranks)
    assert hits >= MIN_HITS, ranks
    # The unambiguous ones must be top-1: a broken front end would lose these first.
    for stem in ("carhorn", "dogbark", "music", "siren"):
        assert ranks[stem] == 1, ranks


@pytest.mark.shared
def test_misc_clips(yamnet: YamnetModel) -> None:
    folder = require_shared("audio", "misc")
    expect = {"dog": "Dog", "speech": "Speech", "baby_cry": "Baby cry, infant cry"}
    for stem, name in expect.items():
        assert _clip_ranks(yamnet, folder / f"{stem}.wav", (name,)) <= 3, stem


def test_import_does_not_load_tensorflow_or_litert() -> None:
    code = (
        "import sys, audio.backends.yamnet; "
        "print('tensorflow' in sys.modules, 'ai_edge_litert.interpreter' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------
# The backend behind the pipeline and the entry scripts


@pytest.mark.shared
def test_backend_streaming_equals_whole_signal(rng) -> None:
    from audio.backends.yamnet import YamnetBackend

    backend = YamnetBackend(require_shared("models", "yamnet", "yamnet.tflite"))
    backend.load()
    x = (0.2 * rng.standard_normal(16000 * 5 + 1234)).astype(np.float32)
    whole = np.concatenate(list(backend.frame_features([x])))
    cuts = [0, 5000, 5001, 40000, 61000, x.size]
    blocks = [x[a:b] for a, b in itertools.pairwise(cuts)]
    streamed = np.concatenate(list(backend.frame_features(blocks)))
    assert whole.shape == (num_frames(x.size), 521)
    np.testing.assert_array_equal(streamed, whole)
    np.testing.assert_array_equal(whole, backend._require().frame_scores(x))
    windows = backend.score_windows([whole[:2], whole])
    np.testing.assert_allclose(windows[1], whole.mean(axis=0), rtol=1e-6)
    backend.close()


@pytest.mark.shared
@pytest.mark.e2e
def test_parse_file_backend_yamnet(project_root: Path, tmp_path: Path) -> None:
    model = require_shared("models", "yamnet", "yamnet.tflite")
    clip = require_shared("audio", "urbansound_samples", "siren.wav")
    cmd = [sys.executable, str(project_root / "parse_file.py"), "--backend", "yamnet",
           "--yamnet_model", str(model), "--format", "json", "--timeline", "--count", "Siren",
           str(clip)]
    # Run the script as __main__, then report whether TensorFlow was ever imported.
    code = ("import os, runpy, sys; sys.argv = sys.argv[1:]; "
            "sys.path.insert(0, os.path.dirname(sys.argv[0])); "
            "rc = 0\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n    rc = e.code\n"
            "print('TF', 'tensorflow' in sys.modules, file=sys.stderr); sys.exit(rc)")
    probe = [sys.executable, "-c", code, *cmd[1:]]
    out = subprocess.run(probe, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    obj = json.loads(out.stdout)
    labels = [p["label"] for p in obj["predictions"]]
    assert "Siren" in labels[:5]
    # --count Siren names the shipped group "siren" (Siren, Police car (siren), ...): a
    # group wins over the class of the same name, as with --listen.
    assert obj["count"]["label"] == "siren" and obj["count"]["events"] == 1
    assert len(obj["windows"]) == 4 and obj["windows"][0]["start"] == 0.0
    assert "TF False" in out.stderr  # the YAMNet path never imports TensorFlow
    missing = subprocess.run(
        [sys.executable, str(project_root / "parse_file.py"), "--backend", "yamnet",
         "--yamnet_model", str(tmp_path / "nope.tflite"), str(clip)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert missing.returncode == 1
    assert "nope.tflite" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.shared
def test_download_registry_has_yamnet() -> None:
    from audio.downloads import GROUPS, sha256_of

    entries = {e.filename: e for e in GROUPS["yamnet"]}
    assert set(entries) == {"yamnet.tflite", "yamnet_class_map.csv"}
    assert entries["yamnet.tflite"].url.startswith("https://storage.googleapis.com/mediapipe-models/")
    # The class map we test with is byte-identical to the one the registry verifies.
    shared_map = require_shared("models", "yamnet", "yamnet_class_map.csv")
    assert sha256_of(shared_map) == entries["yamnet_class_map.csv"].sha256
    assert shared_map.stat().st_size == entries["yamnet_class_map.csv"].size

"""Custom classes by transfer learning: data handling, training, and the round trip into
parse_file.py, capture.py and daemon.py.

The data are synthesised here: sine tones, coloured noise, and espeak-ng speech (several
voices and sentences); the real shared clips give a small second data set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from audio.custom.data import TrainDataError, scan_dataset, split_clips
from audio.custom.metrics import best_f1_threshold, confusion, prf
from audio.io import read_audio, write_wav
from audio.train_custom import main
from tests.conftest import require_shared, require_tool

PROJECT = Path(__file__).resolve().parent.parent
RATE = 16000
SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a test of speech",
    "one two three four five six seven",
    "please call stella and ask her to bring these things",
    "audio analysis with small models on the edge",
    "it is raining in the city tonight",
    "the weather will be sunny tomorrow morning",
    "good evening everyone and welcome",
)
VOICES = ("en", "en-us", "en+f3", "en+m3", "en-gb", "en+f2", "en-us+m2", "en+f4")


def tone(seconds: float, freq: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, rng: np.random.Generator, colour: int, amp: float = 0.2) -> np.ndarray:
    white = rng.standard_normal(int(seconds * RATE))
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(white.size, 1 / RATE), 1.0)
    shaped = np.fft.irfft(spectrum / f ** (colour / 2), white.size)  # white, pink, brown
    return (amp * shaped / np.abs(shaped).max()).astype(np.float32)


def speak(text: str, voice: str, path: Path) -> Path:
    require_tool("espeak-ng")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def custom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATA_DIR with tone/, noise/, speech/: 8 files each, 1.5 to 3 s."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("custom_data")
    for name in ("tone", "noise", "speech"):
        (root / name).mkdir()
    for i in range(8):
        seconds = 1.5 + 0.2 * i
        # Tones, clean and over faint noise, and noise from faint to loud: a detector must
        # learn the tone, not the level or the presence of background.
        beep = tone(seconds, 300 + 170 * i, 0.2 + 0.05 * i) + noise(seconds, rng, i % 3,
                                                                    0.03 * (i % 2))
        write_wav(root / "tone" / f"t{i}.wav", beep, RATE)
        write_wav(root / "noise" / f"n{i}.wav", noise(seconds, rng, i % 3, 0.04 + 0.05 * i), RATE)
        speak(SENTENCES[i], VOICES[i], root / "speech" / f"s{i}.wav")
    return root


@pytest.fixture(scope="session")
def yamnet_model() -> Path:
    return require_shared("models", "yamnet", "yamnet.tflite")


@pytest.fixture(scope="session")
def yamnet_heads(custom_data: Path, yamnet_model: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A multi-class MLP head and a 'tone' detector, both on YAMNet embeddings."""
    out = tmp_path_factory.mktemp("heads")
    classes, detector = out / "classes", out / "tone-detector"
    assert main([str(custom_data), "--embedding", "yamnet", "--yamnet_model", str(yamnet_model),
                 "--head", "mlp", "--name", str(classes)]) == 0
    assert main([str(custom_data), "--embedding", "yamnet", "--yamnet_model", str(yamnet_model),
                 "--target", "tone", "--name", str(detector)]) == 0
    return {"classes": classes, "detector": detector}


# --- units ------------------------------------------------------------------------------


def test_scan_and_split_are_by_file(tmp_path: Path) -> None:
    for name, n in (("a", 5), ("b", 4)):
        (tmp_path / name).mkdir()
        for i in range(n):
            (tmp_path / name / f"{i}.wav").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    names, clips = scan_dataset(tmp_path, None, None, "other")
    assert names == ["a", "b"] and len(clips) == 9
    train, val, test = split_clips(clips, 0.25, 0.2, seed=0)
    parts = [{c.path for c in p} for p in (train, val, test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == 9
    for part in (train, val, test):
        assert {c.label for c in part} == {0, 1}  # stratified: every class everywhere
    names, clips = scan_dataset(tmp_path, None, "b", "other")
    assert names == ["b"] and sorted(c.label for c in clips) == [0] * 5 + [1] * 4


def test_scan_errors(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.wav").write_bytes(b"")
    with pytest.raises(TrainDataError, match="at least two class"):
        scan_dataset(tmp_path, None, None, "other")
    with pytest.raises(TrainDataError, match="not a sub-folder"):
        scan_dataset(tmp_path, None, "bird", "other")
    with pytest.raises(TrainDataError, match="needs negatives"):
        scan_dataset(tmp_path, None, "only", "other")
    with pytest.raises(TrainDataError, match="not a directory"):
        scan_dataset(tmp_path / "nope", None, None, "other")
    names, _ = scan_dataset(tmp_path, tmp_path / "only", None, "background")
    assert names == ["only", "background"]
    from audio.custom.data import Clip

    with pytest.raises(TrainDataError, match="at least 3 files"):
        split_clips([Clip(Path("a"), 0), Clip(Path("b"), 0)], 0.25, 0.2, 0)


def test_metrics_helpers() -> None:
    cm = confusion([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    (p0, r0, _, s0), (p1, r1, _, _), (_, _, f2, _) = prf(cm)
    assert (p0, r0, s0) == (0.5, 0.5, 2) and (p1, r1) == (2 / 3, 1.0) and f2 == 0.0
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    labels = np.array([0, 0, 1, 0, 1, 1])
    t = best_f1_threshold(scores, labels)
    assert 0.2 < t < 0.35  # catches all three positives at the cost of one false positive


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "audio.train_custom", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=PROJECT, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {tmp_path / 'nope'}: not a directory"


# --- training on YAMNet embeddings ------------------------------------------------------


def _parse_file(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT / "parse_file.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=180)


@pytest.mark.shared
@pytest.mark.slow
def test_yamnet_head_classifies_unseen_clips(yamnet_heads: dict[str, Path], yamnet_model: Path,
                                             tmp_path: Path, rng) -> None:
    metrics = json.loads((yamnet_heads["classes"] / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8, metrics
    config = json.loads((yamnet_heads["classes"] / "config.json").read_text())
    assert config["embedding"] == "yamnet" and config["head"]["type"] == "mlp"
    clips = {
        "tone": write_wav(tmp_path / "tone.wav", tone(2.5, 1234.0), RATE),
        "noise": write_wav(tmp_path / "noise.wav", noise(2.5, rng, 1), RATE),
        "speech": speak("this sentence was never heard in training", "en-us+f1",
                        tmp_path / "speech.wav"),
    }
    out = _parse_file("--backend", "yamnet", "--yamnet_model", str(yamnet_model), "--model",
                      str(yamnet_heads["classes"]), "--format", "json",
                      *[str(p) for p in clips.values()], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    for (expected, _), result in zip(clips.items(), results, strict=True):
        assert result["predictions"][0]["label"] == expected, result
    # A YAMNet head is refused by the VGGish backend with a clear message.
    wrong = _parse_file("--model", str(yamnet_heads["classes"]), str(clips["tone"]), cwd=tmp_path)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr


@pytest.mark.shared
@pytest.mark.slow
def test_detector_counts_beeps_in_a_long_recording(yamnet_heads: dict[str, Path],
                                                   yamnet_model: Path, tmp_path: Path,
                                                   rng) -> None:
    config = json.loads((yamnet_heads["detector"] / "config.json").read_text())
    assert config["mode"] == "detector" and 0 < config["threshold"] < 1
    # 40 s of brown-ish noise with 5 beeps of 1.2 s at irregular gaps (3 to 6 s).
    background = noise(40.0, rng, 2, 0.08)
    starts = [2.0, 7.5, 11.0, 17.5, 30.0]
    for i, s in enumerate(starts):
        a = int(s * RATE)
        beep = tone(1.2, 500 + 200 * i, 0.3)
        background[a:a + beep.size] += beep
    wav = write_wav(tmp_path / "long.wav", background, RATE)
    # --count counts the event detector's events, frame by frame (0.48 s hop): a beep lasts
    # 1.2 s, so a sound shorter than that is not one (a lone noise frame the head calls a
    # tone), and beeps 2.3 s or more apart are separate events.
    out = _parse_file("--backend", "yamnet", "--yamnet_model", str(yamnet_model), "--model",
                      str(yamnet_heads["detector"]), "--timeline", "--count", "tone",
                      "--min_duration", "1.2", "--max_not_heard", "0.5",
                      "--format", "json", str(wav), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["count"]["events"] == len(starts), result["count"]
    for (a, b), s in zip(result["count"]["intervals"], starts, strict=True):
        assert a - 1.0 <= s <= b  # each event covers its beep's start


# --- real clips -------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.slow
def test_train_on_real_clips(yamnet_model: Path, tmp_path: Path) -> None:
    """Three classes cut from the shared UrbanSound8K clips (siren, dog bark, music)."""
    folder = require_shared("audio", "urbansound_samples")
    data = tmp_path / "data"
    for stem in ("siren", "dogbark", "music"):
        (data / stem).mkdir(parents=True)
        samples, rate = read_audio(folder / f"{stem}.wav")
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples
        piece = int(1.3 * rate)
        for i in range(3):
            write_wav(data / stem / f"{i}.wav", mono[i * piece:(i + 1) * piece], rate)
    out = subprocess.run([sys.executable, "-m", "audio.train_custom", str(data), "--embedding",
                          "yamnet", "--yamnet_model", str(yamnet_model), "--name",
                          str(tmp_path / "urban")], capture_output=True, text=True,
                         cwd=PROJECT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "confusion matrix" in out.stdout and "precision" in out.stdout
    metrics = json.loads((tmp_path / "urban" / "metrics.json").read_text())
    assert metrics["test_files"] == 3 and metrics["accuracy"] == 1.0, out.stdout


# --- the other entry scripts ------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.e2e
def test_daemon_uses_a_custom_head(yamnet_heads: dict[str, Path], yamnet_model: Path,
                                   tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "tone.wav", tone(3.0, 880.0), RATE)
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT / "daemon.py"), "--source", str(wav), "--no_realtime",
         "--backend", "yamnet", "--yamnet_model", str(yamnet_model), "--model",
         str(yamnet_heads["classes"]), "--min_time", "1", "--max_time", "2", "--port", "0",
         "--config", str(tmp_path / "daemon.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        url = None
        events: list = []
        while time.monotonic() < deadline and not events:
            time.sleep(0.5)
            found = re.search(r"http://127\.0\.0\.1:\d+/", "".join(lines))
            if found and url is None:
                url = found.group(0)
            if url:
                with urllib.request.urlopen(url + "api/events", timeout=10) as response:
                    body = json.loads(response.read())
                events = body["events"] if isinstance(body, dict) else body
        assert events, "".join(lines)[-3000:]
        assert all(e["predictions"][0]["label"] == "tone" for e in events), events
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.e2e
def test_capture_uses_a_custom_head(yamnet_heads: dict[str, Path], yamnet_model: Path,
                                    virtual_microphone, tmp_path: Path) -> None:
    from tests.fixtures_audio import run_capture, script_env

    pcm = np.round(tone(6.0, 660.0) * 32767).astype(np.int16)
    _, lines = run_capture(
        virtual_microphone, ["--backend", "yamnet", "--yamnet_model", str(yamnet_model),
                             "--model", str(yamnet_heads["classes"]), "--min_time", "2",
                             "--max_time", "3"],
        pcm, env=script_env(virtual_microphone.env()), cwd=tmp_path,
        done=lambda lines: any("Predictions [" in x for x in lines), start_timeout=120)
    predictions = [x for x in lines if "Predictions [" in x]
    assert predictions, "".join(lines)[-3000:]
    assert "tone" in predictions[0].split("]: ", 1)[1], predictions


# --- VGGish embeddings (the TensorFlow-free path with the exported fixture model) -------


@pytest.mark.slow
@pytest.mark.e2e
def test_vggish_head_round_trip_without_tensorflow(edge_models_dir: Path, custom_data: Path,
                                                   tmp_path: Path) -> None:
    env = {**os.environ, "AUDIO_ANALYSIS_MODELS_DIR": str(edge_models_dir)}
    for name in ("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", "AUDIO_ANALYSIS_PCA_PARAMS",
                 "AUDIO_ANALYSIS_MODEL", "AUDIO_ANALYSIS_VGGISH_TFLITE"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-m", "audio.train_custom", str(custom_data),
                          "--embedding", "vggish", "--name", "my-sounds"],
                         capture_output=True, text=True, cwd=PROJECT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    bundle = edge_models_dir / "my-sounds"
    assert json.loads((bundle / "config.json").read_text())["embedding"] == "vggish"
    from tests.test_export import PROBE

    wav = custom_data / "tone" / "t0.wav"
    run = subprocess.run([sys.executable, "-c", PROBE, str(PROJECT / "parse_file.py"),
                          "--model", "my-sounds", "--format", "json", str(wav)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "TF False" in run.stderr
    labels = {p["label"] for p in json.loads(run.stdout)["predictions"]}
    assert labels <= {"tone", "noise", "speech"} and labels


# --- the README's commands, as a new user runs them (issue 23) ---------------------------


def _train_custom(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audio.train_custom", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.shared
@pytest.mark.e2e
def test_readme_train_then_parse_by_the_folder_name(custom_data: Path, yamnet_model: Path,
                                                    tmp_path: Path) -> None:
    """``train_custom my_sounds/ --negative ...`` then ``parse_file.py --model my_sounds``:
    the bundle is named after the data folder; a second run refuses to overwrite it (one
    line, exit 3) unless ``--force``; LiteRT's XNNPACK line only with ``-v``."""
    import os
    import shutil

    from tests.fixtures_audio import NATIVE_CHATTER

    data, background = tmp_path / "my_sounds", tmp_path / "my_sounds_background"
    shutil.copytree(custom_data / "tone", data / "tone")
    shutil.copytree(custom_data / "noise", data / "noise")
    shutil.copytree(custom_data / "speech", background)
    models_dir = tmp_path / "models"
    env = {k: v for k, v in os.environ.items()
           if k not in ("AUDIO_ANALYSIS_QUIET_NATIVE", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(AUDIO_ANALYSIS_MODELS_DIR=str(models_dir), PYTHONPATH=str(PROJECT))
    train = ["my_sounds/", "--negative", "my_sounds_background/", "--embedding", "yamnet",
             "--yamnet_model", str(yamnet_model)]
    first = _train_custom(*train, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert not re.search(NATIVE_CHATTER, first.stderr, re.M), first.stderr
    assert first.stderr == ""
    bundle = models_dir / "my_sounds"
    assert (bundle / "config.json").is_file(), first.stdout
    assert f"--model {bundle}" in first.stdout
    used = subprocess.run([sys.executable, str(PROJECT / "parse_file.py"), "--backend",
                           "yamnet", "--yamnet_model", str(yamnet_model), "--model",
                           "my_sounds", str(data / "tone" / "t3.wav")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert used.returncode == 0, used.stderr
    assert used.stdout.startswith(("tone: ", "noise: ", "other: ")), used.stdout
    config = (bundle / "config.json").read_bytes()
    again = _train_custom(*train, env=env, cwd=tmp_path)
    assert again.returncode == 3, again.stderr
    assert again.stderr.count("\n") == 1 and "--force" in again.stderr, again.stderr
    assert str(bundle) in again.stderr and "Traceback" not in again.stderr
    assert again.stdout == ""  # refused before any file was read
    assert (bundle / "config.json").read_bytes() == config
    forced = _train_custom(*train, "--force", "--seed", "1", "-v", env=env, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "XNNPACK" in forced.stderr  # -v shows the native lines
    assert json.loads((bundle / "config.json").read_text())["head"]["seed"] == 1

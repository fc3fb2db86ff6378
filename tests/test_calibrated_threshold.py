"""``--threshold calibrated`` (each class against its own threshold from the bundle) and the
``--listen`` warning about classes the classifier rarely recognises (eval AP < 0.1)."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from audio.io import write_wav
from audio.pipeline import NoCalibrationError, WavProcessor
from audio.settings import Settings, add_model_arguments
from audio.sounds import Sound, load_sound_groups, warn_weak_sounds, weak_sound_warnings
from tests.fixtures_audio import script_env
from yt8m.bundle import CLASS_METRICS_FILE, read_labels
from yt8m.bundle.format import read_config

PROJECT = Path(__file__).resolve().parent.parent
RATE = 16000


def _settings(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return Settings.from_args(parser.parse_args(list(argv)), environ={})


def test_threshold_flag_takes_a_score_or_calibrated(capsys):
    calibrated = _settings("--threshold", "Calibrated")
    assert calibrated.calibrated_threshold and calibrated.threshold == 0.1
    assert calibrated.threshold_label == "calibrated per class"
    plain = _settings("--threshold", "0.3")
    assert not plain.calibrated_threshold and plain.threshold_label == "0.3"
    with pytest.raises(SystemExit) as exc:
        _settings("--threshold", "high")
    assert exc.value.code == 2 and "calibrated" in capsys.readouterr().err


class _Backend:
    """Fixed scores, and per-class thresholds like a calibrated bundle's."""

    name = "fixed"
    sample_rate = RATE
    frame_hop = frame_seconds = 0.96
    max_frames = 10

    def __init__(self, thresholds: dict[str, float] | None) -> None:
        self.labels = ["a", "b", "c", "d"]
        self.class_thresholds = thresholds

    def load(self) -> None:
        pass

    def frame_features(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        yield from ()

    def score_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        return np.zeros((len(windows), 4))

    def close(self) -> None:
        pass


def test_rank_uses_each_class_threshold_then_top_k():
    scores = np.array([0.9, 0.5, 0.2, 0.05])
    backend = _Backend({"a": 0.95, "b": 0.4, "c": 0.1})  # d: none, the global 0.1 serves
    processor = WavProcessor(Settings(calibrated_threshold=True, top_k=1), backend=backend)
    assert [p.label for p in processor.rank(scores, top_k=4)] == ["b", "c"]
    # top_k after filtering: "a" (highest score, below its threshold) takes no place.
    assert [p.label for p in processor.rank(scores)] == ["b"]
    assert [p.label for p in processor.rank(scores, top_k=4, threshold=0.0)] == \
        ["a", "b", "c", "d"]
    plain = WavProcessor(Settings(top_k=4), backend=_Backend({"a": 0.95}))
    assert [p.label for p in plain.rank(scores)] == ["a", "b", "c"]  # global 0.1


def test_calibrated_without_thresholds_is_a_usage_error():
    processor = WavProcessor(Settings(calibrated_threshold=True), backend=_Backend(None))
    with pytest.raises(NoCalibrationError, match=r"yt8m\.calibrate"):
        processor.load()


def _parse_file(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROJECT / "parse_file.py"), *args],
                          capture_output=True, text=True, timeout=300, env=script_env(env),
                          cwd=PROJECT)


@pytest.fixture(scope="module")
def noise_wav(tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    samples = np.clip(rng.standard_normal(RATE * 3) * 0.3, -1, 1)
    return write_wav(tmp_path_factory.mktemp("calibrated") / "noise.wav", samples, RATE)


@pytest.mark.slow
def test_parse_file_threshold_calibrated_on_a_small_bundle(calibrated, noise_wav,
                                                           app_model_env):
    """Every class shown is above its own threshold from config.json, and every class
    above its own threshold is shown."""
    common = ["--model", str(calibrated), "--format", "json", "--top_k", "527", str(noise_wav)]
    full = _parse_file(["--threshold", "0", *common], app_model_env)
    cal = _parse_file(["--threshold", "calibrated", *common], app_model_env)
    assert full.returncode == 0 and cal.returncode == 0, full.stderr + cal.stderr
    _, names = read_labels(calibrated / "labels.csv")
    limit = dict(zip(names, read_config(calibrated)["class_thresholds"], strict=True))
    everything = json.loads(full.stdout)["predictions"]
    expected = [p["label"] for p in everything if p["score"] > limit[p["label"]]]
    shown = [p["label"] for p in json.loads(cal.stdout)["predictions"]]
    assert shown == expected and 0 < len(shown) < len(everything)


def test_weak_sound_warnings_name_the_weak_classes():
    ap = {"Yip": 0.03, "Bark": 0.6, "Hum": 0.01}
    sounds = [Sound("dog", ("Bark", "Yip"), (0, 1)), Sound("Hum", ("Hum",), (2,)),
              Sound("Bark", ("Bark",), (0,))]
    assert weak_sound_warnings(sounds, ap) == [
        "dog: this classifier rarely recognises Yip (eval AP 0.03)",
        "this classifier rarely recognises Hum (eval AP 0.01)"]
    assert weak_sound_warnings(sounds, None) == []


def test_capture_and_daemon_warn_only_with_listen(caplog):
    """capture.py and daemon.py log the same warnings, for --listen (not --events alone)."""
    import logging
    import types

    backend = types.SimpleNamespace(class_eval_ap={"Yip": 0.03, "Bark": 0.6})
    sounds = [Sound("dog", ("Bark", "Yip"), (0, 1))]
    log = logging.getLogger("test.weak")
    with caplog.at_level(logging.WARNING, logger="test.weak"):
        warn_weak_sounds(Settings(events=True), sounds, backend, log)
        assert caplog.messages == []
        warn_weak_sounds(Settings(listen="dog"), sounds, backend, log)
        warn_weak_sounds(Settings(listen="dog"), sounds, types.SimpleNamespace(), log)
    assert caplog.messages == ["dog: this classifier rarely recognises Yip (eval AP 0.03)"]


def _weak_and_strong(bundle: Path) -> tuple[str, str]:
    """The bundle's lowest- and highest-AP classes that --listen can name on their own."""
    groups = set(load_sound_groups())
    with open(bundle / CLASS_METRICS_FILE, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["ap"] and "," not in r["display_name"]
                and r["display_name"].lower() not in groups]
    rows.sort(key=lambda r: float(r["ap"]))
    return rows[0]["display_name"], rows[-1]["display_name"]


@pytest.mark.slow
def test_listen_warns_about_a_class_of_low_eval_ap(noise_wav, app_model_env):
    bundle = PROJECT / "models" / "audioset-logistic-v1"
    weak, strong = _weak_and_strong(bundle)
    run = _parse_file(["--model", "audioset-logistic-v1", "--listen", f"{weak},{strong}",
                       str(noise_wav)], app_model_env)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "rarely recognises" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    assert f"rarely recognises {weak} (eval AP " in warnings[0] and strong not in warnings[0]

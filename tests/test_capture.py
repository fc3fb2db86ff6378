"""capture.py end to end through a real PyAudio → ALSA → PulseAudio path.

A private PulseAudio daemon's pipe source is the default microphone
(``tests.fixtures_audio.virtual_microphone``); the test plays a known signal into it in
real time, runs ``capture.py --save_path`` as a subprocess, interrupts it with Ctrl-C
(SIGINT), and checks that every saved window is the played audio (cross-correlation)
and that predictions were logged for every window.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio.io import read_audio
from tests.fixtures_audio import NATIVE_CHATTER, chirps_and_noise, run_capture, script_env

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT / "capture.py"
RATE = 16000


def _best_match(played: np.ndarray, window: np.ndarray) -> tuple[int, float]:
    """Lag of ``window`` in ``played`` and the normalised cross-correlation there."""
    n = len(played) + len(window)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(played, size) * np.conj(np.fft.rfft(window, size)), size)
    lag = int(np.argmax(corr[:len(played) - len(window) + 1]))
    segment = played[lag:lag + len(window)]
    score = float(np.dot(segment, window) / (np.linalg.norm(segment) * np.linalg.norm(window)))
    return lag, score


def test_save_path_must_be_an_existing_directory(tmp_path):
    for path, message in ((tmp_path / "nope", "does not exist"),
                          (Path(__file__), "is not a directory")):
        result = subprocess.run([sys.executable, str(SCRIPT), "-s", str(path)],
                                capture_output=True, text=True, env=script_env(), cwd=PROJECT,
                                timeout=60)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"error: save path {path} {message}"]


def test_min_time_above_max_time_is_a_usage_error():
    result = subprocess.run([sys.executable, str(SCRIPT), "--min_time", "8", "--max_time", "7"],
                            capture_output=True, text=True, env=script_env(), cwd=PROJECT,
                            timeout=60)
    assert result.returncode == 2
    assert "--max_time (7.0) must not be less than --min_time (8.0)" in result.stderr


@pytest.mark.e2e
def test_list_devices_and_unknown_device(virtual_microphone):
    listed = subprocess.run([sys.executable, str(SCRIPT), "--list_devices"], capture_output=True,
                            text=True, env=script_env(virtual_microphone.env()), cwd=PROJECT,
                            timeout=60)
    assert listed.returncode == 0
    assert re.search(r"^\*\s+\d+\s+\S", listed.stdout, re.M), listed.stdout  # a default input
    unknown = subprocess.run([sys.executable, str(SCRIPT), "--device", "no-such-microphone"],
                             capture_output=True, text=True,
                             env=script_env(virtual_microphone.env()), cwd=PROJECT, timeout=60)
    assert unknown.returncode == 2
    assert "error: no input device 'no-such-microphone'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_capture_saves_what_the_microphone_heard_and_logs_predictions(
        virtual_microphone, app_model_env, tmp_path, rng):
    save = tmp_path / "records"
    save.mkdir()
    played = chirps_and_noise(9.0, rng)
    pcm = np.round(played * 32767).astype(np.int16)
    env = script_env({**virtual_microphone.env(), **app_model_env})
    returncode, log = run_capture(
        virtual_microphone, ["--min_time", "2", "--max_time", "3", "--save_path", str(save)],
        pcm, env=env, cwd=PROJECT,
        done=lambda lines: sum("Predictions [" in line for line in lines) >= 3)
    text = "".join(log)
    assert returncode == 130, text[-3000:]  # Ctrl-C: the windows drained, then 128 + SIGINT
    assert "Traceback" not in text
    # No native chatter without -v: PortAudio's ALSA/JACK probe, TensorFlow, LiteRT.
    assert not re.search(NATIVE_CHATTER, text, re.M), text[:3000]
    saved = sorted(save.glob("record_*.wav"))
    predictions = [line for line in log if "Predictions [" in line]
    assert len(saved) >= 3 and len(predictions) == len(saved), text[-3000:]
    for line in predictions:
        body = line.split("]: ", 1)[1].strip()
        assert re.fullmatch(r"[^:]+: \d\.\d\d(, [^:]+: \d\.\d\d)*", body) or \
            body == "no class above the threshold", body
    assert re.search(r"Stopped: \d+ windows processed, 0 dropped, 0 errors", text)
    lags = []
    for path in saved:
        audio, rate = read_audio(path)
        assert rate == RATE and 2.0 <= len(audio) / RATE <= 3.0
        lag, score = _best_match(pcm / 32768.0, audio.astype(np.float64))
        assert score > 0.999, (path.name, score)
        lags.append(lag)
        np.testing.assert_array_equal(np.round(audio * 32768).astype(np.int16),
                                      pcm[lag:lag + len(audio)])
    # Consecutive windows follow each other without a gap.
    lengths = [len(read_audio(p)[0]) for p in saved]
    assert lags[0] == 0
    for i in range(1, len(lags)):
        assert lags[i] == lags[i - 1] + lengths[i - 1]


@pytest.mark.e2e
@pytest.mark.slow
def test_capture_listens_for_a_dog_and_saves_the_event(virtual_microphone, tmp_path):
    """[3 s silence][dog bark, 4 s][6 s silence] into the microphone with --listen dog:
    one start line and one end line for the dog, at the stream times where the bark was
    played (the pipe source records nothing before the first write, so stream time is
    played time), and with --save_events the event's audio with a second on each side."""
    from audio.io import mono_blocks, open_audio
    from tests.conftest import require_shared

    model = require_shared("models", "yamnet", "yamnet.tflite")
    with open_audio(require_shared("audio", "urbansound_samples", "dogbark.wav")) as reader:
        bark = np.concatenate(list(mono_blocks(reader, RATE)))
    played = np.concatenate([np.zeros(3 * RATE), bark, np.zeros(6 * RATE)])
    pcm = np.round(played * 32767).astype(np.int16)
    save = tmp_path / "events"
    save.mkdir()
    env = script_env(virtual_microphone.env())
    returncode, log = run_capture(
        virtual_microphone, ["--backend", "yamnet", "--yamnet_model", str(model), "--listen",
                             "dog", "--min_time", "2", "--max_time", "3", "--save_path",
                             str(save), "--save_events"], pcm, env=env, cwd=PROJECT,
        done=lambda lines: any("event_" in line and "saved" in line for line in lines))
    text = "".join(log)
    assert returncode == 130 and "Traceback" not in text, text[-3000:]
    starts = re.findall(r"Event start: dog at (\d+\.\d\d) s \(peak 0\.\d\d, -?\d+ dBFS, #1\)",
                        text)
    ends = re.findall(r"Event end: dog (\d+\.\d\d)-(\d+\.\d\d) s \(peak", text)
    assert len(starts) == 1 and len(ends) == 1, text[-3000:]
    assert "Event start:" not in text.replace("Event start: dog", "")  # nothing else
    start, end = float(ends[0][0]), float(ends[0][1])
    assert float(starts[0]) == start
    bark_end = 3.0 + len(bark) / RATE
    assert 3.0 - 0.96 <= start <= 3.0 + 0.5 and bark_end - 0.5 <= end <= bark_end + 0.96
    assert sum("Predictions [" in line for line in log) >= 3  # windows still classified
    (saved,) = save.iterdir()  # the event only: no record_*.wav
    assert re.fullmatch(r"event_1_dog_\d{10}\.wav", saved.name)
    audio, rate = read_audio(saved)
    slack = round(0.01 * RATE)  # the log's times have two decimals
    first = round((start - 1.0) * RATE)
    assert rate == RATE and abs(len(audio) - (end - start + 2.0) * RATE) <= slack
    samples = np.round(audio * 32768).astype(np.int16)
    lags = [lag for lag in range(first - slack, first + slack + 1)
            if np.array_equal(samples, pcm[lag:lag + len(samples)])]
    assert lags, "the saved audio is not the played audio around the event"


def test_save_events_needs_save_path():
    result = subprocess.run([sys.executable, str(SCRIPT), "--save_events"], capture_output=True,
                            text=True, env=script_env(), cwd=PROJECT, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --save_events needs --save_path DIR"]

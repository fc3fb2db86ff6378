"""The processing loop: order, sinks failing, errors, drops, shutdown, signals; sources.

A stand-in processor (no model) is used where the subject is the loop itself; the
microphone test records for real through PyAudio from a PulseAudio pipe source.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audio.events import Event, Prediction
from audio.io import read_audio, write_wav
from audio.loop import AudioWindow, ProcessingLoop
from audio.sinks import CallbackSink, LogSink, SaveDirectoryError, WavSaverSink
from audio.sources import FileSource, FileStreamSource, MicrophoneSource
from tests.fixtures_audio import chirps_and_noise, script_env

RATE = 16000


class RmsProcessor:
    """Predicts one 'class': the window's RMS level. Optionally slow or failing."""

    def __init__(self, delay: float = 0.0, fail_on: set[int] | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on or set()
        self.calls = 0

    def predict(self, waveform: np.ndarray, sample_rate: int) -> tuple[Prediction, ...]:
        self.calls += 1
        if self.calls in self.fail_on:
            raise ValueError(f"scripted failure on call {self.calls}")
        if self.delay:
            time.sleep(self.delay)  # stands in for classification time
        return (Prediction("rms", float(np.sqrt(np.mean(np.square(waveform))))),)


def _files(tmp_path: Path, rng: np.random.Generator, seconds: list[float]) -> list[Path]:
    paths = []
    for i, s in enumerate(seconds):
        audio = np.clip(rng.standard_normal(int(s * RATE)) * 0.1 * (i + 1), -1, 1)
        paths.append(write_wav(tmp_path / f"f{i}.wav", audio, RATE))
    return paths


def test_file_stream_windows_in_order_to_every_sink(tmp_path, rng):
    _files(tmp_path, rng, [5.0, 2.5, 0.5, 0.01])
    received: list[Event] = []
    source = FileStreamSource([tmp_path], window_seconds=2.0)
    loop = ProcessingLoop(source, RmsProcessor(), [CallbackSink(received.append), LogSink()])
    loop.run()
    spans = [(Path(e.source).name, e.start, e.end) for e in received]
    # f0's last second is a window of its own (>= 0.975 s); f1's last 0.5 s joins the
    # window before it; the files shorter than a window, 0.5 s and 10 ms, are one each.
    assert spans == [("f0.wav", 0.0, 2.0), ("f0.wav", 2.0, 4.0), ("f0.wav", 4.0, 5.0),
                     ("f1.wav", 0.0, 2.5), ("f2.wav", 0.0, 0.5), ("f3.wav", 0.0, 0.01)]
    assert [e.id for e in received] == [1, 2, 3, 4, 5, 6]
    assert received[3].predictions[0].score > received[0].predictions[0].score  # louder file
    stats = loop.stats()
    assert stats["windows_processed"] == stats["windows_received"] == 6
    assert stats["errors"] == 0 and stats["windows_dropped"] == 0 and not stats["running"]
    assert source.files_failed == 0


def test_a_failing_sink_is_logged_and_the_loop_goes_on(tmp_path, rng, caplog):
    (path,) = _files(tmp_path, rng, [6.0])
    good: list[Event] = []

    def explode(event: Event) -> None:
        raise RuntimeError(f"sink broken on {event.id}")

    loop = ProcessingLoop(FileSource(path, window_seconds=1.0), RmsProcessor(fail_on={2}),
                          [CallbackSink(explode), CallbackSink(good.append)])
    loop.run()
    stats = loop.stats()
    assert [e.id for e in good] == [1, 2, 3, 4, 5]  # window 2 failed in the processor
    assert stats["windows_processed"] == 5 and stats["sink_errors"] == 5
    assert stats["errors"] == 6  # 5 sink failures + 1 processing failure
    assert "sink broken on 1" in caplog.text and "scripted failure" in caplog.text


class _BurstSource:
    """A real-time source that produces windows faster than they are processed."""

    name = "burst"
    realtime = True

    def __init__(self, count: int) -> None:
        self.count = count

    def windows(self, stop: threading.Event) -> Iterator[AudioWindow]:
        for i in range(self.count):
            if stop.is_set():
                return
            yield AudioWindow(np.zeros(RATE, np.float32), RATE, i, i + 1.0, time.time(), "b")

    def request_window(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_realtime_source_never_blocks_oldest_windows_dropped_and_counted():
    received: list[Event] = []
    loop = ProcessingLoop(_BurstSource(20), RmsProcessor(delay=0.05),
                          [CallbackSink(received.append)], queue_size=2)
    loop.run()
    stats = loop.stats()
    assert stats["windows_received"] == 20
    assert stats["windows_dropped"] > 0
    assert stats["windows_processed"] + stats["windows_dropped"] == 20
    assert received[-1].start == 19  # the newest window always survives


def test_stop_from_another_thread_drains_the_queue(tmp_path, rng):
    (path,) = _files(tmp_path, rng, [3.0])
    received: list[Event] = []
    source = FileStreamSource([path], loop=True, realtime=False, window_seconds=1.0)
    loop = ProcessingLoop(source, RmsProcessor(delay=0.01), [CallbackSink(received.append)])
    thread = loop.start()
    deadline = time.monotonic() + 30
    while len(received) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and loop.join(0)
    stats = loop.stats()
    assert stats["windows_received"] == stats["windows_processed"] >= 10  # nothing left
    assert stats["queue_size"] == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_loop_cleanly_and_is_recorded(tmp_path, rng, signum):
    """SIGTERM and Ctrl-C both drain and return; ``stop_signal`` tells them apart (the
    scripts exit 0 after SIGTERM, 130 after Ctrl-C)."""
    (path,) = _files(tmp_path, rng, [2.0])
    program = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from audio.events import Prediction
        from audio.loop import ProcessingLoop
        from audio.sinks import CallbackSink
        from audio.sources import FileStreamSource

        class P:
            def predict(self, waveform, rate):
                return (Prediction("x", 0.5),)

        def first(event, seen=[]):
            seen.append(event)
            if len(seen) == 1:
                print("running", flush=True)

        loop = ProcessingLoop(FileStreamSource([{str(path)!r}], loop=True, realtime=True,
                                               window_seconds=1.0), P(), [CallbackSink(first)])
        loop.run()
        print(json.dumps(loop.stats()), flush=True)
        print("stop_signal", loop.stop_signal, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=script_env())
    try:
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert '"windows_processed"' in out and "Traceback" not in err
    assert f"stop_signal {int(signum)}" in out


def test_wav_saver_sink_names_and_contents(tmp_path, rng):
    audio = (rng.standard_normal(RATE) * 0.1).astype(np.float32)
    sink = WavSaverSink(tmp_path)
    event = Event(1, 1700000000.4, 0.0, 1.0, (), "mic", RATE, audio)
    sink.handle(event)
    sink.handle(event)
    assert [p.name for p in sink.saved] == ["record_1700000000.wav", "record_1700000000_1.wav"]
    saved, rate = read_audio(sink.saved[0])
    assert rate == RATE
    np.testing.assert_allclose(saved, audio, atol=1 / 32768)
    with pytest.raises(SaveDirectoryError, match="does not exist"):
        WavSaverSink(tmp_path / "nope")
    with pytest.raises(SaveDirectoryError, match="not a directory"):
        WavSaverSink(sink.saved[0])


@pytest.mark.slow
def test_microphone_windows_are_contiguous_while_classifying(virtual_microphone, monkeypatch,
                                                             rng):
    """Through PyAudio for real: windows of min..max time, nothing lost between them even
    though every window takes 1.5 s to classify."""
    virtual_microphone.apply_env(monkeypatch)
    signal_ = chirps_and_noise(9.0, rng)
    pcm = np.round(signal_ * 32767).astype(np.int16)
    received: list[Event] = []
    source = MicrophoneSource(min_time=1.0, max_time=2.0)
    source.open()
    loop = ProcessingLoop(source, RmsProcessor(delay=1.5), [CallbackSink(received.append)])
    thread = loop.start()
    virtual_microphone.play(pcm)
    time.sleep(2.5)  # let the last windows come out
    loop.stop()
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert len(received) >= 3
    for before, after in itertools.pairwise(received):
        assert after.start == pytest.approx(before.end)  # contiguous: nothing dropped
    for event in received[1:]:
        assert 1.0 <= event.end - event.start <= 2.0 + 1e-9
    recorded = np.concatenate([e.audio for e in received])
    expected = pcm[:recorded.shape[0]] / 32768.0
    np.testing.assert_array_equal(recorded, expected.astype(np.float32))
    assert loop.stats()["windows_dropped"] == 0

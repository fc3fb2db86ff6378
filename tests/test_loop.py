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

from audio.events import Event, Prediction, SoundEvent
from audio.io import read_audio, write_wav
from audio.loop import AudioWindow, ProcessingLoop
from audio.sinks import CallbackSink, LogSink, SaveDirectoryError, WavSaverSink
from audio.sources import FileSource, FileStreamSource, MicrophoneSource
from tests.conftest import require_shared
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
@pytest.mark.parametrize("block", [None, 0.1])
def test_microphone_windows_are_contiguous_while_classifying(virtual_microphone, monkeypatch,
                                                             rng, block):
    """Through PyAudio for real: windows of min..max time, nothing lost between them even
    though every window takes 1.5 s to classify; the same in block mode (events), where
    every block goes to the events at once."""
    virtual_microphone.apply_env(monkeypatch)
    signal_ = chirps_and_noise(9.0, rng)
    pcm = np.round(signal_ * 32767).astype(np.int16)
    received: list[Event] = []
    events = _ScriptedEvents()
    source = MicrophoneSource(min_time=1.0, max_time=2.0, block_seconds=block)
    source.open()
    loop = ProcessingLoop(source, RmsProcessor(delay=1.5), [CallbackSink(received.append)],
                          events=events if block else None)
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
    assert loop.stats()["windows_dropped"] == loop.stats()["blocks_dropped"] == 0
    if block:
        assert all(end - start <= block + 1e-9 for start, end, _ in events.pushes)
        assert events.pushes[0][0] == 0.0 and all(
            after[0] == pytest.approx(before[1])
            for before, after in itertools.pairwise(events.pushes))


# -- sound events through the loop ------------------------------------------------------
class _ScriptedEvents:
    """Stands in for ``EventStream``: a sound is 'heard' in a piece whose peak is >= 0.5;
    records every push; ``close`` ends what is active (as the real stream does)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[float, float, str]] = []
        self.active: int | None = None
        self.next_id = 1

    def _record(self, kind: str, start: float) -> SoundEvent:
        assert self.active is not None
        return SoundEvent(kind, self.active, "loud", ("loud",), start, start, 1.0, 1.0, 0.0,
                          0.0, "f")

    def push(self, audio, start, *, timestamp=None, source=""):
        self.pushes.append((start, start + len(audio) / RATE, source))
        loud = float(np.max(np.abs(audio), initial=0.0)) >= 0.5
        if loud and self.active is None:
            self.active, self.next_id = self.next_id, self.next_id + 1
            return [self._record("start", start)]
        if not loud and self.active is not None:
            record = self._record("end", start)
            self.active = None
            return [record]
        return []

    def close(self):
        if self.active is None:
            return []
        record = self._record("end", -1.0)
        self.active = None
        return [record]


class _Recorder:
    """A sink that writes what it receives, and its close, into one shared journal."""

    def __init__(self, journal: list, name: str, fail_sounds: bool = False) -> None:
        self.journal, self.name, self.fail_sounds = journal, name, fail_sounds

    def handle(self, event: Event) -> None:
        self.journal.append((self.name, "window", event.start, event.end))

    def handle_sound(self, record: SoundEvent) -> None:
        if self.fail_sounds:
            raise RuntimeError(f"sink broken on sound {record.id}")
        self.journal.append((self.name, record.kind, record.id, record.start))

    def close(self) -> None:
        self.journal.append((self.name, "close"))


def _quiet_loud(tmp_path: Path, pattern: str) -> Path:
    """A file of one-second pieces: '.' quiet noise, 'X' loud (peak 0.9)."""
    rng = np.random.default_rng(1)
    pieces = [rng.uniform(-0.1, 0.1, RATE) * (9 if c == "X" else 1) for c in pattern]
    return write_wav(tmp_path / "ql.wav", np.concatenate(pieces), RATE)


def test_sound_events_reach_every_sink_in_order_and_close_ends_them_first(tmp_path):
    """Records go to every sink as soon as their block is pushed, before the window that
    holds them; the stream's last end comes from close(), before any sink closes."""
    path = _quiet_loud(tmp_path, ".X..X")
    journal: list = []
    events = _ScriptedEvents()
    source = FileStreamSource([path], window_seconds=2.5, block_seconds=0.5)
    loop = ProcessingLoop(source, RmsProcessor(), [_Recorder(journal, "a"),
                                                   _Recorder(journal, "b")], events=events)
    loop.run()
    a = [entry[1:] for entry in journal if entry[0] == "a"]
    assert a == [("start", 1, 1.0), ("end", 1, 2.0), ("window", 0.0, 2.5),
                 ("start", 2, 4.0), ("window", 2.5, 5.0), ("end", 2, -1.0), ("close",)]
    assert [entry[1:] for entry in journal if entry[0] == "b"] == a
    assert journal.index(("a", "end", 2, -1.0)) < journal.index(("a", "close"))
    assert journal.index(("b", "end", 2, -1.0)) < journal.index(("a", "close"))
    assert events.pushes == [(i * 0.5, (i + 1) * 0.5, str(path)) for i in range(10)]
    stats = loop.stats()
    assert stats["sound_records"] == 4 and stats["sound_events_started"] == 2
    assert stats["sound_events_ended"] == 2 and stats["errors"] == 0
    assert stats["blocks_received"] == 10 and stats["windows_processed"] == 2


def test_a_failing_handle_sound_is_logged_and_counted(tmp_path, caplog):
    path = _quiet_loud(tmp_path, ".X.")
    journal: list = []
    loop = ProcessingLoop(FileSource(path, window_seconds=1.0),
                          RmsProcessor(), [_Recorder(journal, "bad", fail_sounds=True),
                                           _Recorder(journal, "good")], events=_ScriptedEvents())
    loop.run()
    assert [e[1] for e in journal if e[0] == "good"] == ["window", "start", "window", "end",
                                                         "window", "close"]
    stats = loop.stats()
    assert stats["sink_errors"] == stats["errors"] == 2 and stats["windows_processed"] == 3
    assert "sink broken on sound 1" in caplog.text


class _StoreChecker:
    """A sink that, at the moment it is handed something, finds it already in the store
    (committed, with the same id) and notes (kind, id, seq of the row)."""

    def __init__(self, store) -> None:
        self.store, self.seen = store, []

    def _check(self, item, kind: str) -> None:
        (row,) = [r for r in self.store.since(0) if r.item == item]
        self.seen.append((kind, item.id, row.seq))

    def handle(self, event: Event) -> None:
        self._check(event, "window")

    def handle_sound(self, record: SoundEvent) -> None:
        self._check(record, record.kind)

    def close(self) -> None:
        pass


def test_with_a_store_everything_is_committed_before_the_sinks_and_ids_go_on(tmp_path):
    """Ids are the store's seqs (a sound event's: its start's), continuing after the rows
    an earlier run left; each sink finds what it is handed already committed."""
    from audio.store import Store

    db = tmp_path / "events.db"
    for run in range(2):
        with Store(db, prune_in_background=False) as store:
            checker = _StoreChecker(store)
            loop = ProcessingLoop(FileStreamSource([_quiet_loud(tmp_path, ".X..X")],
                                                   window_seconds=2.5, block_seconds=0.5),
                                  RmsProcessor(), [checker], events=_ScriptedEvents(),
                                  store=store)
            loop.run()
            first = run * 6
            assert checker.seen == [
                ("start", first + 1, first + 1), ("end", first + 1, first + 2),
                ("window", first + 3, first + 3), ("start", first + 4, first + 4),
                ("window", first + 5, first + 5), ("end", first + 4, first + 6)]
            assert loop.stats()["store_errors"] == 0 and loop.stats()["store"] is True
    with Store(db, prune_in_background=False) as store:
        assert [r.seq for r in store.since(0)] == list(range(1, 13))


def test_what_cannot_be_committed_reaches_no_sink(tmp_path, caplog):
    from audio.store import Store

    store = Store(tmp_path / "events.db", prune_in_background=False)
    store.close()  # every append now fails with a StoreError
    journal: list = []
    loop = ProcessingLoop(FileSource(_quiet_loud(tmp_path, ".X."), window_seconds=1.0),
                          RmsProcessor(), [_Recorder(journal, "a")], events=_ScriptedEvents(),
                          store=store)
    loop.run()
    assert journal == [("a", "close")]
    stats = loop.stats()
    assert stats["store_errors"] == stats["errors"] == 5  # 3 windows, a start and an end
    assert stats["windows_processed"] == 0 and stats["sound_records"] == 0
    assert "could not be stored" in caplog.text and "is closed" in caplog.text


def test_blocks_are_joined_into_the_windows_a_window_source_hands_over(tmp_path, rng):
    _files(tmp_path, rng, [5.0, 2.5, 0.5])
    runs = {}
    for block in (None, 0.3):
        received: list[Event] = []
        events = _ScriptedEvents()
        source = FileStreamSource([tmp_path], window_seconds=2.0, block_seconds=block)
        ProcessingLoop(source, RmsProcessor(), [CallbackSink(received.append)],
                       events=events).run()
        runs[block] = received
        assert sum(end - start for start, end, _ in events.pushes) == pytest.approx(8.0)
        assert all(end - start <= (block or 2.5) + 1e-9 for start, end, _ in events.pushes)
    assert [(e.source, e.start, e.end) for e in runs[0.3]] == \
        [(e.source, e.start, e.end) for e in runs[None]]
    for whole, joined in zip(runs[None], runs[0.3], strict=True):
        np.testing.assert_array_equal(whole.audio, joined.audio)


class _BlockSource:
    """A real-time source of 0.5 s blocks (four to a window) of a ramp, with scripted holes
    (blocks never handed over), as fast as the loop takes them."""

    name = "blocks"
    realtime = True
    block_seconds = 0.5

    def __init__(self, count: int, holes: set[int] = frozenset()) -> None:
        self.count, self.holes = count, holes

    def windows(self, stop: threading.Event) -> Iterator[AudioWindow]:
        n = RATE // 2
        for i in range(self.count):
            if stop.is_set():
                return
            if i in self.holes:
                continue
            audio = (np.arange(i * n, (i + 1) * n) / 1e7).astype(np.float32)
            yield AudioWindow(audio, RATE, i * 0.5, (i + 1) * 0.5, time.time(), self.name,
                              ends_window=i % 4 == 3)

    def request_window(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_gap_cuts_the_window_being_joined():
    """Blocks 0-2 then a hole: the cut window (1.5 s) is classified; after the hole the
    windows follow the source's marks again; a cut piece under 0.975 s is dropped."""
    received: list[Event] = []
    events = _ScriptedEvents()
    loop = ProcessingLoop(_BlockSource(14, holes={3, 12}), RmsProcessor(),
                          [CallbackSink(received.append)], events=events)
    loop.run()
    assert [(e.start, e.end) for e in received] == [(0.0, 1.5), (2.0, 4.0), (4.0, 6.0)]
    for event in received:  # no window holds a hole
        np.testing.assert_array_equal(
            event.audio, (np.arange(round(event.start * RATE), round(event.end * RATE))
                          / 1e7).astype(np.float32))
    stats = loop.stats()
    assert stats["windows_cut_short"] == 1  # 6.5-7.0 s, then the stream ended
    assert stats["windows_dropped"] == 0  # nothing fell behind
    assert stats["blocks_received"] == 12 and stats["windows_processed"] == 3


def test_dropped_blocks_never_leave_a_hole_in_a_window():
    """Blocks come much faster than windows are classified: the queue drops blocks, and
    every window classified is still contiguous audio."""
    received: list[Event] = []
    loop = ProcessingLoop(_BlockSource(400), RmsProcessor(delay=0.02),
                          [CallbackSink(received.append)], queue_size=1)
    loop.run()
    stats = loop.stats()
    assert stats["blocks_dropped"] > 0 and stats["blocks_received"] == 400
    assert received
    for event in received:
        np.testing.assert_array_equal(
            event.audio, (np.arange(round(event.start * RATE), round(event.end * RATE))
                          / 1e7).astype(np.float32))


@pytest.fixture(scope="module")
def yamnet_processor():
    from audio.pipeline import WavProcessor
    from audio.settings import Settings

    model = require_shared("models", "yamnet", "yamnet.tflite")
    processor = WavProcessor(Settings(backend="yamnet", yamnet_model=model)).load()
    yield processor
    processor.close()


def _clip(name: str) -> np.ndarray:
    from audio.io import mono_blocks, open_audio

    with open_audio(require_shared("audio", "urbansound_samples", f"{name}.wav")) as reader:
        return np.concatenate(list(mono_blocks(reader, RATE)))


def test_yamnet_events_through_the_loop_equal_the_files(tmp_path, yamnet_processor):
    """[4 s silence][dogbark][6 s silence][siren][4 s silence] played in 0.1 s blocks
    through the loop gives the events the pipeline finds in the whole file."""
    from audio.eventstream import EventStream
    from audio.settings import Settings
    from audio.sounds import configured_sounds

    silence = np.zeros(4 * RATE, np.float32)
    audio = np.concatenate([silence, _clip("dogbark"), silence, silence[:2 * RATE],
                            _clip("siren"), silence])
    path = write_wav(tmp_path / "assembled.wav", audio, RATE)
    sounds = configured_sounds(Settings(listen="dog,siren"), yamnet_processor.labels)
    expected = yamnet_processor.analyze_file(path, sounds=sounds).events
    records = []
    source = FileStreamSource([path], window_seconds=5.0, block_seconds=0.1)
    loop = ProcessingLoop(source, yamnet_processor, [CallbackSink(lambda e: None,
                                                                  records.append)],
                          events=EventStream(yamnet_processor.backend, sounds))
    loop.run()
    assert [(r.kind, r.sound) for r in records] == [("start", "dog"), ("end", "dog"),
                                                    ("start", "siren"), ("end", "siren")]
    ends = [r for r in records if r.kind == "end"]
    assert [(r.sound, r.start, r.end) for r in ends] == \
        [(e.sound, e.start, e.end) for e in expected]
    assert ends[0].start == pytest.approx(4.0, abs=0.48)
    assert ends[0].start_time is not None  # live-style records carry wall-clock times


def test_pausing_detection_ends_the_active_events_and_starts_none(tmp_path,
                                                                   yamnet_processor):
    """The detection switch (``detect/set OFF`` over MQTT) really pauses: turned off by
    the dog's start record, the next block ends the dog's event, and the siren, heard
    while it is off, starts nothing; windows are still classified. On again, events
    start again."""
    from audio.control import DetectionSwitch
    from audio.eventstream import EventStream
    from audio.settings import Settings
    from audio.sounds import configured_sounds

    silence = np.zeros(4 * RATE, np.float32)
    audio = np.concatenate([silence, _clip("dogbark"), silence, silence[:2 * RATE],
                            _clip("siren"), silence])
    path = write_wav(tmp_path / "assembled.wav", audio, RATE)
    sounds = configured_sounds(Settings(listen="dog,siren"), yamnet_processor.labels)
    switch = DetectionSwitch()
    records: list[SoundEvent] = []
    windows: list[Event] = []

    def on_record(record: SoundEvent) -> None:
        records.append(record)
        if record.kind == "start":
            switch.set(False, by="test")

    def run() -> dict:
        loop = ProcessingLoop(FileStreamSource([path], window_seconds=5.0,
                                               block_seconds=0.1),
                              yamnet_processor, [CallbackSink(windows.append, on_record)],
                              events=EventStream(yamnet_processor.backend, sounds),
                              detection=switch)
        loop.run()
        return loop.stats()

    stats = run()
    assert [(r.kind, r.sound) for r in records] == [("start", "dog"), ("end", "dog")]
    assert records[1].end - records[0].start < 1.5  # ended at once, not at 8.2 s
    assert stats["detecting"] is False and stats["sound_events_started"] == 1
    assert len(windows) >= 4  # the whole file was still classified
    records.clear()
    switch.set(True)
    run()  # on again: the dog starts (and pauses it again)
    assert [(r.kind, r.sound) for r in records] == [("start", "dog"), ("end", "dog")]

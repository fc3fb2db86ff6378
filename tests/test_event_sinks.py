"""Sound event records in every sink: log lines, callback, wav sinks (the event audio saver
with its context, cap and gaps), and the web store."""

from __future__ import annotations

import logging

import numpy as np

from audio.events import Event
from audio.io import read_audio
from audio.sinks import CallbackSink, EventAudioSink, LogSink, WavSaverSink
from web.store import EventStore

RATE = 16000


def _signal(seconds: float) -> np.ndarray:
    """A recognisable signal: sample i is (i mod 20000) / 40000, so any stretch is known."""
    return ((np.arange(round(seconds * RATE)) % 20000) / 40000.0).astype(np.float32)


SIGNAL = _signal(30.0)


def _window(start: float, end: float, source: str = "mic", i: int = 1) -> Event:
    audio = SIGNAL[round(start * RATE):round(end * RATE)]
    return Event(i, 1_700_000_000.0 + end, start, end, (), source, RATE, audio)


def _saved(path) -> np.ndarray:
    audio, rate = read_audio(path)
    assert rate == RATE
    return audio


def test_log_sink_logs_one_line_per_start_and_end(make_sound, caplog):
    log = logging.getLogger("test.events")
    sink = LogSink(log)
    with caplog.at_level(logging.INFO, logger="test.events"):
        sink.handle_sound(make_sound("start"))
        sink.handle_sound(make_sound("update"))
        sink.handle_sound(make_sound("end"))
    assert caplog.messages == [
        "Event start: dog at 12.40 s (peak 0.83, -18 dBFS, #1)",
        "Event end: dog 12.40-15.10 s (peak 0.83, mean 0.61, -18 dBFS, #1)"]


def test_callback_sink_hands_over_sound_records(make_sound):
    got = []
    CallbackSink(lambda e: None, got.append).handle_sound(make_sound("start"))
    CallbackSink(lambda e: None).handle_sound(make_sound("start"))  # no on_sound: ignored
    assert [r.kind for r in got] == ["start"]


def test_window_saver_ignores_sound_records(tmp_path, make_sound):
    sink = WavSaverSink(tmp_path)
    sink.handle_sound(make_sound("start"))
    sink.handle_sound(make_sound("end"))
    assert sink.saved == [] and list(tmp_path.iterdir()) == []


def test_event_audio_with_a_second_of_context_whatever_comes_first(tmp_path, make_sound):
    sink = EventAudioSink(tmp_path)
    sink.handle(_window(0.0, 2.0))
    sink.handle(_window(2.0, 4.0))
    # The start comes after its audio (history), the end before the audio after it.
    sink.handle_sound(make_sound("start", 1, start=2.5, end=2.9, start_time=1_700_000_002.5))
    sink.handle_sound(make_sound("end", 1, start=2.5, end=3.2, start_time=1_700_000_002.5))
    assert sink.saved == []  # 4.2 s not heard yet
    # A second event whose records all come before any of its audio.
    sink.handle_sound(make_sound("start", 2, sound="Glass breaking", start=5.0, end=5.2,
                                 start_time=None))
    sink.handle_sound(make_sound("end", 2, sound="Glass breaking", start=5.0, end=5.5,
                                 start_time=None))
    sink.handle(_window(4.0, 6.0))
    assert [p.name for p in sink.saved] == ["event_1_dog_1700000002.wav"]
    np.testing.assert_allclose(_saved(sink.saved[0]), SIGNAL[round(1.5 * RATE):round(4.2 * RATE)],
                               atol=1 / 32768)
    sink.handle(_window(6.0, 8.0))
    assert len(sink.saved) == 2 and sink.saved[1].name.startswith("event_2_glass-breaking_")
    np.testing.assert_allclose(_saved(sink.saved[1]), SIGNAL[4 * RATE:round(6.5 * RATE)],
                               atol=1 / 32768)
    sink.close()


def test_event_audio_is_capped_and_cut_at_gaps(tmp_path, make_sound, caplog):
    sink = EventAudioSink(tmp_path, max_seconds=3.0)
    sink.handle_sound(make_sound("start", 1, start=1.0, end=1.5))
    for start in range(0, 6):
        sink.handle(_window(float(start), start + 1.0))
    (capped,) = sink.saved  # saved at the cap, while the event goes on
    assert len(_saved(capped)) == 3 * RATE and "longer than 3 s" in caplog.text
    np.testing.assert_allclose(_saved(capped), SIGNAL[0:3 * RATE], atol=1 / 32768)
    sink.handle_sound(make_sound("end", 1, start=1.0, end=5.5))  # already saved: nothing
    assert len(sink.saved) == 1
    # An event cut by a gap (another source) is saved with the audio it had.
    sink.handle_sound(make_sound("start", 2, start=5.5, end=5.8))
    sink.handle_sound(make_sound("end", 2, start=5.5, end=5.9))
    sink.handle(_window(0.0, 1.0, source="other"))
    assert len(sink.saved) == 2
    np.testing.assert_allclose(_saved(sink.saved[1]), SIGNAL[round(4.5 * RATE):6 * RATE],
                               atol=1 / 32768)
    # An event still open at close is saved too.
    sink.handle_sound(make_sound("start", 3, start=0.2, end=0.5, source="other"))
    sink.close()
    assert len(sink.saved) == 3 and len(_saved(sink.saved[2])) == RATE


def test_web_store_keeps_each_event_with_its_latest_record(make_sound):
    store = EventStore(max_sounds=2)
    store.handle_sound(make_sound("start", 1))
    assert store.sounds() == [{**make_sound("start", 1).as_dict(), "active": True}]
    store.handle_sound(make_sound("end", 1, end=16.0))
    store.handle_sound(make_sound("start", 2, sound="siren", start=20.0, end=20.5))
    sounds = store.sounds()
    assert [(s["id"], s["kind"], s["active"]) for s in sounds] == [(2, "start", True),
                                                                    (1, "end", False)]
    assert sounds[1]["end"] == 16.0 and store.sounds_total == 2
    store.handle_sound(make_sound("start", 3))
    assert [s["id"] for s in store.sounds(limit=5)] == [3, 2]  # bounded

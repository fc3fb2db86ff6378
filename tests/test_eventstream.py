"""Framing, per-frame scoring and event streams (``audio.framestream``, ``audio.eventstream``).

What is checked: frames and levels do not depend on how a stream is cut into pushes (the
loop gets 0.1 s blocks, a file 60 s blocks); the tail is padded as each backend's
reference does; a frame's score over a centred context is delayed by exactly the frames
it waits for; an ``EventStream`` fed a recording in small windows finds the events
``analyze_file`` finds, and ends its events at a gap or a new source. The real YAMNet
model is used where what is heard matters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.backends.yamnet import YamnetBackend, num_frames
from audio.detect import DBFS_FLOOR
from audio.eventstream import EventStream
from audio.framestream import FrameScorer, FrameStream, concat_frames
from audio.pipeline import WavProcessor
from audio.settings import Settings, SettingsError
from audio.sounds import Thresholds, configured_sounds, resolve_sounds
from tests.conftest import require_shared
from yt8m.bundle import BundleError, class_thresholds

RATE = 16000


class _CountingBackend:
    """One frame per whole 0.5 s hop of 1 s frames; a frame's feature is its index, so
    scores over a context are easy to predict (a window scores the mean index)."""

    name = "counting"
    sample_rate = RATE
    frame_hop = 0.5
    frame_seconds = 1.0
    pads_tail = True

    def __init__(self) -> None:
        self.emitted = 0
        self.labels = ["index"]

    def frame_features(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            count = 1 + (block.shape[0] - RATE) // (RATE // 2)
            yield np.arange(self.emitted, self.emitted + count, dtype=np.float32)[:, None]
            self.emitted += count

    def score_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([w.mean(axis=0) for w in windows])


def _push_in_pieces(stream: FrameStream, audio: np.ndarray, sizes: Iterable[int]):
    parts, at = [], 0
    for size in sizes:
        parts.append(stream.push(audio[at:at + size]))
        at += size
    parts.append(stream.push(audio[at:]))
    parts.append(stream.finish())
    return concat_frames(parts)


@pytest.fixture(scope="module")
def yamnet_backend() -> Iterator[YamnetBackend]:
    backend = YamnetBackend(require_shared("models", "yamnet", "yamnet.tflite"))
    backend.load()
    yield backend
    backend.close()


@pytest.mark.shared
def test_frames_do_not_depend_on_how_the_stream_is_cut(yamnet_backend, rng):
    audio = (rng.standard_normal(int(5.3 * RATE)) * 0.1).astype(np.float32)
    whole_stream = FrameStream(yamnet_backend)
    whole = concat_frames([whole_stream.push(audio), whole_stream.finish()])
    pieces = _push_in_pieces(FrameStream(yamnet_backend), audio,
                             rng.integers(1, 4000, size=40))
    assert len(whole) == num_frames(audio.shape[0]) == len(pieces)
    np.testing.assert_allclose(pieces.features, whole.features, atol=1e-6)
    np.testing.assert_allclose(pieces.levels, whole.levels, atol=1e-9)
    np.testing.assert_allclose(pieces.starts, np.arange(len(whole)) * 0.48)
    # The same scores as the model on YAMNet's own framing of the whole signal.
    np.testing.assert_allclose(whole.features, yamnet_backend._require().frame_scores(audio),
                               atol=1e-6)
    # The padded tail frames end where the audio does, not 0.975 s after their start.
    assert whole.starts[-1] + whole.durations[-1] == pytest.approx(5.3)
    assert not whole_stream.padded


@pytest.mark.shared
def test_vggish_frames_chunked_equal_whole_and_short_input_is_padded(wav_processor, rng):
    backend = wav_processor.backend
    audio = (rng.standard_normal(int(3.5 * RATE)) * 0.1).astype(np.float32)
    pieces = _push_in_pieces(FrameStream(backend), audio, [1600] * 12 + [9000, 7])
    reference = np.concatenate(list(backend.frame_features([audio])))
    assert len(pieces) == 3  # 3.5 s: three whole 0.96 s examples, the tail dropped
    np.testing.assert_array_equal(pieces.features, reference)
    short = FrameStream(backend)
    frames = concat_frames([short.push(audio[:4800]), short.finish()])
    assert len(frames) == 1 and short.padded
    assert frames.durations[0] == pytest.approx(0.3)


def test_levels_are_rms_dbfs_of_the_real_samples():
    backend = _CountingBackend()
    t = np.arange(int(2.0 * RATE)) / RATE
    sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)  # full scale: −3.01 dBFS
    stream = FrameStream(backend)
    frames = concat_frames([stream.push(sine), stream.finish()])
    np.testing.assert_allclose(frames.levels, -3.0103, atol=0.01)
    quiet = FrameStream(_CountingBackend())
    short = concat_frames([quiet.push(0.01 * sine[:1600]), quiet.finish()])
    assert len(short) == 1 and quiet.padded
    assert short.levels[0] == pytest.approx(-43.01, abs=0.05)  # the padding is not counted
    silent = FrameStream(_CountingBackend())
    assert concat_frames([silent.push(np.zeros(RATE)), silent.finish()]).levels[0] == DBFS_FLOOR


def test_context_scoring_is_centred_and_delays_by_half_the_context():
    scorer = FrameScorer(_CountingBackend(), context=3)
    stream = FrameStream(scorer._backend)
    first = scorer.push(stream.push(np.zeros(RATE * 2)))  # frames 0, 1, 2 complete
    assert list(first.starts) == [0.0, 0.5]  # frame 2 waits for frame 3
    np.testing.assert_allclose(first.features[:, 0], [0.5, 1.0])  # mean of [0,1], [0,1,2]
    rest = scorer.push(stream.finish())
    rest = concat_frames([rest, scorer.finish()])  # 2 s: frames 0, 0.5, 1.0 s, no more
    np.testing.assert_allclose(rest.features[:, 0], [1.5])  # mean of [1, 2]
    with pytest.raises(ValueError, match="odd"):
        FrameScorer(_CountingBackend(), context=2)


def _assembled(tmp_path: Path) -> tuple[Path, np.ndarray]:
    import resampy

    root = require_shared("audio", "urbansound_samples")
    pieces = []
    for name in ("dogbark", "siren"):
        x, rate = sf.read(root / f"{name}.wav", dtype="float32", always_2d=True)
        pieces.append(resampy.resample(x.mean(axis=1), rate, RATE).astype(np.float32))
    silence = [np.zeros(s * RATE, np.float32) for s in (4, 6, 4)]
    audio = np.concatenate([silence[0], pieces[0], silence[1], pieces[1], silence[2]])
    path = tmp_path / "assembled.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    return path, audio


@pytest.mark.shared
def test_event_stream_in_small_windows_finds_what_the_file_path_finds(tmp_path):
    path, audio = _assembled(tmp_path)
    settings = Settings(backend="yamnet", listen="dog,siren",
                        yamnet_model=require_shared("models", "yamnet", "yamnet.tflite"))
    with WavProcessor(settings) as processor:
        sounds = configured_sounds(settings, processor.labels)
        from_file = processor.analyze_file(path, sounds=sounds).events
        stream = EventStream(processor.backend, sounds)
        records = []
        block = RATE // 10
        for at in range(0, audio.shape[0], block):
            window = audio[at:at + block]  # stamped when its last sample is available
            records += stream.push(window, at / RATE, source="mic",
                                   timestamp=1e9 + (at + window.shape[0]) / RATE)
        records += stream.close()
    assert [(e.sound, e.id) for e in from_file] == [("dog", 1), ("siren", 2)]
    ends = [r for r in records if r.kind == "end"]
    assert [r.kind for r in records] == ["start", "end", "start", "end"]
    for live, offline in zip(ends, from_file, strict=True):
        assert (live.sound, live.start, live.end) == (offline.sound, offline.start, offline.end)
        assert live.peak_score == pytest.approx(offline.peak_score, abs=1e-6)
        assert live.start_time == pytest.approx(1e9 + live.start, abs=1e-3)
    assert from_file[0].start_time is None  # a file has no wall clock


@pytest.mark.shared
def test_a_gap_or_a_new_source_ends_the_events(yamnet_backend, tmp_path):
    _, audio = _assembled(tmp_path)
    labels = yamnet_backend.labels
    sounds = resolve_sounds(labels, listen=["Dog"], defaults=Thresholds(on=0.5))
    stream = EventStream(yamnet_backend, sounds)
    bark = audio[4 * RATE:6 * RATE]  # two seconds into the barking
    records = stream.push(bark, 0.0, source="a")
    records += stream.push(bark, 10.0, source="a")  # 8 s gap: the first event ends
    records += stream.push(bark, 12.0, source="b")  # continues in time, another source
    records += stream.close()
    kinds = [(r.kind, r.id, r.source) for r in records]
    assert kinds == [("start", 1, "a"), ("end", 1, "a"), ("start", 2, "a"), ("end", 2, "a"),
                     ("start", 3, "b"), ("end", 3, "b")]
    assert records[1].end <= 2.0 + 1e-9 and records[2].start >= 10.0


def test_bundle_class_thresholds_and_their_precedence():
    labels = ["Dog", "Bark", "Siren"]
    assert class_thresholds({}, labels) is None
    assert class_thresholds({"class_thresholds": [0.2, 0.4, None]}, labels) == \
        {"Dog": 0.2, "Bark": 0.4}
    assert class_thresholds({"class_thresholds": {"Siren": 0.3}}, labels) == {"Siren": 0.3}
    for bad, message in (([0.1], "2 values|1 values"), ({"Cat": 0.1}, "not a class"),
                         ({"Dog": 1.5}, r"not in \[0, 1\)"), ("x", "list or an object")):
        with pytest.raises(BundleError, match=message):
            class_thresholds({"class_thresholds": bad}, labels)
    head = {"format": "numpy-head", "threshold": 0.8}  # a custom head's one tuned threshold
    assert class_thresholds(head, labels) == dict.fromkeys(labels, 0.8)
    assert class_thresholds({**head, "format": "keras"}, labels) is None
    calibrated = {"Dog": 0.2, "Bark": 0.4, "Siren": 0.3}
    settings = Settings(listen="Bark,Siren")
    by_name = {s.name: s.thresholds for s in configured_sounds(settings, labels, calibrated)}
    assert by_name["Bark"].on == 0.4 and by_name["siren"].on == 0.3  # the shipped group
    assert by_name["Bark"].off == pytest.approx(0.3)
    explicit = Settings(listen="Bark,Siren", event_threshold=0.7)
    assert {s.thresholds.on for s in configured_sounds(explicit, labels, calibrated)} == {0.7}
    # A group is heard when any member is: the lowest member threshold.
    from audio.sounds import SoundGroup

    groups = {"dog": SoundGroup("dog", ("Dog", "Bark"))}
    (dog,) = resolve_sounds(labels, groups, listen="dog", class_thresholds=calibrated)
    assert dog.thresholds.on == 0.2


def test_event_settings_are_checked_and_off_without_flags():
    assert configured_sounds(Settings(), ["Dog"]) is None
    assert Settings(listen="dog").wants_events and Settings(events=True).wants_events
    for bad in ({"event_threshold": 0.0}, {"event_threshold": 1.5}, {"min_dbfs": 3.0},
                {"min_duration": -1.0}, {"max_not_heard": float("nan")}):
        with pytest.raises(SettingsError):
            Settings(**bad)

"""WavProcessor: the 8-bit path, ranking defaults, streaming = whole, windows, timeline.

VGGish weights are random here (Google's checkpoint can't be fetched in tests), so the
tests check behaviour and arithmetic, never particular labels.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pytest

from audio.events import Prediction
from audio.io import AudioTooShortError, write_wav
from audio.pipeline import WavProcessor, count_events, format_predictions, split_frames
from audio.settings import Settings

RATE = 16000


def _noise(rng: np.random.Generator, seconds: float, rate: int = RATE) -> np.ndarray:
    return np.clip(rng.standard_normal(int(seconds * rate)) * 0.2, -1, 1)


def test_defaults_are_the_originals():
    settings = Settings()
    assert (settings.top_k, settings.threshold, settings.aggregate) == (20, 0.1, "mean")


def test_scores_follow_the_8bit_path_of_the_training_data(wav_processor, app_settings, rng):
    """examples → VGGish → PCA/clip/quantise → bundle(dequantise inside), done by hand."""
    from vggish.input import waveform_to_examples
    from vggish.model import embed, load_vggish
    from vggish.postprocess import Postprocessor
    from yt8m.bundle import load_keras_bundle as load_bundle

    audio = _noise(rng, 4.0)
    result = wav_processor.analyze(audio, RATE)
    examples = waveform_to_examples(audio, RATE)
    raw = embed(load_vggish(app_settings.vggish_checkpoint), examples)
    quantised = Postprocessor(app_settings.pca_params).postprocess(raw)
    assert quantised.dtype == np.uint8
    expected = load_bundle().predict(quantised[None], np.array([quantised.shape[0]]))[0]
    assert result.frames == 4
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)


def test_get_predictions_keeps_the_original_interface(wav_processor, rng):
    pcm = (_noise(rng, 3.0) * 32767).astype(np.int16)
    predictions = wav_processor.get_predictions(RATE, pcm)
    assert isinstance(predictions, list)
    assert all(isinstance(label, str) and isinstance(score, float)
               for label, score in predictions)
    scores = [score for _, score in predictions]
    assert scores == sorted(scores, reverse=True)
    assert len(predictions) <= 20 and all(s > 0.1 for s in scores)
    as_float = wav_processor.predict(pcm / 32768.0, RATE)
    assert [(p.label, p.score) for p in as_float] == predictions


def test_rank_top_k_and_threshold(wav_processor, rng):
    scores = wav_processor.analyze(_noise(rng, 2.0), RATE).scores
    labels = wav_processor.labels
    assert len(scores) == len(labels)
    ranked = wav_processor.rank(scores, top_k=5, threshold=0.0)
    assert [p.label for p in ranked] == [labels[i] for i in np.argsort(-scores)[:5]]
    cut = float(np.sort(scores)[-3])  # strictly above: exactly two classes pass
    assert len(wav_processor.rank(scores, top_k=20, threshold=cut)) == 2
    assert wav_processor.rank(scores, threshold=0.999999) == ()


def test_resampled_and_multichannel_input(wav_processor, rng):
    stereo = np.stack([_noise(rng, 3.0, 44100), _noise(rng, 3.0, 44100)], axis=1)
    result = wav_processor.analyze(stereo, 44100)
    assert result.frames == 3
    assert result.duration == pytest.approx(3.0)


def test_streaming_frames_equal_whole_signal_frames(wav_processor, rng):
    audio = _noise(rng, 12.5).astype(np.float32)
    backend = wav_processor.backend
    whole = np.concatenate(list(backend.frame_features([audio])))
    cuts = [0, 5000, 5001, 40000, 123456, audio.shape[0]]
    blocks = [audio[a:b] for a, b in itertools.pairwise(cuts)]
    streamed = np.concatenate(list(backend.frame_features(blocks)))
    assert whole.shape == (13, 128) and whole.dtype == np.uint8
    np.testing.assert_array_equal(streamed, whole)


def test_analyze_file_equals_analyze_in_memory(wav_processor, tmp_path, rng):
    audio = _noise(rng, 5.0)
    path = write_wav(tmp_path / "x.wav", audio, RATE)
    from_file = wav_processor.analyze_file(path)
    in_memory = wav_processor.analyze(np.round(audio * 32768).clip(-32768, 32767) / 32768, RATE)
    np.testing.assert_allclose(from_file.scores, in_memory.scores, atol=1e-6)


def test_timeline_windows_and_times(wav_processor, rng):
    audio = _noise(rng, 5.2)
    result = wav_processor.analyze(audio, RATE, timeline_window=0.96)
    np.testing.assert_allclose([(w.start, w.end) for w in result.timeline],
                               [(0.96 * i, 0.96 * (i + 1)) for i in range(5)])
    longer = wav_processor.analyze(audio, RATE, timeline_window=2.0)  # 2 frames per window
    np.testing.assert_allclose([(w.start, w.end) for w in longer.timeline],
                               [(0.0, 1.92), (1.92, 3.84), (3.84, 4.80)])
    for window in result.timeline:
        assert len(window.scores) == len(wav_processor.labels)


def test_short_audio_is_padded_to_one_frame_and_classified(wav_processor, rng):
    """A 0.3 s clip is zero-padded to one 0.96 s example, as VGGish's reference pads: the
    scores are exactly those of the padded example, and the result says it was padded."""
    clip = _noise(rng, 0.3)
    result = wav_processor.analyze(clip, RATE, timeline_window=0.96)
    assert result.padded and result.frames == 1 and result.predictions
    padded = np.zeros(15600, dtype=np.float32)
    padded[:clip.shape[0]] = clip
    reference = wav_processor.analyze(padded, RATE)
    assert not reference.padded
    np.testing.assert_allclose(result.scores, reference.scores, rtol=1e-5, atol=1e-6)
    assert result.timeline[0].end == pytest.approx(0.3)  # not past the end of the audio
    ten_ms = wav_processor.analyze(_noise(rng, 0.01), RATE)
    assert ten_ms.padded and ten_ms.frames == 1


def test_no_samples_at_all_is_a_typed_error(wav_processor):
    with pytest.raises(AudioTooShortError, match="no audio samples"):
        wav_processor.analyze(np.zeros(0), RATE)


def test_missing_model_files_name_the_download_command(tmp_path):
    from audio.downloads import MissingModelFilesError

    settings = Settings(vggish_checkpoint=tmp_path / "vggish_model.ckpt",
                        pca_params=tmp_path / "vggish_pca_params.npz")
    with WavProcessor(settings) as processor, pytest.raises(MissingModelFilesError) as info:
        processor.load()
    message = str(info.value)
    assert "vggish_model.ckpt" in message and "vggish_pca_params.npz" in message
    assert "python -m audio.models download" in message


def test_processor_is_reusable_and_closable(app_settings, rng):
    with WavProcessor(app_settings) as processor:
        first = processor.analyze(_noise(rng, 2.0), RATE).scores
        second = processor.analyze(_noise(rng, 2.0), RATE).scores
        assert first.shape == second.shape
    with pytest.raises(RuntimeError, match="closed"):
        processor.load()


# -- window splitting and aggregation, with a backend whose scores are known -------------
class _ScriptedBackend:
    """Frames are the samples themselves (one per 'hop'); a window's score for class c is
    the mean of its frames' values for c. Lets the aggregation be checked exactly."""

    name = "scripted"
    sample_rate = RATE
    frame_hop = 0.96
    frame_seconds = 0.96

    def __init__(self, frames: np.ndarray, max_frames: int) -> None:
        self._frames = frames
        self._emitted = 0
        self.max_frames = max_frames
        self.labels = [f"class {i}" for i in range(frames.shape[1])]
        self.windows_seen: list[int] = []

    def load(self) -> None:
        pass

    def frame_features(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The next scripted rows, one per whole frame of each block."""
        hop = round(self.frame_hop * RATE)
        for block in blocks:
            count = block.shape[0] // hop
            yield self._frames[self._emitted:self._emitted + count]
            self._emitted += count

    def score_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        self.windows_seen.extend(w.shape[0] for w in windows)
        return np.stack([w.mean(axis=0) for w in windows])

    def close(self) -> None:
        pass


def test_long_input_split_into_near_equal_windows_and_frame_weighted_mean(rng):
    frames = rng.random((11, 3))
    backend = _ScriptedBackend(frames, max_frames=4)
    processor = WavProcessor(Settings(), backend=backend)
    result = processor.analyze(np.zeros(RATE * 11), RATE)
    assert backend.windows_seen == [4, 3, 4]  # ceil(11/4) = 3 windows, near equal
    np.testing.assert_allclose(result.scores, frames.mean(axis=0), rtol=1e-6)
    assert result.windows_classified == 3
    maxed = WavProcessor(Settings(aggregate="max"), backend=_ScriptedBackend(frames, 4))
    expected = np.max([frames[a:b].mean(axis=0) for a, b in split_frames(11, 4)], axis=0)
    np.testing.assert_allclose(maxed.analyze(np.zeros(RATE * 11), RATE).scores, expected,
                               rtol=1e-6)


def test_split_frames():
    assert split_frames(0, 300) == []
    assert split_frames(300, 300) == [(0, 300)]
    assert split_frames(301, 300) == [(0, 150), (150, 301)] or \
        split_frames(301, 300) == [(0, 151), (151, 301)]
    spans = split_frames(3750, 300)
    assert len(spans) == 13 and all(b - a <= 300 for a, b in spans)
    assert spans[0][0] == 0 and spans[-1][1] == 3750


def test_count_events_merges_consecutive_windows():
    assert count_events([]) == 0
    assert count_events([False, True, True, False, True, False, False, True]) == 3
    assert count_events([True, True, True]) == 1


def test_format_predictions_is_the_originals():
    line = format_predictions([Prediction("Speech", 0.754), Prediction("Music", 0.1249),
                               ("Inside, large room or hall", 0.03)])
    assert line == "Speech: 0.75, Music: 0.12, Inside, large room or hall: 0.03"


@pytest.mark.slow
def test_a_file_longer_than_300_frames_is_classified_whole(wav_processor, tmp_path, rng):
    """301 frames (289 s): two windows of ~150 frames, frame-weighted mean of their scores."""
    seconds = 301 * 0.96 + 0.02
    audio = np.clip(rng.standard_normal(int(seconds * RATE)) * 0.1, -1, 1)
    path = write_wav(tmp_path / "long.wav", audio, RATE)
    result = wav_processor.analyze_file(path)
    assert result.frames == 301 and result.windows_classified == 2
    assert wav_processor.backend.max_frames == 300
    frames = np.concatenate(list(wav_processor.backend.frame_features(
        [np.round(audio * 32768).clip(-32768, 32767).astype(np.float32) / 32768])))
    (a0, a1), (b0, b1) = split_frames(301, 300)
    windows = wav_processor.backend.score_windows([frames[a0:a1], frames[b0:b1]])
    expected = ((a1 - a0) * windows[0] + (b1 - b0) * windows[1]) / 301
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)

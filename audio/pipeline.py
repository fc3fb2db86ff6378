"""Waveform → ranked labels: the one pipeline of the application (``WavProcessor``).

``WavProcessor`` keeps the original's name and its ``get_predictions(sample_rate,
data)`` method, and adds what the original lacked: any sample format and rate, files of
any length in bounded memory, per-window timelines, and a clear error when model files
are missing. Models are loaded once, on first use (TensorFlow is imported then, not when
this module is imported), and freed by ``close()``; the object is a context manager.

Long inputs. The classifier was trained on clips of at most ``max_frames`` frames (300
VGGish frames = 288 s). A longer input is cut into the fewest windows of at most
``max_frames`` frames, of near-equal length (``np.array_split``: 301 frames → 151 + 150,
never 300 + 1, since a one-frame window would be classified on almost no evidence). Each
window is classified as the classifier was trained, and the file's score of a class is

* ``mean`` (default): the frame-weighted mean of the window scores, Σ nᵢ·sᵢ / Σ nᵢ. For
  an input within ``max_frames`` it is exactly the original's single-window score, and
  for longer ones it estimates the same quantity: the frame-level models pool frames by
  averaging, so the mean over windows is the model's answer to "what does this audio
  sound like overall", not inflated by a single window's false positive;
* ``max``: the largest window score, to ask "does this class occur anywhere" (sparse
  events in long recordings); selectable with ``Settings.aggregate``.

Memory. Files are read block by block (``audio.io``), resampled block by block, turned
into frames by the backend block by block (``audio.framestream``); only the per-frame
features (128 bytes per 0.96 s for VGGish) are kept, so a one-hour file needs about as
much memory as a one-minute one.

Short inputs. Anything with at least one sample is classified: audio shorter than one
frame (a knock, a shutter) is zero-padded to one frame as the models' references do, and
``AnalysisResult.padded`` says so. Only an input with no samples at all is an error.

Events. With ``sounds`` (``audio.sounds.resolve_sounds``), the same frames are also scored
one by one over a short context and run through the event detector
(``audio.eventstream.FrameEvents``): ``AnalysisResult.events`` holds the file's sound
events, each final, without a second pass over the audio.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio.backends import Backend, create_backend
from audio.detect import Sound, SoundEvent
from audio.errors import UsageError
from audio.events import Prediction
from audio.eventstream import FrameEvents
from audio.framestream import Frames, FrameStream, concat_frames
from audio.io import AudioTooShortError, mono_blocks, open_audio
from audio.native import silenced_native_stderr
from audio.settings import Settings

logger = logging.getLogger(__name__)

BLOCK_SECONDS = 60.0
"""Audio read, resampled and embedded at a time when streaming a file."""
INT16_FULL_SCALE = 32768.0


def format_predictions(predictions: Iterable[Prediction | tuple[str, float]]) -> str:
    """``Speech: 0.75, Music: 0.12``: the original's output format (two decimals)."""
    parts = []
    for p in predictions:
        label, score = (p.label, p.score) if isinstance(p, Prediction) else p
        parts.append(f"{label}: {score:.2f}")
    return ", ".join(parts)


@dataclass(frozen=True)
class WindowResult:
    """Predictions of one window of a timeline (seconds from the start of the input)."""

    start: float
    end: float
    predictions: tuple[Prediction, ...]
    scores: np.ndarray

    def as_dict(self) -> dict[str, object]:
        return {"start": round(self.start, 3), "end": round(self.end, 3),
                "predictions": [p.as_dict() for p in self.predictions]}


@dataclass(frozen=True)
class AnalysisResult:
    """The whole input's ranked predictions, and its timeline when asked for."""

    duration: float
    frames: int
    windows_classified: int
    predictions: tuple[Prediction, ...]
    scores: np.ndarray
    timeline: tuple[WindowResult, ...] | None = None
    padded: bool = False
    """The input was shorter than one frame and was zero-padded to one."""
    events: tuple[SoundEvent, ...] | None = None
    """Sound events (their final ``end`` records), when sounds were asked for."""


def count_events(flags: Sequence[bool]) -> int:
    """Runs of consecutive True values: consecutive positive windows form one event."""
    count, previous = 0, False
    for flag in flags:
        if flag and not previous:
            count += 1
        previous = bool(flag)
    return count


def split_frames(num_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """[start, stop) of the fewest near-equal windows of at most ``max_frames`` frames."""
    if num_frames <= 0:
        return []
    pieces = math.ceil(num_frames / max_frames)
    bounds = np.linspace(0, num_frames, pieces + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


class UnknownLabelError(UsageError, ValueError):
    """A class name (``--count``) that the classifier does not have."""


class NoCalibrationError(UsageError, ValueError):
    """``--threshold calibrated`` with a classifier that has no per-class thresholds."""


class WavProcessor:
    """Turns audio into ranked ``(label, score)`` predictions. Reusable; close it after use.

    Args:
      settings: model paths, ``top_k``, ``threshold``, ``aggregate`` (defaults: the
        original's top 20 classes scoring > 0.1, frame-weighted mean).
      backend: an explicit backend (tests, custom heads); default from ``settings``.
    """

    def __init__(self, settings: Settings | None = None, backend: Backend | None = None
                 ) -> None:
        self.settings = settings or Settings()
        self._backend = backend or create_backend(self.settings)
        self._loaded = False
        self._closed = False
        self._thresholds: np.ndarray | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def load(self) -> WavProcessor:
        """Load the models now (otherwise done on first use). Idempotent.

        Loading imports TensorFlow and creates LiteRT interpreters, which print start-up
        lines from C++ that no setting fully silences: they go through
        ``audio.native.silenced_native_stderr`` (Python's own logging still shows).
        """
        if self._closed:
            raise RuntimeError("WavProcessor is closed")
        if not self._loaded:
            with silenced_native_stderr():
                self._backend.load()
            self._thresholds = self._class_thresholds()
            self._loaded = True
        return self

    def _class_thresholds(self) -> np.ndarray | None:
        """Per-class ranking thresholds for ``--threshold calibrated`` (else None): the
        bundle's, and ``settings.threshold`` for any class it has none for."""
        if not self.settings.calibrated_threshold:
            return None
        known = getattr(self._backend, "class_thresholds", None)
        if not known:
            raise NoCalibrationError(
                f"--threshold calibrated: the classifier ({self.settings.model or 'default'}) "
                f"has no per-class thresholds; run python -m yt8m.calibrate on its bundle "
                f"or give a number")
        return np.array([known.get(name, self.settings.threshold)
                         for name in self._backend.labels], dtype=np.float64)

    @property
    def backend(self) -> Backend:
        self.load()
        return self._backend

    @property
    def labels(self) -> Sequence[str]:
        return self.backend.labels

    def close(self) -> None:
        if not self._closed:
            self._backend.close()
            self._closed = True

    def __enter__(self) -> WavProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ranking ------------------------------------------------------------------------
    def rank(self, scores: np.ndarray, top_k: int | None = None,
             threshold: float | np.ndarray | None = None) -> tuple[Prediction, ...]:
        """The ``top_k`` best-scoring classes among those strictly above their threshold.

        ``threshold`` is one score for every class or a vector of one per class (default:
        the settings', or the bundle's per-class thresholds with ``--threshold
        calibrated``). Classes are filtered first, then the best ``top_k`` kept, so a
        class above its own low threshold is not crowded out by higher scores that fail
        theirs (for one global threshold this is the same as the reverse order).
        """
        top_k = self.settings.top_k if top_k is None else top_k
        labels = self.labels  # loads the backend, and the calibrated thresholds with it
        if threshold is None:
            threshold = self.settings.threshold if self._thresholds is None else self._thresholds
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        passed = scores > np.broadcast_to(np.asarray(threshold, dtype=np.float64), scores.shape)
        order = np.argsort(-scores, kind="stable")
        order = order[passed[order]][:top_k]
        return tuple(Prediction(labels[i], float(scores[i])) for i in order)

    def label_index(self, label: str) -> int:
        """Index of a class by display name (case-insensitive); ``UnknownLabelError``."""
        wanted = label.strip().casefold()
        for i, name in enumerate(self.labels):
            if name.casefold() == wanted:
                return i
        raise UnknownLabelError(f"unknown class {label!r} (not one of the classifier's "
                                f"{len(self.labels)} labels)")

    # -- frames → scores ------------------------------------------------------------------
    def _aggregate(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        backend = self.backend
        spans = split_frames(frames.shape[0], backend.max_frames)
        window_scores = backend.score_windows([frames[a:b] for a, b in spans])
        weights = np.array([b - a for a, b in spans], dtype=np.float64)
        if self.settings.aggregate == "max":
            scores = window_scores.max(axis=0)
        else:
            scores = (weights[:, None] * window_scores).sum(axis=0) / weights.sum()
        return scores.astype(np.float32), len(spans)

    def _timeline(self, frames: np.ndarray, window_seconds: float, duration: float
                  ) -> tuple[WindowResult, ...]:
        """Consecutive windows of whole frames; the last one ends no later than the audio."""
        backend = self.backend
        per_window = int(min(max(1, round(window_seconds / backend.frame_hop)),
                             backend.max_frames))
        starts = range(0, frames.shape[0], per_window)
        windows = [frames[s:s + per_window] for s in starts]
        scores = backend.score_windows(windows)
        results = []
        for s, window, row in zip(starts, windows, scores, strict=True):
            start = s * backend.frame_hop
            end = min((s + window.shape[0] - 1) * backend.frame_hop + backend.frame_seconds,
                      max(duration, start))
            results.append(WindowResult(start, end, self.rank(row), row))
        return tuple(results)

    def analyze_frames(self, frames: np.ndarray, duration: float,
                       timeline_window: float | None = None) -> AnalysisResult:
        """Scores of per-frame features already computed by the backend."""
        if frames.shape[0] == 0:
            raise AudioTooShortError(f"{duration:.3f} s of audio holds no sample to classify")
        scores, n_windows = self._aggregate(frames)
        timeline = (self._timeline(frames, timeline_window, duration)
                    if timeline_window is not None else None)
        return AnalysisResult(duration=duration, frames=int(frames.shape[0]),
                              windows_classified=n_windows, predictions=self.rank(scores),
                              scores=scores, timeline=timeline)

    # -- waveforms ------------------------------------------------------------------------
    def _stream(self, blocks: Iterable[np.ndarray], duration: float,
                timeline_window: float | None, sounds: Sequence[Sound] | None,
                source: str) -> AnalysisResult:
        """Frames of 16 kHz blocks → the ranking, the timeline and, with ``sounds``, events."""
        stream = FrameStream(self.backend)
        parts: list[Frames] = []
        for block in itertools.chain(blocks, [None]):
            parts.append(stream.push(block) if block is not None else stream.finish())
        if stream.total_samples == 0:
            raise AudioTooShortError(f"{source or 'the input'} holds no audio samples")
        return self.analyze_stream(concat_frames(parts), duration, padded=stream.padded,
                                   timeline_window=timeline_window, sounds=sounds,
                                   source=source)

    def analyze_stream(self, frames: Frames, duration: float, *, padded: bool = False,
                       timeline_window: float | None = None,
                       sounds: Sequence[Sound] | None = None,
                       source: str = "") -> AnalysisResult:
        """The result of a whole stream's frames (``audio.framestream``), in order.

        The one place where frames become the file's result, whoever made them: this
        object's ``_stream`` from a file read in blocks, or ``audio.batch`` from the
        frames of a long file's shards, computed on several workers and put back in order
        (the frames are the same whatever the blocks, so the results are too).
        """
        records: list[SoundEvent] = []
        if sounds is not None:
            events = FrameEvents(self.backend, sounds, source)
            records = events.push(frames) + events.finish()
        result = self.analyze_frames(frames.features, duration, timeline_window)
        ended = tuple(r for r in records if r.kind == "end") if sounds is not None else None
        return dataclasses.replace(result, padded=padded, events=ended)

    def analyze(self, waveform: np.ndarray, sample_rate: int,
                timeline_window: float | None = None,
                sounds: Sequence[Sound] | None = None) -> AnalysisResult:
        """A waveform in memory: float in [−1, 1] (or int16), 1-D or (frames, channels)."""
        data = np.asarray(waveform)
        if data.dtype == np.int16:
            data = data / INT16_FULL_SCALE
        if not np.issubdtype(data.dtype, np.number) or data.ndim not in (1, 2):
            raise ValueError(f"expected a 1-D or (frames, channels) numeric array, got "
                             f"{data.dtype} {data.shape}")
        if not np.isfinite(data).all():
            raise ValueError("audio contains NaN or infinite samples")
        mono = data.mean(axis=1) if data.ndim == 2 else data
        duration = mono.shape[0] / float(sample_rate)
        target = self.backend.sample_rate
        if int(sample_rate) != target:
            from audio.io import StreamResampler

            mono = StreamResampler(int(sample_rate), target).process(mono, final=True)
        return self._stream([mono.astype(np.float32)], duration, timeline_window, sounds, "")

    def predict(self, waveform: np.ndarray, sample_rate: int) -> tuple[Prediction, ...]:
        """Ranked predictions of a waveform (what the loop calls for every window)."""
        return self.analyze(waveform, sample_rate).predictions

    def get_predictions(self, sample_rate: int, data: np.ndarray) -> list[tuple[str, float]]:
        """The original's method: int16 samples (or floats in [−1, 1]) → [(label, score)]."""
        return [(p.label, p.score) for p in self.predict(data, sample_rate)]

    def analyze_file(self, path: str | os.PathLike[str],
                     timeline_window: float | None = None,
                     sounds: Sequence[Sound] | None = None,
                     progress: Callable[[float, float], None] | None = None
                     ) -> AnalysisResult:
        """A file of any supported format and length, streamed in blocks (bounded memory).

        ``progress(seconds_done, duration)`` is called before the first block and after
        each (``parse_file.py``'s progress bar on a terminal).
        Raises ``audio.io.AudioFileError`` subclasses for unusable files.
        """
        with open_audio(Path(path)) as reader:
            blocks: Iterable[np.ndarray] = mono_blocks(reader, self.backend.sample_rate,
                                                       BLOCK_SECONDS)
            if progress is not None:
                blocks = _reporting(blocks, self.backend.sample_rate, reader.duration,
                                    progress)
            return self._stream(blocks, reader.duration, timeline_window, sounds, str(path))


def _reporting(blocks: Iterable[np.ndarray], rate: int, duration: float,
               progress: Callable[[float, float], None]) -> Iterator[np.ndarray]:
    """``blocks``, calling ``progress`` with the seconds consumed so far."""
    done = 0
    progress(0.0, duration)
    for block in blocks:
        yield block
        done += block.shape[0]
        progress(min(done / rate, duration), duration)

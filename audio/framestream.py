"""A 16 kHz stream cut into a backend's frames, one push at a time, with each frame's level.

The pipeline (files of any length, read block by block) and the processing loop (a live
microphone, a few hundred milliseconds at a time) both need the same thing: the frames a
backend makes of a stream, whatever size the pieces of the stream arrive in, plus each
frame's loudness for the event detector's gate. :class:`FrameStream` keeps the samples a
frame still needs between pushes and hands the backend exactly the samples of whole
frames, so the frames of a stream pushed in pieces equal those of the whole signal.

The end of a stream is the backends' reference behaviour (``finish``):

* a backend with ``pads_tail`` (YAMNet) zero-pads the tail so that no audio at the end
  is ignored: one more frame per started hop;
* the others (VGGish) drop a partial last frame, as ``vggish_input`` does, except that
  a stream shorter than one frame is zero-padded to one frame: a knock or a single bell
  strike is classified rather than refused. ``padded`` then says so.

A frame's level is the RMS, in dBFS, of the real samples it covers (the zero padding is
not counted, so a short loud clip is reported as loud).

:class:`FrameScorer` turns frame features into per-frame scores: each frame is scored by
the backend's classifier over a short context of neighbouring frames (``event_context``:
1 for YAMNet, whose frames carry their own scores; 3 for VGGish, whose classifiers were
trained on clips of several frames), centred on the frame. A centred context delays a
frame's score until its next ``context // 2`` frames exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audio.detect import DBFS_FLOOR

DEFAULT_EVENT_CONTEXT = 1


def frame_geometry(backend: Any) -> tuple[int, int, bool]:
    """(samples per frame, samples per hop, pads_tail) of a backend.

    Backends may state ``frame_samples``/``hop_samples`` exactly (VGGish's example needs
    15,600 samples but is said to last 0.96 s); else they follow from the seconds.
    """
    rate = backend.sample_rate
    size = int(getattr(backend, "frame_samples", 0) or round(backend.frame_seconds * rate))
    hop = int(getattr(backend, "hop_samples", 0) or round(backend.frame_hop * rate))
    return size, hop, bool(getattr(backend, "pads_tail", False))


@dataclass(frozen=True)
class Frames:
    """Consecutive frames of a stream: features ``(n, D)``, and per frame its start and
    duration (seconds from the stream's origin) and its level (dBFS)."""

    features: np.ndarray
    starts: np.ndarray
    durations: np.ndarray
    levels: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.shape[0])


def _levels(buffer: np.ndarray, count: int, size: int, hop: int, real: int) -> np.ndarray:
    """RMS level (dBFS) of ``count`` frames of ``buffer``, counting only its first ``real``
    samples (the rest is padding)."""
    squares = np.square(buffer[:real], dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(squares)])
    starts = np.arange(count) * hop
    ends = np.minimum(starts + size, real)
    n = np.maximum(ends - starts, 1)
    power = (cumulative[ends] - cumulative[np.minimum(starts, real)]) / n
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(np.maximum(power, 0.0))
    return np.maximum(np.nan_to_num(db, nan=DBFS_FLOOR, neginf=DBFS_FLOOR), DBFS_FLOOR)


class FrameStream:
    """Push 16 kHz mono samples, get the frames they complete (see the module docstring).

    Args:
      backend: a loaded ``audio.backends.Backend``.
      origin: the time (seconds) of the stream's first sample, added to frame starts.
      start_frame: the stream is the rest of a longer one from its frame ``start_frame``
        on (a shard of a long file, ``audio.batch``): frame times, the stream's duration
        and the tail rule of ``finish`` count from the longer stream's first sample, so
        the shard's frames equal that stream's, times included, to the last bit.
    """

    def __init__(self, backend: Any, origin: float = 0.0, start_frame: int = 0) -> None:
        self._backend = backend
        self._size, self._hop, self._pads_tail = frame_geometry(backend)
        self._rate = float(backend.sample_rate)
        self._frame_seconds = float(backend.frame_seconds)
        self.origin = float(origin)
        self._carry = np.zeros(0, dtype=np.float32)
        self.total_samples = start_frame * self._hop
        self.frames_emitted = start_frame
        self.padded = False
        self._finished = False

    @property
    def duration(self) -> float:
        """Seconds of audio pushed so far."""
        return self.total_samples / self._rate

    def push(self, samples: np.ndarray) -> Frames:
        """Append samples; return the frames now complete (maybe none)."""
        if self._finished:
            raise RuntimeError("FrameStream.push after finish")
        block = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.total_samples += block.shape[0]
        buffer = np.concatenate([self._carry, block]) if self._carry.size else block
        count = 0 if buffer.shape[0] < self._size else \
            1 + (buffer.shape[0] - self._size) // self._hop
        if count == 0:
            self._carry = buffer.copy() if buffer is block else buffer
            return self._empty()
        used = (count - 1) * self._hop + self._size
        frames = self._frames(buffer[:used], count, used)
        self._carry = buffer[count * self._hop:].copy()
        return frames

    def finish(self) -> Frames:
        """The frames of the tail, padded as the backend's reference does; ends the stream."""
        if self._finished:
            return self._empty()
        self._finished = True
        real = self._carry.shape[0]
        if self._pads_tail:
            expected = 0 if self.total_samples == 0 else \
                1 + math.ceil(max(0, self.total_samples - self._size) / self._hop)
            count = expected - self.frames_emitted
        else:
            count = 1 if self.frames_emitted == 0 and self.total_samples > 0 else 0
        if count <= 0 or real == 0:
            return self._empty()
        if self.frames_emitted == 0:
            self.padded = True
        used = (count - 1) * self._hop + self._size
        buffer = np.zeros(used, dtype=np.float32)
        buffer[:real] = self._carry
        frames = self._frames(buffer, count, real)
        end = self.origin + self.duration  # padded frames end where the audio does
        durations = np.maximum(np.minimum(frames.starts + frames.durations, end) - frames.starts,
                               0.0)
        return Frames(frames.features, frames.starts, durations, frames.levels)

    def _frames(self, buffer: np.ndarray, count: int, real: int) -> Frames:
        parts = [np.asarray(p) for p in self._backend.frame_features([buffer])]
        parts = [p for p in parts if p.shape[0]]
        features = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        if features.shape[0] != count:
            raise RuntimeError(f"backend {self._backend.name} made {features.shape[0]} frames "
                               f"of {buffer.shape[0]} samples, {count} expected")
        first = self.frames_emitted
        self.frames_emitted += count
        starts = self.origin + (first + np.arange(count)) * (self._hop / self._rate)
        return Frames(features, starts, np.full(count, self._frame_seconds),
                      _levels(buffer, count, self._size, self._hop, real))

    def _empty(self) -> Frames:
        return Frames(np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0), np.zeros(0))


def concat_frames(parts: Sequence[Frames]) -> Frames:
    """One ``Frames`` of consecutive parts (empty parts are skipped)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Frames(np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0), np.zeros(0))
    return Frames(np.concatenate([p.features for p in parts]),
                  np.concatenate([p.starts for p in parts]),
                  np.concatenate([p.durations for p in parts]),
                  np.concatenate([p.levels for p in parts]))


class FrameScorer:
    """Per-frame scores: each frame scored over a centred context of ``context`` frames.

    ``push(frames)`` returns the frames whose context is complete, with ``features``
    replaced by their scores ``(n, n_classes)``; ``finish()`` scores the rest with the
    context cut at the end of the stream.
    """

    def __init__(self, backend: Any, context: int | None = None) -> None:
        context = int(context or getattr(backend, "event_context", DEFAULT_EVENT_CONTEXT))
        if context < 1 or context % 2 == 0:
            raise ValueError(f"the scoring context must be an odd number of frames, got {context}")
        self._backend = backend
        self._half = context // 2
        self._held: list[Frames] = []
        self._held_count = 0
        self._first = 0  # index, in the held frames, of the next frame to score

    def push(self, frames: Frames) -> Frames:
        if len(frames):
            self._held.append(frames)
            self._held_count += len(frames)
        ready = self._held_count - self._half - self._first
        return self._score(max(0, ready))

    def finish(self) -> Frames:
        return self._score(self._held_count - self._first)

    def _score(self, count: int) -> Frames:
        if count <= 0:
            return Frames(np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0), np.zeros(0))
        held = concat_frames(self._held)
        first, half = self._first, self._half
        windows = [held.features[max(0, j - half): j + half + 1]
                   for j in range(first, first + count)]
        scores = np.asarray(self._backend.score_windows(windows), dtype=np.float32)
        picked = slice(first, first + count)
        out = Frames(scores, held.starts[picked], held.durations[picked], held.levels[picked])
        # Keep only what later frames' contexts still need.
        keep_from = max(0, first + count - half)
        rest = Frames(held.features[keep_from:], held.starts[keep_from:],
                      held.durations[keep_from:], held.levels[keep_from:])
        self._held = [rest] if len(rest) else []
        self._held_count = len(rest)
        self._first = first + count - keep_from
        return out

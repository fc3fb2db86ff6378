"""Long files cut into shards on frame boundaries, and a shard's frames (no Beam here).

A backend cuts the 16 kHz stream into frames ``j`` of ``size`` samples every ``hop``
samples (``audio.framestream.frame_geometry``). A file of ``n`` samples at 16 kHz has a
known number of frames before anything is decoded (``num_frames``), so a long file is
planned as shards of whole frames ``[first, stop)``, and shard ``k`` needs exactly the
16 kHz samples ``[first·hop, (stop − 1)·hop + size)``: the context a frame needs beyond
its hop (``size − hop`` samples) is read again by the next shard. Only the last shard
sees the end of the file, where ``FrameStream.finish`` pads (YAMNet) or drops (VGGish) the
tail as for the whole file. The frames of the shards, put back in order, are then the
frames of the whole file (``tests/test_batch.py`` checks the results are equal).

Resampling. Files at other rates are resampled block by block (``audio.io``), which
equals resampling the whole signal up to rounding. A shard reads the input from a point
aligned on the resampler's grid (``rate_in / gcd`` input samples ↔ ``rate_out / gcd``
output samples) ``MARGIN_SECONDS`` before the samples it needs, and as far after them,
and keeps only its own samples: the margins, longer than the resampling filter, absorb
the edges of the cut, so the samples equal the whole file's up to the same rounding.

A file too short to be worth cutting is one shard, read exactly as ``parse_file.py``
reads it (``audio.pipeline.WavProcessor``'s blocks, ``FrameStream`` with ``finish``), so
its frames are bit-identical to ``parse_file.py``'s.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from audio.framestream import Frames, FrameStream, concat_frames, frame_geometry
from audio.io import (
    AudioFileError,
    AudioReader,
    AudioTooShortError,
    CorruptAudioError,
    mono_blocks,
    open_audio,
)
from audio.pipeline import BLOCK_SECONDS

MARGIN_SECONDS = 0.1
"""Input read on each side of a shard when resampling: twice ``StreamResampler``'s own
context, itself longer than resampy's filter."""
DEFAULT_SHARD_SECONDS = 180.0


@dataclass(frozen=True)
class FileTask:
    """One input file: ``path`` as reports show it, ``uri`` what is opened (the same for a
    local file), ``relative`` its place under the output folder, ``labels`` its class
    indices for the embeddings (``--labels_csv``)."""

    path: str
    uri: str
    relative: str
    labels: tuple[int, ...] = ()


@dataclass(frozen=True)
class Shard:
    """Frames ``[first, stop)`` of a file: shard ``index`` of ``count``."""

    file: FileTask
    index: int
    count: int
    first: int
    stop: int
    duration: float
    """The file's duration (seconds), as its header says."""
    start: float = 0.0
    end: float = 0.0
    """The audio the shard's frames start on and cover (seconds), for progress."""

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


@dataclass(frozen=True)
class ShardFrames:
    """What a worker computed for a shard: its frames, or the file's error message."""

    shard: Shard
    frames: Frames | None = None
    padded: bool = False
    error: str | None = None


def num_frames(samples: int, size: int, hop: int, pads_tail: bool) -> int:
    """Frames a backend makes of ``samples`` 16 kHz samples (``FrameStream``'s rule)."""
    if samples <= 0:
        return 0
    if samples < size:
        return 1  # zero-padded to one frame
    extra = samples - size
    return 1 + (-(-extra // hop) if pads_tail else extra // hop)


def resampled_length(reader: AudioReader, rate: int) -> int:
    """Samples ``mono_blocks(reader, rate)`` yields in all: floor(frames · rate / rate_in)."""
    return reader.frames * rate // reader.sample_rate


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[str]:
    """A local path for ``uri``: itself for a local file, else a temporary copy made
    through Beam's file systems (``gs://``, ``s3://``, ... with their extras)."""
    if "://" not in uri or uri.startswith("file://"):
        yield uri.removeprefix("file://")
        return
    from apache_beam.io.filesystems import FileSystems

    suffix = os.path.splitext(uri)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as copy:
        with FileSystems.open(uri) as source:
            while chunk := source.read(8 * 2**20):
                copy.write(chunk)
        copy.flush()
        yield copy.name


def _named(message: str, local: str, uri: str) -> str:
    """A message about a temporary copy, naming the file the user gave instead."""
    return message.replace(local, uri) if local != uri else message


def plan(task: FileTask, backend: object, shard_seconds: float) -> list[Shard]:
    """The shards of one file (one for a file shorter than about two shards);
    ``audio.io.AudioFileError`` when it cannot be opened."""
    size, hop, pads_tail = frame_geometry(backend)
    rate = int(backend.sample_rate)  # type: ignore[attr-defined]
    with local_file(task.uri) as path:
        try:
            with open_audio(path) as reader:
                duration = reader.duration
                total = num_frames(resampled_length(reader, rate), size, hop, pads_tail)
        except AudioFileError as exc:
            raise type(exc)(_named(str(exc), path, task.uri)) from None
    per_shard = max(1, round(shard_seconds * rate / hop))
    count = max(1, total // per_shard)  # the last shard takes the remainder
    bounds = [k * per_shard for k in range(count)] + [total]
    times = [min(duration, b * hop / rate) for b in bounds[:-1]] + [duration]
    return [Shard(task, k, count, bounds[k], bounds[k + 1], duration, times[k], times[k + 1])
            for k in range(count)]


def shard_frames(shard: Shard, backend: object) -> ShardFrames:
    """Read and embed one shard (``audio.io.AudioFileError`` for a bad file)."""
    uri = shard.file.uri
    with local_file(uri) as path:
        try:
            with open_audio(path) as reader:
                if shard.count == 1:
                    return _whole(shard, reader, backend)
                return _part(shard, reader, backend)
        except AudioFileError as exc:  # the same error, naming the file the user gave
            raise type(exc)(_named(str(exc), path, uri)) from None


def _whole(shard: Shard, reader: AudioReader, backend: object) -> ShardFrames:
    """A one-shard file, framed exactly as ``WavProcessor.analyze_file`` frames it."""
    stream = FrameStream(backend)
    parts = [stream.push(block) for block in
             mono_blocks(reader, int(backend.sample_rate), BLOCK_SECONDS)]  # type: ignore[attr-defined]
    parts.append(stream.finish())
    if stream.total_samples == 0:
        raise AudioTooShortError(f"{shard.file.path} holds no audio samples")
    return ShardFrames(shard, concat_frames(parts), stream.padded)


def _part(shard: Shard, reader: AudioReader, backend: object) -> ShardFrames:
    size, hop, _ = frame_geometry(backend)
    rate = int(backend.sample_rate)  # type: ignore[attr-defined]
    start = shard.first * hop
    stop = resampled_length(reader, rate) if shard.last else (shard.stop - 1) * hop + size
    samples = _samples(reader, rate, start, stop)
    stream = FrameStream(backend, start_frame=shard.first)
    step = int(BLOCK_SECONDS * rate)
    parts = [stream.push(samples[i:i + step]) for i in range(0, samples.shape[0], step)]
    if shard.last:
        parts.append(stream.finish())
    frames = concat_frames(parts)
    if len(frames) != shard.stop - shard.first:
        raise CorruptAudioError(f"{shard.file.path}: {len(frames)} frames in shard "
                                f"{shard.index + 1}/{shard.count}, "
                                f"{shard.stop - shard.first} expected (file shorter than "
                                f"its header says?)")
    return ShardFrames(shard, frames)


def _samples(reader: AudioReader, rate: int, start: int, stop: int) -> np.ndarray:
    """16 kHz samples ``[start, stop)`` of the file, as its whole-file resampling has them."""
    rate_in = reader.sample_rate
    if rate_in == rate:
        return _joined(mono_blocks(reader, rate, BLOCK_SECONDS, start, stop))
    common = math.gcd(rate_in, rate)
    in_unit, out_unit = rate_in // common, rate // common
    margin = math.ceil(MARGIN_SECONDS * rate_in / in_unit)
    first_unit = max(0, start // out_unit - margin)
    last_unit = -(-stop // out_unit) + margin
    out = _joined(mono_blocks(reader, rate, BLOCK_SECONDS, first_unit * in_unit,
                              min(reader.frames, last_unit * in_unit)))
    offset = first_unit * out_unit
    piece = out[start - offset:stop - offset]
    if piece.shape[0] != stop - start:
        raise CorruptAudioError(f"{reader.path}: file ended early (truncated while being "
                                f"read?)")
    return piece


def _joined(blocks: Iterator[np.ndarray]) -> np.ndarray:
    parts = list(blocks)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)

"""Reading AudioSet / YouTube-8M frame-level SequenceExample TFRecords.

Record format (``../shared/docs/numerics.md``): context ``video_id`` (bytes), ``labels``
(int64 list of indices into ``class_labels_indices.csv``), feature list
``audio_embedding`` with one 128-byte string (uint8 PCA/quantised VGGish embedding) per
~1 s frame.

Two ways in, one parser:

* :func:`make_dataset` — a streaming ``tf.data`` pipeline (parallel interleave over files,
  parallel parse, optional cache, shuffle, batch, prefetch) yielding dequantised,
  optionally L2-normalised, zero-padded frames; for data that does not fit in memory
  (the 2-million-clip unbalanced set).
* :func:`load_clips` — the same pipeline materialised once as compact numpy arrays
  (uint8 frames, ~28 MB for all of ``bal_train``). Training and evaluation on the
  balanced/eval splits use this: an epoch then costs no I/O and no parsing at all.

Malformed records (unparsable proto, an embedding that is not 128 bytes, a label outside
``[0, num_classes)``, zero frames) are a *policy*, not an accident:
``on_error="skip"`` (default) drops them and logs one warning with their count (also
returned in :class:`ClipArrays.skipped` so provenance records it); ``on_error="raise"``
raises :class:`MalformedRecordError` naming the offending file.

Frames are kept up to ``max_frames`` (default 300, YouTube-8M) and ``num_frames`` =
min(n, max_frames). Arrays are padded only to the longest clip actually present (≤
``max_frames``): every model masks by ``num_frames``, so results are identical to padding
to 300 while a 10-frame clip costs 10 frames of compute, not 300.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggish.errors import AudioAnalysisError
from vggish.params import PARAMS

logger = logging.getLogger(__name__)

FEATURE_NAME = "audio_embedding"
FEATURE_SIZE = 128
NUM_CLASSES = 527
MAX_FRAMES = 300


class ReaderError(AudioAnalysisError, ValueError):
    """Base class of the reader's errors."""


class NoFilesError(ReaderError, FileNotFoundError):
    """A data file pattern matched no file."""


class MalformedRecordError(ReaderError):
    """A record could not be decoded (``on_error='raise'``); the message names the file."""


@dataclass(frozen=True)
class ReaderConfig:
    """What the reader produces; part of every training run's recorded flags."""

    feature_name: str = FEATURE_NAME
    feature_size: int = FEATURE_SIZE
    num_classes: int = NUM_CLASSES
    max_frames: int = MAX_FRAMES
    on_error: str = "skip"  # or "raise"

    @classmethod
    def for_bundle(cls, config: dict, on_error: str = "skip") -> ReaderConfig:
        """The reader a bundle's ``config.json`` asks for: its input contract and class
        count (what eval, calibration and distillation decode the records with)."""
        inp = config["input"]
        return cls(feature_name=inp.get("feature_name", FEATURE_NAME),
                   feature_size=int(inp["feature_size"]), num_classes=int(config["num_classes"]),
                   max_frames=int(inp["max_frames"]), on_error=on_error)

    def __post_init__(self) -> None:
        if self.on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', not {self.on_error!r}")
        if self.max_frames < 1 or self.feature_size < 1 or self.num_classes < 1:
            raise ValueError("max_frames, feature_size and num_classes must be positive")


@dataclass(frozen=True)
class ClipArrays:
    """A whole split in memory, compact (uint8 frames, padded to the longest clip)."""

    video_ids: np.ndarray  # (N,) str
    frames: np.ndarray  # (N, T, feature_size) uint8, T = max(num_frames) ≤ max_frames
    num_frames: np.ndarray  # (N,) int32
    labels: np.ndarray  # (N, num_classes) float32 multi-hot
    files: tuple[str, ...]  # the files read, sorted
    skipped: int = 0  # malformed records dropped (on_error='skip')

    def __len__(self) -> int:
        return int(self.num_frames.shape[0])

    def subset(self, index: np.ndarray) -> ClipArrays:
        return ClipArrays(self.video_ids[index], self.frames[index], self.num_frames[index],
                          self.labels[index], self.files, self.skipped)


def expand_pattern(pattern: str | Sequence[str]) -> list[str]:
    """Files matching a glob (or comma-separated globs / a list), sorted; error if none."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    patterns = [p.strip() for item in patterns for p in item.split(",") if p.strip()]
    files = sorted({f for p in patterns for f in glob.glob(str(Path(p).expanduser()))})
    if not files:
        raise NoFilesError(f"no file matches {', '.join(patterns) or '(empty pattern)'}")
    return files


def dequantize_tf(quantized, params=PARAMS):
    """uint8 → float32 in TensorFlow, with the constants of ``vggish.postprocess.dequantize``."""
    import tensorflow as tf

    lo, hi = params.quantize_min_val, params.quantize_max_val
    span = hi - lo
    scalar = np.float32(span / 255.0)
    bias = np.float32(span / 512.0 + lo)
    return tf.cast(quantized, tf.float32) * scalar + bias


def preprocess_frames(frames_uint8, num_frames, l2_normalize: bool):
    """The model input contract, in TF: dequantise, optionally L2-normalise each frame,
    and zero every frame at or beyond ``num_frames`` (padding stays exactly zero).

    YouTube-8M normalises with ``x / sqrt(max(Σx², 1e-12))``.
    """
    import tensorflow as tf

    x = dequantize_tf(frames_uint8)
    if l2_normalize:
        x = x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x), -1, keepdims=True), 1e-12))
    mask = tf.sequence_mask(num_frames, tf.shape(x)[1], dtype=x.dtype)
    return x * mask[:, :, None]


def _parse_fn(config: ReaderConfig):
    import tensorflow as tf

    def parse(serialized):
        context, sequence = tf.io.parse_single_sequence_example(
            serialized,
            context_features={
                "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
                "labels": tf.io.VarLenFeature(tf.int64),
            },
            sequence_features={
                config.feature_name: tf.io.FixedLenSequenceFeature([], tf.string),
            },
        )
        raw = sequence[config.feature_name]
        lengths = tf.strings.length(raw)
        checks = [
            tf.debugging.assert_equal(
                lengths, config.feature_size,
                message=f"{config.feature_name} frame is not {config.feature_size} bytes"),
            tf.debugging.assert_positive(tf.size(raw), message="record has no frames"),
        ]
        labels = context["labels"].values
        checks += [
            tf.debugging.assert_non_negative(labels, message="negative label"),
            tf.debugging.assert_less(labels, tf.constant(config.num_classes, tf.int64),
                                     message="label outside [0, num_classes)"),
        ]
        with tf.control_dependencies(checks):
            frames = tf.io.decode_raw(raw, tf.uint8)
            frames = tf.reshape(frames, [-1, config.feature_size])[: config.max_frames]
            num_frames = tf.shape(frames)[0]
            multi_hot = tf.reduce_max(
                tf.one_hot(labels, config.num_classes, dtype=tf.float32), axis=0)
            multi_hot = tf.reshape(
                tf.cond(tf.size(labels) > 0, lambda: multi_hot,
                        lambda: tf.zeros([config.num_classes], tf.float32)),
                [config.num_classes])
        return context["video_id"], frames, tf.cast(num_frames, tf.int32), multi_hot

    return parse


def _records(files: Sequence[str], deterministic: bool = True):
    """Serialized records from many small files, read in parallel (interleave)."""
    import tensorflow as tf

    file_ds = tf.data.Dataset.from_tensor_slices(list(files))
    return file_ds.interleave(
        tf.data.TFRecordDataset, cycle_length=16, block_length=16,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _parsed(files: Sequence[str], config: ReaderConfig, deterministic: bool = True):
    import tensorflow as tf

    ds = _records(files, deterministic).map(
        _parse_fn(config), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if config.on_error == "skip":
        ds = ds.ignore_errors(log_warning=False)
    return ds


def _find_bad_file(files: Sequence[str], config: ReaderConfig) -> tuple[str, str]:
    """Slow path after a failure in raise mode: which file, and why."""
    import tensorflow as tf

    for f in files:
        try:
            for _ in _parsed([f], config):
                pass
        except tf.errors.OpError as exc:
            return f, exc.message.splitlines()[0]
    return "(unknown file)", "error not reproducible file by file"


def _count_records(files: Sequence[str]) -> int:

    ds = _records(files).ignore_errors(log_warning=False)
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1).numpy())


def load_clips(pattern: str | Sequence[str], config: ReaderConfig = ReaderConfig()) -> ClipArrays:
    """Read and decode every record matching ``pattern`` into compact numpy arrays."""
    import tensorflow as tf

    files = expand_pattern(pattern)
    ids: list[np.ndarray] = []
    clips: list[np.ndarray] = []
    nums: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    ds = _parsed(files, config).padded_batch(
        1024, padded_shapes=([], [None, config.feature_size], [], [config.num_classes]))
    try:
        for vid, frames, num, lab in ds.prefetch(2):
            ids.append(vid.numpy())
            clips.append(frames.numpy())
            nums.append(num.numpy())
            labels.append(lab.numpy())
    except tf.errors.OpError:
        bad, why = _find_bad_file(files, config)
        raise MalformedRecordError(f"{bad}: malformed record ({why})") from None
    n = sum(len(x) for x in nums)
    skipped = 0
    if config.on_error == "skip":
        skipped = _count_records(files) - n
        if skipped:
            logger.warning("skipped %d malformed record(s) in %d file(s) matching %s",
                           skipped, len(files), pattern)
    if n == 0:
        raise ReaderError(f"no valid record in {len(files)} file(s) matching {pattern}")
    width = max(c.shape[1] for c in clips)
    frames = np.zeros((n, width, config.feature_size), np.uint8)
    row = 0
    for c in clips:
        frames[row: row + len(c), : c.shape[1]] = c
        row += len(c)
    return ClipArrays(
        video_ids=np.array([v.decode("utf-8", "replace") for b in ids for v in b]),
        frames=frames,
        num_frames=np.concatenate(nums).astype(np.int32),
        labels=np.concatenate(labels).astype(np.float32),
        files=tuple(files),
        skipped=skipped,
    )


def make_dataset(pattern: str | Sequence[str], config: ReaderConfig = ReaderConfig(), *,
                 batch_size: int = 512, l2_normalize: bool = True, shuffle: bool = True,
                 shuffle_buffer: int = 10000, num_epochs: int | None = 1,
                 cache: bool | str = False, seed: int | None = None,
                 pad_to_max_frames: bool = False):
    """Streaming pipeline → batches of ``((frames float32, num_frames int32), labels)``.

    Each batch is padded to its own longest clip (or to ``max_frames`` with
    ``pad_to_max_frames``); models mask by ``num_frames`` so both give identical outputs.
    ``cache`` caches the decoded uint8 records in memory (``True``) or in a file (a path).
    """
    import tensorflow as tf

    files = expand_pattern(pattern)
    ds = _parsed(files, config, deterministic=not shuffle)
    ds = ds.map(lambda vid, frames, num, lab: (frames, num, lab))
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat(num_epochs)
    width = config.max_frames if pad_to_max_frames else None
    ds = ds.padded_batch(batch_size, padded_shapes=([width, config.feature_size], [],
                                                    [config.num_classes]))

    def prep(frames, num, lab):
        return (preprocess_frames(frames, num, l2_normalize), num), lab

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def load_clips_cached(pattern: str | Sequence[str], config: ReaderConfig = ReaderConfig(),
                      cache_dir: str | Path | None = None) -> ClipArrays:
    """:func:`load_clips`, memoised on disk as an ``.npz`` keyed by the files' names,
    sizes and modification times and the reader config (any change → a fresh read)."""
    import hashlib
    import json
    import os

    if not cache_dir:
        return load_clips(pattern, config)
    files = expand_pattern(pattern)
    key = hashlib.sha256(json.dumps({
        "files": [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files],
        "config": [config.feature_name, config.feature_size, config.num_classes,
                   config.max_frames, config.on_error],
    }).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"clips-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return ClipArrays(z["video_ids"], z["frames"], z["num_frames"],
                                  z["labels"].astype(np.float32),
                                  tuple(files), int(z["skipped"]))
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable cache %s (%s)", path, exc)
    clips = load_clips(files, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, video_ids=clips.video_ids, frames=clips.frames,
             num_frames=clips.num_frames, labels=clips.labels.astype(np.uint8), skipped=clips.skipped)
    os.replace(tmp, path)
    return clips

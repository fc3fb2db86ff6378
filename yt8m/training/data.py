"""Training data: the clips in memory, the validation split, the tf.data pipelines."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from yt8m.training import TrainError

logger = logging.getLogger("yt8m.train")


@dataclass(frozen=True)
class TrainData:
    """The loaded clips: all of ``--train_data_pattern`` (for provenance) and the train
    and validation sets (validation None in the refit step)."""

    clips: Any
    train: Any
    validation: Any | None
    load_seconds: float
    targets: np.ndarray | None = None  # soft training targets (None: the labels)
    teacher: dict[str, Any] | None = None  # what the targets were distilled from

    @property
    def num_validation(self) -> int:
        return 0 if self.validation is None else len(self.validation)


def split_validation(clips, fraction: float, seed: int):
    """Hold out ``fraction`` of the clips (seeded); 0 keeps all for training."""
    if fraction == 0:
        return clips, None
    n = len(clips)
    n_val = round(n * fraction)
    if not 0 < n_val < n:
        raise TrainError(f"--validation_fraction={fraction} leaves no train or validation "
                         f"clip out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return clips.subset(np.sort(order[n_val:])), clips.subset(np.sort(order[:n_val]))


def load_data(opts) -> TrainData:
    """Decode (or read from the cache) the training and validation clips."""
    from yt8m.reader import ReaderConfig, load_clips_cached

    reader = ReaderConfig(feature_name=opts.feature_names, feature_size=int(opts.feature_sizes),
                          num_classes=opts.num_classes, max_frames=opts.max_frames,
                          on_error=opts.reader_on_error)
    t0 = time.monotonic()
    clips = load_clips_cached(opts.train_data_pattern, reader, opts.data_cache_dir or None)
    if opts.validation_data_pattern:
        train_clips = clips
        val_clips = load_clips_cached(opts.validation_data_pattern, reader,
                                      opts.data_cache_dir or None)
    else:
        train_clips, val_clips = split_validation(clips, opts.validation_fraction,
                                                 opts.split_seed)
    targets, teacher = training_targets(opts, train_clips)
    data = TrainData(clips, train_clips, val_clips, time.monotonic() - t0, targets, teacher)
    logger.info("data: %d train / %d validation clips in %.1fs", len(train_clips),
                data.num_validation, data.load_seconds)
    return data


def training_targets(opts, train_clips) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """The training targets when they are not the plain labels: labels smoothed to
    ``(1 − ε)·y + ε/2``, then mixed with a teacher's scores ``λ·teacher + (1 − λ)·y``.
    Validation always scores against the true labels."""
    if not opts.teacher_scores and opts.label_smoothing == 0:
        return None, None
    eps = opts.label_smoothing
    targets = train_clips.labels.astype(np.float32) * (1 - eps) + eps / 2
    if not opts.teacher_scores:
        return targets, None
    from yt8m.training.teacher import load_teacher_scores

    teacher = load_teacher_scores(opts.teacher_scores, opts.num_classes)
    lam = opts.distill_weight
    targets = lam * teacher.for_clips(train_clips.video_ids) + (1 - lam) * targets
    info = {"scores": str(teacher.path), "sha256": teacher.sha256(), "weight": lam,
            **teacher.meta}
    logger.info("distilling from %s (λ = %.2f)", teacher.meta.get("teacher"), lam)
    return targets, info


def make_train_dataset(clips, batch_size: int, l2: bool, seed: int, mixup_alpha: float,
                       targets: np.ndarray | None = None):
    """Shuffled batches of ``((frames, num_frames), targets)``; ``targets`` (soft, aligned
    with ``clips``) default to the clips' labels."""
    import tensorflow as tf

    from yt8m.reader import preprocess_frames

    # Shuffle indices, not records: each batch is gathered from the in-memory arrays,
    # so an epoch costs no copying of 20k records through a shuffle buffer.
    n = len(clips)
    frames_all = tf.constant(clips.frames)
    num_all = tf.constant(clips.num_frames)
    labels_all = tf.constant(clips.labels.astype(np.uint8) if targets is None
                             else targets.astype(np.float32))
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda idx: (tf.gather(frames_all, idx),
                                               tf.gather(num_all, idx),
                                               tf.cast(tf.gather(labels_all, idx), tf.float32)))

    def prep(frames, num, labels):
        x = preprocess_frames(frames, num, l2)
        if mixup_alpha > 0:
            b = tf.shape(x)[0]
            g1 = tf.random.gamma([b], mixup_alpha)
            g2 = tf.random.gamma([b], mixup_alpha)
            lam = g1 / (g1 + g2)
            perm = tf.reverse(tf.range(b), [0])
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * tf.gather(x, perm)
            labels = lam[:, None] * labels + (1 - lam[:, None]) * tf.gather(labels, perm)
            num = tf.maximum(num, tf.gather(num, perm))
        return (x, num), labels

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE).with_options(options)


def make_eval_dataset(clips, batch_size: int, l2: bool):
    import tensorflow as tf

    from yt8m.reader import preprocess_frames

    ds = tf.data.Dataset.from_tensor_slices((clips.frames, clips.num_frames)).batch(batch_size)
    return ds.map(lambda f, n: ((preprocess_frames(f, n, l2), n),),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

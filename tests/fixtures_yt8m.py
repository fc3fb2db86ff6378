"""Fixtures of the yt8m tests: tiny AudioSet-format TFRecords written by the tests.

The records are real ``tf.train.SequenceExample`` protos in exactly the AudioSet layout
(context ``video_id``/``labels``, feature list ``audio_embedding`` of 128-byte strings).
Clips carry a learnable signal: each of a few classes shifts a class-specific set of
embedding dimensions, so a few training steps must lower the loss.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

NUM_CLASSES = 527
SIGNAL_CLASSES = (0, 1, 2, 3, 137, 300)


def make_example(video_id: str, labels: Sequence[int], frames: np.ndarray | Sequence[bytes],
                 feature_name: str = "audio_embedding") -> bytes:
    """A serialized SequenceExample in AudioSet's layout."""
    import tensorflow as tf

    raw = ([bytes(f) for f in frames] if not isinstance(frames, np.ndarray)
           else [row.astype(np.uint8).tobytes() for row in frames])
    ex = tf.train.SequenceExample()
    ex.context.feature["video_id"].bytes_list.value.append(video_id.encode())
    ex.context.feature["labels"].int64_list.value.extend(int(x) for x in labels)
    ex.context.feature["start_time_seconds"].float_list.value.append(30.0)
    ex.context.feature["end_time_seconds"].float_list.value.append(40.0)
    fl = ex.feature_lists.feature_list[feature_name]
    for r in raw:
        fl.feature.add().bytes_list.value.append(r)
    return ex.SerializeToString()


def write_records(path: Path, records: Sequence[bytes]) -> Path:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    return path


def synthetic_clips(rng: np.random.Generator, n: int, frames: int = 10,
                    vary_frames: bool = True) -> list[tuple[str, list[int], np.ndarray]]:
    """(video_id, labels, uint8 frames) with a class-dependent signal."""
    clips = []
    for i in range(n):
        k = rng.integers(1, 3)
        labels = sorted({int(c) for c in rng.choice(SIGNAL_CLASSES, size=k)})
        t = int(rng.integers(3, frames + 1)) if vary_frames else frames
        x = rng.normal(128, 20, size=(t, 128))
        for c in labels:
            dims = (np.arange(8) * 16 + SIGNAL_CLASSES.index(c) * 2) % 128
            x[:, dims] += 60
        clips.append((f"vid{i:05d}", labels, np.clip(x, 0, 255).astype(np.uint8)))
    return clips


@pytest.fixture(scope="session")
def yt8m_data(tmp_path_factory) -> dict[str, Path]:
    """Train (3 files, 240 clips) and eval (1 file, 80 clips) splits + a labels CSV."""
    rng = np.random.default_rng(4)
    root = tmp_path_factory.mktemp("yt8m_data")
    train = synthetic_clips(rng, 240)
    for j in range(3):
        write_records(root / "train" / f"t{j}.tfrecord",
                      [make_example(v, lab, f) for v, lab, f in train[j::3]])
    ev = synthetic_clips(rng, 80)
    write_records(root / "eval" / "e0.tfrecord", [make_example(v, lab, f) for v, lab, f in ev])
    labels = root / "class_labels_indices.csv"
    with open(labels, "w", encoding="utf-8") as f:
        f.write("index,mid,display_name\n")
        for i in range(NUM_CLASSES):
            f.write(f'{i},/m/test{i},"Class {i}, test"\n')
    return {"root": root, "train": root / "train" / "*.tfrecord",
            "eval": root / "eval" / "*.tfrecord", "labels": labels}


@pytest.fixture(scope="session")
def yt8m_train_dir(yt8m_data, tmp_path_factory) -> Path:
    """A finished tiny training run (attention model, a few epochs)."""
    from yt8m import train

    d = tmp_path_factory.mktemp("yt8m_run") / "attention"
    rc = train.main([f"--train_data_pattern={yt8m_data['train']}", f"--train_dir={d}",
                     "--model=Attention", "--hidden_size=32", "--hidden_layers=2",
                     "--attention_levels=1,2", "--batch_size=32", "--num_epochs=3",
                     "--base_learning_rate=0.003", "--data_cache_dir=", "--quiet",
                     "--validation_fraction=0.2"])
    assert rc == 0
    return d


@pytest.fixture(scope="session")
def tiny_bundle(yt8m_data, yt8m_train_dir, tmp_path_factory) -> Path:
    """The fixture attention run (20 % of its clips held out, seed 1) as a bundle."""
    from yt8m import export

    dest = tmp_path_factory.mktemp("calib") / "tiny"
    assert export.main([f"--train_dir={yt8m_train_dir}", "--name=tiny", f"--output_dir={dest}",
                        f"--eval_data_pattern={yt8m_data['eval']}",
                        f"--labels_csv={yt8m_data['labels']}"]) == 0
    return dest


def calibrate_bundle(bundle: Path, data: dict[str, Path], *extra: str) -> int:
    from yt8m import calibrate

    return calibrate.main([str(bundle), f"--train_data_pattern={data['train']}",
                           f"--eval_data_pattern={data['eval']}", "--data_cache_dir=",
                           "--num_threads=1", *extra])


@pytest.fixture(scope="session")
def calibrated(tiny_bundle, yt8m_data, tmp_path_factory) -> Path:
    """``tiny_bundle`` after ``python -m yt8m.calibrate`` (thresholds, class metrics)."""
    bundle = tmp_path_factory.mktemp("calibrated") / "tiny"
    shutil.copytree(tiny_bundle, bundle)
    assert calibrate_bundle(bundle, yt8m_data) == 0
    return bundle

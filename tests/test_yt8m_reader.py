"""The TFRecord reader on tiny AudioSet-format files written here."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures_yt8m import NUM_CLASSES, make_example, write_records
from vggish.postprocess import dequantize
from yt8m import reader


def _frames(rng, t):
    return rng.integers(0, 256, size=(t, 128), dtype=np.uint8)


def test_reads_labels_frames_and_empty_label_lists(tmp_path, rng):
    a, b = _frames(rng, 10), _frames(rng, 4)
    write_records(tmp_path / "x.tfrecord", [make_example("a", [0, 5, 526], a),
                                           make_example("b", [], b)])
    clips = reader.load_clips(str(tmp_path / "*.tfrecord"))
    assert list(clips.video_ids) == ["a", "b"]
    assert clips.frames.shape == (2, 10, 128) and clips.frames.dtype == np.uint8
    np.testing.assert_array_equal(clips.frames[0], a)
    np.testing.assert_array_equal(clips.frames[1, :4], b)
    assert not clips.frames[1, 4:].any()
    assert list(clips.num_frames) == [10, 4]
    assert clips.labels.shape == (2, NUM_CLASSES)
    assert set(np.nonzero(clips.labels[0])[0]) == {0, 5, 526}
    assert clips.labels[1].sum() == 0  # an empty label list is a valid, label-less clip
    assert clips.skipped == 0


def test_more_than_max_frames_is_truncated(tmp_path, rng):
    long = _frames(rng, 305)
    write_records(tmp_path / "x.tfrecord", [make_example("long", [1], long)])
    clips = reader.load_clips(str(tmp_path / "x.tfrecord"))
    assert clips.num_frames[0] == 300 and clips.frames.shape == (1, 300, 128)
    np.testing.assert_array_equal(clips.frames[0], long[:300])
    short = reader.load_clips(str(tmp_path / "x.tfrecord"), reader.ReaderConfig(max_frames=7))
    assert short.num_frames[0] == 7


def _malformed_file(tmp_path, rng):
    good = [make_example(f"g{i}", [i], _frames(rng, 5)) for i in range(3)]
    bad = [
        b"this is not a protocol buffer \xff\xff",
        make_example("short_frame", [1], [b"\x01" * 100]),  # 100-byte frame
        make_example("bad_label", [NUM_CLASSES], _frames(rng, 2)),  # label out of range
        make_example("no_frames", [1], np.zeros((0, 128), np.uint8)),
    ]
    records = [good[0], bad[0], good[1], bad[1], bad[2], bad[3], good[2]]
    return write_records(tmp_path / "mixed.tfrecord", records)


def test_malformed_records_are_skipped_and_counted(tmp_path, rng, caplog):
    path = _malformed_file(tmp_path, rng)
    with caplog.at_level("WARNING", logger="yt8m.reader"):
        clips = reader.load_clips(str(path))
    assert sorted(clips.video_ids) == ["g0", "g1", "g2"]
    assert clips.skipped == 4
    assert "skipped 4 malformed record" in caplog.text


def test_malformed_records_raise_with_file_name(tmp_path, rng):
    _malformed_file(tmp_path, rng)
    write_records(tmp_path / "a_good.tfrecord", [make_example("ok", [1], _frames(rng, 3))])
    with pytest.raises(reader.MalformedRecordError, match=r"mixed\.tfrecord"):
        reader.load_clips(str(tmp_path / "*.tfrecord"), reader.ReaderConfig(on_error="raise"))


def test_no_files_is_a_typed_error(tmp_path):
    with pytest.raises(reader.NoFilesError, match="no file matches"):
        reader.load_clips(str(tmp_path / "nothing*.tfrecord"))
    assert issubclass(reader.NoFilesError, FileNotFoundError)


def test_tf_dequantize_equals_numpy_dequantize():
    q = np.arange(256, dtype=np.uint8).reshape(2, 128)
    np.testing.assert_array_equal(reader.dequantize_tf(q).numpy(), dequantize(q))
    assert dequantize(np.array([0], np.uint8))[0] == pytest.approx(-2 + 4 / 512)


def test_preprocess_l2_normalises_valid_frames_and_zeroes_padding(rng):
    q = _frames(rng, 6)[None]
    x = reader.preprocess_frames(q, np.array([4], np.int32), l2_normalize=True).numpy()
    np.testing.assert_allclose(np.linalg.norm(x[0, :4], axis=1), 1.0, rtol=1e-5)
    assert not x[0, 4:].any()
    raw = reader.preprocess_frames(q, np.array([6], np.int32), l2_normalize=False).numpy()
    np.testing.assert_array_equal(raw[0], dequantize(q[0]))


def test_streaming_dataset_batches(yt8m_data):
    ds = reader.make_dataset(str(yt8m_data["train"]), batch_size=16, shuffle=True, seed=1)
    (x, n), y = next(iter(ds))
    assert x.shape[0] == 16 and x.shape[2] == 128 and x.shape[1] == int(np.max(n))
    assert y.shape == (16, NUM_CLASSES)
    total = sum(int(b[1].shape[0]) for b in reader.make_dataset(
        str(yt8m_data["train"]), batch_size=64, shuffle=False, pad_to_max_frames=True))
    assert total == 240


def test_disk_cache_round_trip(yt8m_data, tmp_path):
    first = reader.load_clips_cached(str(yt8m_data["eval"]), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("clips-*.npz"))) == 1
    second = reader.load_clips_cached(str(yt8m_data["eval"]), cache_dir=tmp_path)
    np.testing.assert_array_equal(first.frames, second.frames)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.video_ids, second.video_ids)

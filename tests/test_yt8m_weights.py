"""Storage types of bundle weight files (yt8m.weights): numpy and h5py only, no TF."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from yt8m import weights


def test_quantize_int8_is_per_channel_symmetric_and_within_half_a_step(rng):
    w = rng.normal(size=(64, 5)).astype(np.float32) * np.array([1e-3, 0.1, 1, 10, 0],
                                                               np.float32)
    q, scale = weights.quantize_int8(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (5,)
    np.testing.assert_allclose(scale[:4], np.abs(w[:, :4]).max(axis=0) / 127, rtol=1e-6)
    assert scale[4] == 1.0 and not q[:, 4].any()  # an all-zero channel stays exactly zero
    assert np.abs(q).max() == 127 and q.min() >= -127
    back = weights.dequantize_int8(q, scale)
    assert np.all(np.abs(back - w) <= scale / 2 + 1e-7 * np.abs(w))
    # The largest magnitude of every non-zero channel is represented exactly.
    peak = np.abs(w[:, :4]).argmax(axis=0)
    np.testing.assert_allclose(np.abs(back[peak, range(4)]), np.abs(w[peak, range(4)]),
                               rtol=1e-6)


def test_dequantize_rejects_inconsistent_scales():
    with pytest.raises(weights.WeightsFileError):
        weights.dequantize_int8(np.zeros((3, 4), np.int8), np.ones(3, np.float32))
    with pytest.raises(weights.WeightsFileError):
        weights.dequantize_int8(np.zeros((3, 4), np.int16), np.ones(4, np.float32))


def _keras_like_file(path, rng):
    """The layout of a Keras 3 ``.weights.h5`` (nested groups, attrs, a few arrays)."""
    arrays = {"layers/dense/vars/0": rng.normal(size=(16, 8)).astype(np.float32),
              "layers/dense/vars/1": rng.normal(size=8).astype(np.float32),
              "layers/conv/vars/0": rng.normal(size=(3, 4, 2)).astype(np.float32),
              "optimizer/vars/0": np.array(7, np.int64)}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "3.x"
        for name, value in arrays.items():
            f.create_dataset(name, data=value)
        f["layers/dense"].attrs["note"] = "kept"
    return arrays


def _read(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, (o[()], dict(o.attrs)))
                     if isinstance(o, h5py.Dataset) else None)
        out["/attrs"] = dict(f.attrs), dict(f["layers/dense"].attrs)
    return out


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_convert_then_dequantize_keeps_layout_and_values(dtype, tmp_path, rng):
    path = tmp_path / "m.weights.h5"
    arrays = _keras_like_file(path, rng)
    weights.convert_weights_file(path, dtype)
    stored = _read(path)
    assert stored["/attrs"] == ({"keras_version": "3.x"}, {"note": "kept"})
    assert stored["optimizer/vars/0"][0] == 7  # non-float arrays untouched
    if dtype == "float16":
        assert stored["layers/dense/vars/0"][0].dtype == np.float16
        assert stored["layers/dense/vars/1"][0].dtype == np.float16
    else:
        kernel, attrs = stored["layers/dense/vars/0"]
        assert kernel.dtype == np.int8 and attrs[weights.SCALE_ATTR].shape == (8,)
        assert stored["layers/conv/vars/0"][0].dtype == np.int8
        assert stored["layers/dense/vars/1"][0].dtype == np.float32  # biases stay float32
    plain = tmp_path / "plain.weights.h5"
    weights.dequantize_weights_file(path, plain)
    back = _read(plain)
    for name, value in arrays.items():
        data, attrs = back[name]
        assert weights.SCALE_ATTR not in attrs
        if value.dtype == np.float32:
            tol = 1e-3 if dtype == "float16" else np.abs(value).max() / 127 / 2 + 1e-6
            np.testing.assert_allclose(data.astype(np.float32), value, rtol=0, atol=tol * 2)
        else:
            np.testing.assert_array_equal(data, value)
    # float16 is left for Keras to cast; int8 arrays come back as float32.
    assert weights.stored_dtypes(plain) == {np.dtype(dtype.replace("int8", "float32")),
                                            np.dtype("int64")}


def test_unknown_dtype_is_a_clear_error(tmp_path, rng):
    path = tmp_path / "m.weights.h5"
    _keras_like_file(path, rng)
    with pytest.raises(weights.WeightsFileError, match="bfloat16"):
        weights.convert_weights_file(path, "bfloat16")

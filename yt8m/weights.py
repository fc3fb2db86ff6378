"""Storage types of a bundle's Keras ``.weights.h5`` files: float32, float16 and int8.

The files keep Keras's layout (groups, attributes and dataset names); only how each
float32 array is stored changes:

* ``float16``: every float32 array is stored as float16; Keras casts it back on loading.
* ``int8``: every float32 array of rank ≥ 2 (dense kernels, the DBoF cluster matrix) is
  stored as int8 with one float32 scale per output channel (its last axis), symmetric:
  ``w ≈ q * scale`` with ``scale = max|w| / 127`` over the channel, the scheme of
  TFLite's dynamic-range quantisation. Rank-0/1 arrays (biases, batch-norm statistics)
  stay float32. The scales are the dataset's ``int8_scale`` attribute; a file must be
  passed through :func:`dequantize_weights_file` before Keras loads it.

Only h5py and numpy are used: nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vggish.errors import ModelFilesError

WEIGHTS_DTYPES = ("float32", "float16", "int8")
SCALE_ATTR = "int8_scale"
INT8_MAX = 127


class WeightsFileError(ModelFilesError, ValueError):
    """A weights file cannot be converted (unknown storage type, inconsistent scales)."""


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-last-axis int8: ``(q, scale)`` with ``q * scale ≈ w``.

    A channel that is all zeros gets scale 1 (its ``q`` is 0), so every scale is > 0.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim < 1:
        raise WeightsFileError("int8 quantisation needs an array with a channel axis")
    peak = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0) if w.size else np.zeros(w.shape[-1])
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float32)
    if q.dtype != np.int8 or scale.shape != (q.shape[-1],):
        raise WeightsFileError(f"int8 array {q.shape} {q.dtype} with scales {scale.shape}")
    return q.astype(np.float32) * scale


def _rewrite(src_path: Path, dst_path: Path,
             convert: Callable[[np.ndarray, dict[str, Any]], tuple[np.ndarray, dict[str, Any]]]
             ) -> None:
    """Copy an HDF5 file group by group, passing each dataset through ``convert``."""
    import h5py

    tmp = dst_path.with_name(dst_path.name + ".tmp")
    try:
        with h5py.File(src_path, "r") as src, h5py.File(tmp, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value

            def copy(name: str, obj: Any) -> None:
                attrs = dict(obj.attrs.items())
                if isinstance(obj, h5py.Group):
                    target = dst.require_group(name)
                else:
                    data, attrs = convert(obj[()], attrs)
                    target = dst.create_dataset(name, data=data)
                for key, value in attrs.items():
                    target.attrs[key] = value

            src.visititems(copy)
        os.replace(tmp, dst_path)
    finally:
        tmp.unlink(missing_ok=True)


def convert_weights_file(path: str | os.PathLike[str], dtype: str) -> None:
    """Rewrite a float32 Keras ``.weights.h5`` in place with ``dtype`` storage."""
    if dtype not in WEIGHTS_DTYPES:
        raise WeightsFileError(f"unknown weights dtype {dtype!r} (one of {WEIGHTS_DTYPES})")
    if dtype == "float32":
        return

    def convert(data: np.ndarray, attrs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        if data.dtype != np.float32:
            return data, attrs
        if dtype == "float16":
            return data.astype(np.float16), attrs
        if data.ndim < 2:
            return data, attrs
        q, scale = quantize_int8(data)
        return q, {**attrs, SCALE_ATTR: scale}

    _rewrite(Path(path), Path(path), convert)


def dequantize_weights_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Write ``dst``: ``src`` with every int8 array (and its scales) back in float32."""

    def convert(data: np.ndarray, attrs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        if SCALE_ATTR not in attrs:
            return data, attrs
        scale = attrs.pop(SCALE_ATTR)
        return dequantize_int8(data, scale), attrs

    _rewrite(Path(src), Path(dst), convert)


def stored_dtypes(path: str | os.PathLike[str]) -> set[np.dtype]:
    """The dtypes of the arrays in an HDF5 file (for tests and sanity checks)."""
    import h5py

    found: set[np.dtype] = set()
    with h5py.File(path, "r") as f:
        f.visititems(lambda _n, o: found.add(o.dtype) if isinstance(o, h5py.Dataset) else None)
    return found

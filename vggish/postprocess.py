"""Post-processing of VGGish embeddings into AudioSet's released 8-bit space (pure numpy).

Google released the AudioSet embeddings after three steps, reproduced here exactly:

1. PCA: ``pca = (V · (Eᵀ − μ[:, None]))ᵀ`` with the eigenvectors ``V`` (128 × 128) and
   means ``μ`` (128,) of ``vggish_pca_params.npz``;
2. clip to [−2, +2];
3. quantise to 8 bits by *truncation*: ``q = uint8((pca + 2) · 255 / 4)``.

``dequantize`` is YouTube-8M's inverse (``q · 4/255 + 4/512 − 2``, the centre of each
bin). The classifier in ``yt8m/`` and its training data use this same function.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from vggish.errors import ModelFilesError
from vggish.params import PARAMS, VGGishParams

PCA_EIGEN_VECTORS_NAME = "pca_eigen_vectors"
PCA_MEANS_NAME = "pca_means"


class PCAParamsError(ModelFilesError, ValueError):
    """The PCA parameter file is missing, unreadable or has the wrong keys or shapes."""


class Postprocessor:
    """Applies PCA, clipping and 8-bit quantisation to raw VGGish embeddings."""

    def __init__(self, pca_params_path: str | os.PathLike[str],
                 params: VGGishParams = PARAMS) -> None:
        path = Path(pca_params_path)
        try:
            with np.load(path) as npz:
                vectors = npz[PCA_EIGEN_VECTORS_NAME]
                means = npz[PCA_MEANS_NAME]
        except FileNotFoundError:
            raise PCAParamsError(f"PCA parameters not found: {path}") from None
        except KeyError as exc:
            raise PCAParamsError(
                f"{path}: missing key {exc} (expected {PCA_EIGEN_VECTORS_NAME!r} and "
                f"{PCA_MEANS_NAME!r})") from None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise PCAParamsError(f"{path}: not a readable .npz file ({exc})") from None
        size = params.embedding_size
        if vectors.shape != (size, size):
            raise PCAParamsError(f"{path}: {PCA_EIGEN_VECTORS_NAME} has shape {vectors.shape}, "
                                 f"expected {(size, size)}")
        if means.reshape(-1).shape != (size,):
            raise PCAParamsError(f"{path}: {PCA_MEANS_NAME} has shape {means.shape}, "
                                 f"expected {(size,)}")
        self._params = params
        self._eigen_vectors = vectors
        # The reference stores the means as a column (128, 1); keep that broadcasting.
        self._means = means.reshape(size, 1)

    def postprocess(self, embeddings: np.ndarray) -> np.ndarray:
        """(K, 128) raw embeddings → (K, 128) uint8, bit-identical to the reference."""
        embeddings = np.asarray(embeddings)
        size = self._params.embedding_size
        if embeddings.ndim != 2 or embeddings.shape[1] != size:
            raise ValueError(f"expected embeddings of shape (K, {size}), got {embeddings.shape}")
        pca_applied = np.dot(self._eigen_vectors, embeddings.T - self._means).T
        lo, hi = self._params.quantize_min_val, self._params.quantize_max_val
        clipped = np.clip(pca_applied, lo, hi)
        quantized = (clipped - lo) * (255.0 / (hi - lo))
        return quantized.astype(np.uint8)


def dequantize(quantized: np.ndarray, params: VGGishParams = PARAMS) -> np.ndarray:
    """uint8 → float32 with YouTube-8M's formula: ``q · (max−min)/255 + (max−min)/512 + min``."""
    lo, hi = params.quantize_min_val, params.quantize_max_val
    span = hi - lo
    scalar = span / 255.0
    bias = span / 512.0 + lo
    return (np.asarray(quantized, dtype=np.float32) * np.float32(scalar) + np.float32(bias))

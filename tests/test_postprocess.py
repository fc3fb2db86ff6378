"""vggish.postprocess: PCA, clipping, 8-bit quantisation and YouTube-8M's dequantisation.

The expected values are written out from the published formulas (numerics.md), and the
output is compared with the stored result of Google's reference ``vggish_postprocess.py``
on the same seeded inputs (``tests/data/vggish_frontend_reference.npz``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_frontend import postprocess_reference_inputs
from vggish.postprocess import PCAParamsError, Postprocessor, dequantize


def write_pca(path: Path, vectors: np.ndarray, means: np.ndarray) -> Path:
    np.savez(path, pca_eigen_vectors=vectors, pca_means=means)
    return path


def reference_formula(embeddings: np.ndarray, vectors: np.ndarray,
                      means: np.ndarray) -> np.ndarray:
    """pca = (V · (Eᵀ − μ[:, None]))ᵀ; clip to [−2, 2]; uint8(truncate((pca + 2) · 255/4))."""
    pca = np.dot(vectors, embeddings.T - means.reshape(-1, 1)).T
    clipped = np.clip(pca, -2.0, 2.0)
    return ((clipped - (-2.0)) * (255.0 / (2.0 - (-2.0)))).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_postprocess_bit_identical_to_formula(tmp_path: Path, rng: np.random.Generator,
                                              dtype: type) -> None:
    vectors = rng.standard_normal((128, 128)) * 0.05
    means = rng.standard_normal(128)
    embeddings = (rng.standard_normal((64, 128)) * 3.0).astype(dtype)
    post = Postprocessor(write_pca(tmp_path / "pca.npz", vectors, means))
    quantized = post.postprocess(embeddings)
    expected = reference_formula(embeddings, vectors, means)
    assert quantized.dtype == np.uint8
    assert quantized.shape == (64, 128)
    np.testing.assert_array_equal(quantized, expected)
    # The inputs reach well outside [−2, 2]: both clip levels and the interior occur.
    pca = np.dot(vectors, embeddings.T - means[:, None]).T
    assert (pca < -2).any() and (pca > 2).any()
    assert (quantized == 0).any() and (quantized == 255).any()
    assert len(np.unique(quantized)) > 200


def test_quantisation_truncates(tmp_path: Path) -> None:
    # Identity PCA, zero means: the quantiser alone. (x + 2)·63.75 truncated.
    post = Postprocessor(write_pca(tmp_path / "pca.npz", np.eye(128), np.zeros(128)))
    values = np.array([-5.0, -2.0, -1.99, 0.0, 0.0157, 1.999, 2.0, 7.0])
    embeddings = np.zeros((len(values), 128))
    embeddings[:, 0] = values
    quantized = post.postprocess(embeddings)[:, 0]
    np.testing.assert_array_equal(quantized, [0, 0, 0, 127, 128, 254, 255, 255])


def test_matches_google_reference_output(tmp_path: Path,
                                         frontend_reference: dict[str, np.ndarray]) -> None:
    embeddings, vectors, means = postprocess_reference_inputs()
    post = Postprocessor(write_pca(tmp_path / "pca.npz", vectors, means))
    np.testing.assert_array_equal(post.postprocess(embeddings),
                                  frontend_reference["postprocess_uint8"])


def test_means_stored_as_column_are_accepted(tmp_path: Path, rng: np.random.Generator) -> None:
    vectors = rng.standard_normal((128, 128)) * 0.05
    means = rng.standard_normal(128)
    embeddings = rng.standard_normal((5, 128))
    flat = Postprocessor(write_pca(tmp_path / "a.npz", vectors, means)).postprocess(embeddings)
    column = Postprocessor(write_pca(tmp_path / "b.npz", vectors, means.reshape(128, 1)))
    np.testing.assert_array_equal(column.postprocess(embeddings), flat)


def test_postprocess_rejects_bad_embedding_shapes(tmp_path: Path) -> None:
    post = Postprocessor(write_pca(tmp_path / "pca.npz", np.eye(128), np.zeros(128)))
    with pytest.raises(ValueError, match="shape"):
        post.postprocess(np.zeros(128))
    with pytest.raises(ValueError, match="shape"):
        post.postprocess(np.zeros((3, 64)))


# --- Bad PCA files ----------------------------------------------------------------------

def test_missing_pca_file(tmp_path: Path) -> None:
    with pytest.raises(PCAParamsError, match="not found"):
        Postprocessor(tmp_path / "nope.npz")


def test_pca_file_with_wrong_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.npz"
    np.savez(path, eigen=np.eye(128), pca_means=np.zeros(128))
    with pytest.raises(PCAParamsError, match="pca_eigen_vectors"):
        Postprocessor(path)


@pytest.mark.parametrize(("vectors", "means", "match"), [
    (np.eye(64), np.zeros(128), "pca_eigen_vectors has shape"),
    (np.eye(128), np.zeros(127), "pca_means has shape"),
])
def test_pca_file_with_wrong_shapes(tmp_path: Path, vectors: np.ndarray, means: np.ndarray,
                                    match: str) -> None:
    with pytest.raises(PCAParamsError, match=match):
        Postprocessor(write_pca(tmp_path / "shape.npz", vectors, means))


def test_pca_file_that_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is plain text, not an npz archive\n" * 3)
    with pytest.raises(PCAParamsError, match="not a readable"):
        Postprocessor(path)
    assert issubclass(PCAParamsError, ValueError)


def test_truncated_npz_download(tmp_path: Path, rng: np.random.Generator) -> None:
    good = write_pca(tmp_path / "good.npz", rng.standard_normal((128, 128)), np.zeros(128))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:5000])  # starts with the zip magic "PK\x03\x04"
    with pytest.raises(PCAParamsError, match="not a readable"):
        Postprocessor(truncated)


# --- Dequantisation (YouTube-8M utils.Dequantize) ---------------------------------------

def test_dequantize_matches_youtube8m_formula() -> None:
    q = np.arange(256, dtype=np.uint8)
    # YouTube-8M: feat · (range / 255) + (range / 512 + min), max 2, min −2, computed in
    # float32 (the features are cast to float32 before Dequantize).
    quantized_range = 2.0 - (-2.0)
    scalar = quantized_range / 255.0
    bias = (quantized_range / 512.0) + (-2.0)
    expected32 = q.astype(np.float32) * np.float32(scalar) + np.float32(bias)
    result = dequantize(q)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, expected32)
    np.testing.assert_allclose(result, q * scalar + bias, rtol=0, atol=1e-6)
    assert result[0] == pytest.approx(-2.0 + 4.0 / 512.0)
    assert result[255] == pytest.approx(2.0 + 4.0 / 512.0)


def test_dequantize_inverts_quantisation_to_within_one_bin(tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    post = Postprocessor(write_pca(tmp_path / "pca.npz", np.eye(128), np.zeros(128)))
    x = rng.uniform(-2.0, 2.0, (50, 128))
    error = dequantize(post.postprocess(x)) - x
    # Truncation puts x in [q, q+1)·4/255 − 2; dequantize returns q·4/255 − 2 + 4/512.
    assert error.max() <= 4.0 / 512.0 + 1e-6
    assert error.min() >= 4.0 / 512.0 - 4.0 / 255.0 - 1e-6


def test_dequantize_keeps_shape() -> None:
    q = np.zeros((10, 128), dtype=np.uint8)
    assert dequantize(q).shape == (10, 128)

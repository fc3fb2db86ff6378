"""VGGish model-file fixtures: random weights in exactly Google's official file formats.

Google's ``vggish_model.ckpt`` and ``vggish_pca_params.npz`` can't be fetched here, so
the tests use files written the way the official ones were: the checkpoint is a single
TF1 Saver V1 file with the official variable names and shapes (written in graph mode
by ``tf.compat.v1.train.Saver(write_version=SaverDef.V1)``), the PCA file an ``.npz``
with ``pca_eigen_vectors`` (128 × 128) and ``pca_means`` (128,). The weights are random
(seeded, He-scaled so activations neither explode nor vanish through the 9 layers, with
non-zero biases so that loading them is tested too). The ~290 MB checkpoint is written
once per session.

Fixtures:
- ``vggish_checkpoint``: the official layout, the file alone in its directory.
- ``vggish_checkpoint_with_index``: the same file with the ``checkpoint`` index file
  that a Saver writes beside it.
- ``pca_params_file``: a random orthonormal PCA file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

CHECKPOINT_SEED = 20170309
PCA_SEED = 20170310
BIAS_STDDEV = 0.1


def random_vggish_variables(seed: int = CHECKPOINT_SEED) -> dict[str, np.ndarray]:
    """Seeded He-initialised float32 weights and small random biases, official names."""
    from vggish.model import expected_variables

    rng = np.random.default_rng(seed)
    variables: dict[str, np.ndarray] = {}
    for name, shape in expected_variables().items():
        if name.endswith("/weights"):
            fan_in = int(np.prod(shape[:-1]))
            scale = np.float32(np.sqrt(2.0 / fan_in))
            variables[name] = rng.standard_normal(shape, dtype=np.float32) * scale
        else:
            variables[name] = rng.normal(0.0, BIAS_STDDEV, shape).astype(np.float32)
    return variables


def write_official_checkpoint(path: Path, variables: dict[str, np.ndarray],
                              write_index: bool = True) -> Path:
    """Write ``variables`` as a single-file TF1 Saver V1 checkpoint at ``path``.

    Variables are created in a TF1 graph under their full names and assigned through
    placeholders (so the ~290 MB of weights are not baked into the graph as constants),
    then saved by a V1 Saver, as Google's checkpoint was. ``write_index`` controls the
    ``checkpoint`` state file beside it.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        assigns = []
        feeds = {}
        for name, value in variables.items():
            var = v1.get_variable(name, shape=value.shape, dtype=tf.as_dtype(value.dtype),
                                  initializer=v1.zeros_initializer(), use_resource=False)
            placeholder = v1.placeholder(var.dtype.base_dtype, shape=value.shape)
            assigns.append(v1.assign(var, placeholder))
            feeds[placeholder] = value
        saver = v1.train.Saver(write_version=v1.train.SaverDef.V1)
        with v1.Session(graph=graph) as session:
            session.run(assigns, feed_dict=feeds)
            saved = saver.save(session, str(path), write_meta_graph=False,
                               write_state=write_index)
    return Path(saved)


def write_pca_params(path: Path, seed: int = PCA_SEED, size: int = 128) -> Path:
    """A random PCA file: orthonormal eigenvectors (QR of a Gaussian) and random means."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    eigen_vectors = q * np.sign(np.diag(r))  # a uniformly random orthonormal matrix
    means = rng.normal(0.0, 0.5, size)
    np.savez(path, pca_eigen_vectors=eigen_vectors, pca_means=means)
    return path


@pytest.fixture(scope="session")
def vggish_checkpoint_with_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight ``vggish_model.ckpt`` with a ``checkpoint`` index file beside it."""
    directory = tmp_path_factory.mktemp("vggish_ckpt_indexed")
    path = write_official_checkpoint(directory / "vggish_model.ckpt",
                                     random_vggish_variables(), write_index=True)
    if not (directory / "checkpoint").is_file():
        raise RuntimeError("Saver did not write the checkpoint index file")
    return path


@pytest.fixture(scope="session")
def vggish_checkpoint(tmp_path_factory: pytest.TempPathFactory,
                      vggish_checkpoint_with_index: Path) -> Path:
    """Random-weight ``vggish_model.ckpt`` alone in its directory (the official layout)."""
    directory = tmp_path_factory.mktemp("vggish_ckpt")
    path = directory / "vggish_model.ckpt"
    try:
        os.link(vggish_checkpoint_with_index, path)  # same bytes, no second 290 MB
    except OSError:
        shutil.copyfile(vggish_checkpoint_with_index, path)
    return path


@pytest.fixture(scope="session")
def pca_params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random ``vggish_pca_params.npz`` with the official keys and shapes."""
    return write_pca_params(tmp_path_factory.mktemp("vggish_pca") / "vggish_pca_params.npz")

"""Every registered model: trains (loss falls), masks padding, registry contracts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.fixtures_yt8m import NUM_CLASSES, synthetic_clips
from yt8m import models

SMALL = {
    "FrameLevelLogisticModel": {},
    "MoeModel": {"moe_num_mixtures": 2},
    "DbofModel": {"dbof_cluster_size": 64, "dbof_hidden_size": 32, "iterations": 8},
    "LstmModel": {"lstm_cells": 16, "lstm_layers": 2},
    "AttentionModel": {"hidden_size": 32, "hidden_layers": 2, "attention_levels": (1, 2)},
}


def _batch(rng, n=64, t=10):
    from yt8m.reader import preprocess_frames

    clips = synthetic_clips(rng, n, frames=t)
    q = np.zeros((n, t, 128), np.uint8)
    nf = np.zeros(n, np.int32)
    y = np.zeros((n, NUM_CLASSES), np.float32)
    for i, (_, labels, f) in enumerate(clips):
        q[i, : len(f)] = f
        nf[i] = len(f)
        y[i, labels] = 1
    return preprocess_frames(q, nf, l2_normalize=True).numpy(), nf, y


def test_registry_names_and_hparams():
    assert set(SMALL) == set(models.MODELS)
    assert models.canonical_name("Lstm") == "LstmModel"
    assert models.canonical_name("Logistic") == "FrameLevelLogisticModel"
    assert models.canonical_name("Dbof") == "DbofModel"
    with pytest.raises(models.UnknownModelError, match="unknown model"):
        models.canonical_name("NoSuchModel")
    hp = models.make_hparams("Lstm", {"lstm_cells": 256, "hidden_size": 9})
    assert hp.lstm_cells == 256 and hp.lstm_layers == 2
    with pytest.raises(AttributeError):
        hp.lstm_cells = 3  # frozen


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_trains_and_masks_padding(name, rng):
    import keras
    import tensorflow as tf

    from yt8m.train import cross_entropy

    keras.utils.set_random_seed(3)
    model = models.build_model(name, NUM_CLASSES, models.make_hparams(name, SMALL[name]))
    x, nf, y = _batch(rng)
    opt = keras.optimizers.Adam(0.01)

    def loss_value():
        return float(tf.reduce_mean(cross_entropy(y, model((x, nf), training=False))))

    before = loss_value()
    for _ in range(8):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(cross_entropy(y, model((x, nf), training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    after = loss_value()
    assert after < before, f"{name}: loss {before:.3f} → {after:.3f}"

    # Padding to 300 frames (zeros, masked) gives the same scores as the compact batch.
    padded = np.zeros((x.shape[0], 300, 128), np.float32)
    padded[:, : x.shape[1]] = x
    short = model((x, nf), training=False).numpy()
    long = model((padded, nf), training=False).numpy()
    np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-6)
    assert short.shape == (x.shape[0], NUM_CLASSES)
    assert np.all((short >= 0) & (short <= 1))


def test_models_module_import_does_not_import_tensorflow():
    code = "import sys, yt8m.models; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

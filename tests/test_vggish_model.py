"""VGGish Keras model vs an independent TF1 reference graph on the same checkpoint.

The reference is written here from Google's ``vggish_slim.py`` structure with raw
``tf.nn`` ops in TF1 graph mode and restored by a ``tf.compat.v1`` Saver, as Google's
``load_vggish_slim_checkpoint`` does; it shares no code with ``vggish.model``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_vggish import write_official_checkpoint
from vggish.model import (
    CheckpointError,
    build_vggish,
    embed,
    expected_variables,
    load_vggish,
)

# Official variable names and shapes, written out by hand (not derived from the table).
OFFICIAL_VARIABLES = {
    "vggish/conv1/weights": (3, 3, 1, 64),
    "vggish/conv1/biases": (64,),
    "vggish/conv2/weights": (3, 3, 64, 128),
    "vggish/conv2/biases": (128,),
    "vggish/conv3/conv3_1/weights": (3, 3, 128, 256),
    "vggish/conv3/conv3_1/biases": (256,),
    "vggish/conv3/conv3_2/weights": (3, 3, 256, 256),
    "vggish/conv3/conv3_2/biases": (256,),
    "vggish/conv4/conv4_1/weights": (3, 3, 256, 512),
    "vggish/conv4/conv4_1/biases": (512,),
    "vggish/conv4/conv4_2/weights": (3, 3, 512, 512),
    "vggish/conv4/conv4_2/biases": (512,),
    "vggish/fc1/fc1_1/weights": (12288, 4096),
    "vggish/fc1/fc1_1/biases": (4096,),
    "vggish/fc1/fc1_2/weights": (4096, 4096),
    "vggish/fc1/fc1_2/biases": (4096,),
    "vggish/fc2/weights": (4096, 128),
    "vggish/fc2/biases": (128,),
}

REL_TOLERANCE = 1e-4


def reference_embeddings(checkpoint: Path, examples: np.ndarray) -> np.ndarray:
    """Google's VGGish graph (vggish_slim structure) in TF1 graph mode, raw tf.nn ops."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        features = v1.placeholder(tf.float32, shape=(None, 96, 64), name="input_features")

        def conv(net: tf.Tensor, scope: str, out: int) -> tf.Tensor:
            with v1.variable_scope(scope):
                weights = v1.get_variable("weights", (3, 3, int(net.shape[-1]), out))
                biases = v1.get_variable("biases", (out,))
            net = tf.nn.conv2d(net, weights, strides=[1, 1, 1, 1], padding="SAME")
            return tf.nn.relu(tf.nn.bias_add(net, biases))

        def pool(net: tf.Tensor) -> tf.Tensor:
            return tf.nn.max_pool2d(net, ksize=2, strides=2, padding="SAME")

        def fully_connected(net: tf.Tensor, scope: str, out: int, relu: bool) -> tf.Tensor:
            with v1.variable_scope(scope):
                weights = v1.get_variable("weights", (int(net.shape[-1]), out))
                biases = v1.get_variable("biases", (out,))
            net = tf.nn.bias_add(tf.matmul(net, weights), biases)
            return tf.nn.relu(net) if relu else net

        with v1.variable_scope("vggish"):
            net = tf.reshape(features, [-1, 96, 64, 1])
            net = pool(conv(net, "conv1", 64))
            net = pool(conv(net, "conv2", 128))
            with v1.variable_scope("conv3"):
                net = conv(conv(net, "conv3_1", 256), "conv3_2", 256)
            net = pool(net)
            with v1.variable_scope("conv4"):
                net = conv(conv(net, "conv4_1", 512), "conv4_2", 512)
            net = pool(net)
            net = tf.reshape(net, [-1, 6 * 4 * 512])  # slim.flatten of NHWC
            with v1.variable_scope("fc1"):
                net = fully_connected(net, "fc1_1", 4096, relu=True)
                net = fully_connected(net, "fc1_2", 4096, relu=True)
            embedding = fully_connected(net, "fc2", 128, relu=False)
        saver = v1.train.Saver(write_version=v1.train.SaverDef.V1)
        with v1.Session(graph=graph) as session:
            saver.restore(session, str(checkpoint))
            return session.run(embedding, feed_dict={features: examples})


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |actual − reference| / max |reference|."""
    return float(np.max(np.abs(actual - reference)) / np.max(np.abs(reference)))


@pytest.fixture(scope="module")
def examples() -> np.ndarray:
    # Log-mel-like values (ln(mel + 0.01) spans about [-4.6, 4]); seeded.
    rng = np.random.default_rng(96064)
    return rng.uniform(-4.6, 4.0, (5, 96, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(vggish_checkpoint: Path, examples: np.ndarray) -> np.ndarray:
    return reference_embeddings(vggish_checkpoint, examples)


@pytest.fixture(scope="module")
def model(vggish_checkpoint: Path):
    return load_vggish(vggish_checkpoint)


def test_expected_variables_are_the_official_names_and_shapes() -> None:
    assert expected_variables() == OFFICIAL_VARIABLES
    assert sum(int(np.prod(s)) for s in OFFICIAL_VARIABLES.values()) == 72_141_184


def test_import_does_not_load_tensorflow() -> None:
    code = ("import sys, vggish.model; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_fixture_is_a_single_v1_file(vggish_checkpoint: Path,
                                     vggish_checkpoint_with_index: Path) -> None:
    assert sorted(p.name for p in vggish_checkpoint.parent.iterdir()) == ["vggish_model.ckpt"]
    assert sorted(p.name for p in vggish_checkpoint_with_index.parent.iterdir()) == [
        "checkpoint", "vggish_model.ckpt"]
    # V1 checkpoints are one LevelDB-style table; V2 would be a .index + .data pair.
    assert vggish_checkpoint.stat().st_size > 288_000_000


def test_keras_matches_reference_graph(model, reference: np.ndarray,
                                       examples: np.ndarray) -> None:
    actual = embed(model, examples)
    assert actual.shape == (5, 128) and actual.dtype == np.float32
    # The random weights give a non-trivial embedding (both signs, non-zero spread).
    assert np.std(reference) > 0.1 and (reference < 0).any() and (reference > 0).any()
    error = relative_error(actual, reference)
    print(f"\nKeras vs TF1 reference graph: max relative error {error:.3g}")
    assert error <= REL_TOLERANCE


def test_checkpoint_with_index_file_loads_the_same(vggish_checkpoint_with_index: Path,
                                                   reference: np.ndarray,
                                                   examples: np.ndarray) -> None:
    actual = embed(load_vggish(vggish_checkpoint_with_index), examples, batch_size=2)
    assert relative_error(actual, reference) <= REL_TOLERANCE


def test_legacy_fc2_relu_is_relu_of_the_embedding(model, vggish_checkpoint: Path,
                                                  examples: np.ndarray) -> None:
    legacy = load_vggish(vggish_checkpoint, legacy_fc2_relu=True)
    expected = np.maximum(embed(model, examples), 0.0)
    np.testing.assert_array_equal(embed(legacy, examples), expected)
    assert (expected == 0).any()


@pytest.mark.parametrize("count", [0, 1, 5])
def test_output_shape(model, examples: np.ndarray, count: int) -> None:
    batch = np.resize(examples, (count, 96, 64)).astype(np.float32)
    out = embed(model, batch)
    assert out.shape == (count, 128)
    assert out.dtype == np.float32
    if count:
        assert np.isfinite(out).all()


def test_model_is_a_plain_functional_model_with_fixed_example_shape() -> None:
    import keras

    model = build_vggish()
    assert isinstance(model, keras.Model)
    assert tuple(model.input_shape) == (None, 96, 64)
    assert tuple(model.output_shape) == (None, 128)
    assert model.count_params() == 72_141_184
    assert model.layers[-1].name == "fc2"
    assert model.get_layer("fc2").activation.__name__ == "linear"
    legacy = build_vggish(legacy_fc2_relu=True)
    assert legacy.layers[-1].name == "legacy_fc2_relu"


def test_embed_rejects_wrong_example_shape(model) -> None:
    with pytest.raises(ValueError, match=r"\(K, 96, 64\)"):
        embed(model, np.zeros((2, 64, 96), np.float32))


def test_missing_and_misshaped_variables_are_all_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    variables = {name: rng.standard_normal(shape).astype(np.float32)
                 for name, shape in OFFICIAL_VARIABLES.items()
                 if not name.startswith("vggish/fc")}
    variables["vggish/conv2/weights"] = np.zeros((3, 3, 64, 64), np.float32)
    variables["vggish/fc2/biases"] = np.zeros((64,), np.float32)
    path = write_official_checkpoint(tmp_path / "vggish_model.ckpt", variables,
                                     write_index=False)
    with pytest.raises(CheckpointError) as info:
        load_vggish(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "vggish/conv2/weights has shape (3, 3, 64, 64), expected (3, 3, 64, 128)" in message
    assert "vggish/fc2/biases has shape (64,), expected (128,)" in message
    for name in ("vggish/fc1/fc1_1/weights", "vggish/fc1/fc1_2/biases", "vggish/fc2/weights"):
        assert f"missing {name}" in message
    assert "missing vggish/fc1/fc1_1/weights (expected shape (12288, 4096))" in message
    assert "vggish/conv1" not in message


def test_garbage_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "vggish_model.ckpt"
    path.write_bytes(b"<html>Not Found</html>" * 50)
    with pytest.raises(CheckpointError, match="not a TensorFlow"):
        load_vggish(path)
    # A truncated checkpoint (an interrupted copy) is refused the same way.
    small = write_official_checkpoint(tmp_path / "small.ckpt", {
        "vggish/conv1/weights": np.ones((3, 3, 1, 64), np.float32)}, write_index=False)
    small.write_bytes(small.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a TensorFlow"):
        load_vggish(small)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"vggish_model\.ckpt"):
        load_vggish(tmp_path / "vggish_model.ckpt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_vggish(tmp_path)

"""VGGish as a Keras 3 model, and the loader of Google's official checkpoint.

The network is described by a table of layers (``VGGISH_LAYER_DEFS``), in the spirit of
YAMNet's ``_YAMNET_LAYER_DEFS``: the table is plain data, so the expected checkpoint
variables (names and shapes) are derived from it without TensorFlow, and the Keras model
is built from the same table, so the two can never disagree.

Structure (Google's ``vggish_slim.py``): conv 3×3 stride 1 SAME + ReLU, max-pool 2×2
stride 2 SAME; conv1 64 → pool1 → conv2 128 → pool2 → conv3/conv3_{1,2} 256 → pool3 →
conv4/conv4_{1,2} 512 → pool4 → flatten (6·4·512, channels last) → fc1/fc1_{1,2} 4096
ReLU → fc2 128, *without* activation: the raw embedding that Google's AudioSet release
was computed from. The 2017 VGGish code (copied by the original devicehive-audio-analysis)
applied a ReLU to fc2 too; ``legacy_fc2_relu=True`` reproduces that, and only that.

The checkpoint is ``vggish_model.ckpt``: one file in the TF1 Saver V1 format, variables
``vggish/<scope>/weights`` (HWIO for convolutions, (in, out) for dense layers) and
``vggish/<scope>/biases``. ``tf.train.load_checkpoint`` reads V1 files (with or without a
``checkpoint`` index file beside them).

TensorFlow and Keras are imported inside the functions that need them, so importing this
module (for the table or ``expected_variables``) is cheap.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from vggish.errors import ModelFilesError
from vggish.params import PARAMS, VGGishParams

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

log = logging.getLogger(__name__)

VARIABLE_SCOPE = "vggish"
"""Top-level variable scope of every VGGish variable in the official checkpoint."""

CHECKPOINT_FILENAME = "vggish_model.ckpt"

DEFAULT_BATCH_SIZE = 128
"""Examples per forward pass in :func:`embed`: larger batches keep both cores busy in the
big matrix products (see ``bench/embed.py``); 128 needs ~0.5 GB of activations."""

LayerKind = Literal["conv", "pool", "flatten", "dense"]


@dataclass(frozen=True)
class LayerDef:
    """One row of the layer table.

    ``scope`` is the layer's variable scope below ``vggish/`` in the checkpoint (for
    example ``conv3/conv3_1``); its last component names the Keras layer. ``size`` is
    the number of output channels (conv) or units (dense); ``None`` means the embedding
    size from the parameters. ``kernel`` and ``stride`` are square; every conv and pool
    pads SAME.
    """

    kind: LayerKind
    scope: str
    size: int | None = None
    kernel: int = 0
    stride: int = 0
    relu: bool = False

    @property
    def layer_name(self) -> str:
        return self.scope.rsplit("/", 1)[-1]

    @property
    def has_variables(self) -> bool:
        return self.kind in ("conv", "dense")


def _conv(scope: str, filters: int) -> LayerDef:
    return LayerDef("conv", scope, filters, kernel=3, stride=1, relu=True)


def _pool(scope: str) -> LayerDef:
    return LayerDef("pool", scope, kernel=2, stride=2)


def _dense(scope: str, units: int | None, relu: bool) -> LayerDef:
    return LayerDef("dense", scope, units, relu=relu)


VGGISH_LAYER_DEFS: tuple[LayerDef, ...] = (
    _conv("conv1", 64),
    _pool("pool1"),
    _conv("conv2", 128),
    _pool("pool2"),
    _conv("conv3/conv3_1", 256),
    _conv("conv3/conv3_2", 256),
    _pool("pool3"),
    _conv("conv4/conv4_1", 512),
    _conv("conv4/conv4_2", 512),
    _pool("pool4"),
    LayerDef("flatten", "flatten"),
    _dense("fc1/fc1_1", 4096, relu=True),
    _dense("fc1/fc1_2", 4096, relu=True),
    # The embedding: pre-activation, as in Google's current code and the AudioSet release.
    _dense("fc2", None, relu=False),
)

LEGACY_FC2_RELU_LAYER = "legacy_fc2_relu"
"""Name of the extra ReLU layer added by ``legacy_fc2_relu=True`` (2017 behaviour)."""


class CheckpointError(ModelFilesError, ValueError):
    """The file is not a VGGish checkpoint, or lacks / mis-shapes some of its variables."""


def expected_variables(params: VGGishParams = PARAMS) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every variable the network needs, in table order.

    Pure Python: derived by walking the layer table over the input shape
    (num_frames, num_bands, 1), so it is available without TensorFlow.
    """
    height, width, channels = params.num_frames, params.num_bands, 1
    flat: int | None = None
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in VGGISH_LAYER_DEFS:
        prefix = f"{VARIABLE_SCOPE}/{layer.scope}"
        size = params.embedding_size if layer.size is None else layer.size
        if layer.kind == "conv":
            shapes[f"{prefix}/weights"] = (layer.kernel, layer.kernel, channels, size)
            shapes[f"{prefix}/biases"] = (size,)
            channels = size  # stride 1, SAME: spatial size unchanged
        elif layer.kind == "pool":
            height = math.ceil(height / layer.stride)  # SAME padding
            width = math.ceil(width / layer.stride)
        elif layer.kind == "flatten":
            flat = height * width * channels
        elif layer.kind == "dense":
            if flat is None:
                raise CheckpointError(f"layer table: dense layer {layer.scope} before flatten")
            shapes[f"{prefix}/weights"] = (flat, size)
            shapes[f"{prefix}/biases"] = (size,)
            flat = size
    return shapes


def _open_checkpoint(checkpoint_path: str | os.PathLike[str], params: VGGishParams = PARAMS):
    """Open an official-format checkpoint and check every VGGish variable's name and shape.

    Returns the TensorFlow checkpoint reader; no variable data has been read yet, so the
    caller can copy variables one at a time (the file is 291 MB). Raises
    ``FileNotFoundError`` when the path is not a file, and :class:`CheckpointError` when
    it is not a TensorFlow checkpoint or when variables are missing or mis-shaped (all
    problems are listed, with expected and found shapes).
    """
    path = Path(checkpoint_path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected the checkpoint file itself "
                              f"(e.g. {path / CHECKPOINT_FILENAME})")
    if not path.is_file():
        raise FileNotFoundError(f"VGGish checkpoint not found: {path}")

    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(path))
        found_shapes = reader.get_variable_to_shape_map()
        found_dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a TensorFlow (Saver V1) checkpoint: {detail}") from None

    problems: list[str] = []
    for name, shape in expected_variables(params).items():
        if name not in found_shapes:
            problems.append(f"missing {name} (expected shape {shape})")
            continue
        found = tuple(int(d) for d in found_shapes[name])
        if found != shape:
            problems.append(f"{name} has shape {found}, expected {shape}")
        dtype = found_dtypes[name]
        if not dtype.is_floating:
            problems.append(f"{name} has dtype {dtype.name}, expected float32")
    if problems:
        raise CheckpointError(f"{path}: not a usable VGGish checkpoint: " + "; ".join(problems))

    unused = sorted(set(found_shapes) - set(expected_variables(params)))
    if unused:
        log.debug("%s: ignoring %d variables VGGish does not use: %s", path, len(unused),
                  ", ".join(unused[:10]))
    return reader


def _read_variable(reader, path: str | os.PathLike[str], name: str) -> np.ndarray:
    import tensorflow as tf

    try:
        return np.asarray(reader.get_tensor(name), dtype=np.float32)
    except tf.errors.OpError as exc:  # truncated or corrupted payload
        raise CheckpointError(f"{path}: cannot read variable data: "
                              f"{str(exc).strip().splitlines()[0]}") from None


def read_checkpoint(checkpoint_path: str | os.PathLike[str],
                    params: VGGishParams = PARAMS) -> dict[str, np.ndarray]:
    """Read and check every VGGish variable of an official-format checkpoint.

    Returns float32 arrays keyed by official variable name (errors as
    :func:`_open_checkpoint`). Variables the network doesn't use are ignored.
    """
    reader = _open_checkpoint(checkpoint_path, params)
    return {name: _read_variable(reader, checkpoint_path, name)
            for name in expected_variables(params)}


def build_vggish(params: VGGishParams = PARAMS, legacy_fc2_relu: bool = False,
                 initializer: str = "glorot_uniform") -> keras.Model:
    """Build the (untrained) VGGish Keras model from the layer table.

    A plain functional model with a fixed example shape: input ``(None, 96, 64)``
    float32 log-mel examples, output ``(None, 128)`` raw embeddings (fc2 without
    activation). ``legacy_fc2_relu=True`` appends the ReLU that the 2017 code applied
    to fc2 (the original devicehive-audio-analysis); don't use it for AudioSet-compatible
    embeddings. Suitable for ``tf.lite.TFLiteConverter.from_keras_model``.
    ``initializer="zeros"`` skips drawing 72 M random numbers when the weights are about
    to be overwritten by a checkpoint (faster, and no transient copies in memory).
    """
    import keras

    inputs = keras.Input(shape=(params.num_frames, params.num_bands), dtype="float32",
                         name="input_features")
    net = keras.layers.Reshape((params.num_frames, params.num_bands, 1), name="to_nhwc")(inputs)
    for layer in VGGISH_LAYER_DEFS:
        activation = "relu" if layer.relu else None
        if layer.kind == "conv":
            net = keras.layers.Conv2D(layer.size, layer.kernel, strides=layer.stride,
                                      padding="same", activation=activation,
                                      kernel_initializer=initializer,
                                      name=layer.layer_name)(net)
        elif layer.kind == "pool":
            net = keras.layers.MaxPooling2D(layer.kernel, strides=layer.stride, padding="same",
                                            name=layer.layer_name)(net)
        elif layer.kind == "flatten":
            # Channels-last flattening, as slim.flatten did on NHWC: (h, w, c) order.
            net = keras.layers.Flatten(name=layer.layer_name)(net)
        elif layer.kind == "dense":
            units = params.embedding_size if layer.size is None else layer.size
            net = keras.layers.Dense(units, activation=activation,
                                     kernel_initializer=initializer,
                                     name=layer.layer_name)(net)
    name = "vggish"
    if legacy_fc2_relu:
        net = keras.layers.ReLU(name=LEGACY_FC2_RELU_LAYER)(net)
        name = "vggish_legacy_fc2_relu"
    return keras.Model(inputs, net, name=name)


def set_vggish_weights(model: keras.Model, variables: dict[str, np.ndarray]) -> None:
    """Copy official-named variables (``vggish/<scope>/{weights,biases}``) into the model.

    Keras' Conv2D kernels are HWIO and Dense kernels (in, out), the checkpoint's layout,
    so no transposition is needed.
    """
    for layer in VGGISH_LAYER_DEFS:
        if layer.has_variables:
            prefix = f"{VARIABLE_SCOPE}/{layer.scope}"
            model.get_layer(layer.layer_name).set_weights(
                [variables[f"{prefix}/weights"], variables[f"{prefix}/biases"]])


def load_vggish(checkpoint_path: str | os.PathLike[str], legacy_fc2_relu: bool = False,
                params: VGGishParams = PARAMS) -> keras.Model:
    """Build VGGish and load Google's ``vggish_model.ckpt`` (or any file in its format).

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` for a
    file that is not a VGGish checkpoint (naming every missing or mis-shaped variable).
    Checks the file before building the model, so errors come quickly. Variables are
    copied one layer at a time into a zero-initialised model, so peak memory holds the
    weights about once rather than three times (checkpoint dict, random init, model).
    """
    reader = _open_checkpoint(checkpoint_path, params)
    model = build_vggish(params, legacy_fc2_relu=legacy_fc2_relu, initializer="zeros")
    for layer in VGGISH_LAYER_DEFS:
        if layer.has_variables:
            prefix = f"{VARIABLE_SCOPE}/{layer.scope}"
            model.get_layer(layer.layer_name).set_weights(
                [_read_variable(reader, checkpoint_path, f"{prefix}/weights"),
                 _read_variable(reader, checkpoint_path, f"{prefix}/biases")])
    log.info("loaded VGGish checkpoint %s", checkpoint_path)
    return model


def embed(model: keras.Model, examples: np.ndarray,
          batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Run VGGish on log-mel examples (K, 96, 64) and return float32 embeddings (K, 128).

    K = 0 gives an empty (0, 128) array without running the network.
    """
    examples = np.asarray(examples, dtype=np.float32)
    in_shape = tuple(model.input_shape[1:])
    out_size = int(model.output_shape[-1])
    if examples.ndim != 3 or examples.shape[1:] != in_shape:
        raise ValueError(f"expected examples of shape (K, {in_shape[0]}, {in_shape[1]}), "
                         f"got {examples.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(examples) == 0:
        return np.zeros((0, out_size), dtype=np.float32)
    # predict_on_batch runs Keras' cached graph function (traced once per model, shape
    # generic after the first retrace): measured faster than eager calls, XLA
    # (jit_compile) and model.predict's data pipeline on this machine (bench/embed.py).
    outputs = [np.asarray(model.predict_on_batch(examples[start:start + batch_size]))
               for start in range(0, len(examples), batch_size)]
    return np.concatenate(outputs).astype(np.float32, copy=False)

"""Frame-level classifiers: a registry of name → (hyper-parameter dataclass, builder).

Every model is a Keras model called on ``(frames, num_frames)``: ``frames`` float32
(B, T, 128) already dequantised (and L2-normalised when the input contract says so),
zero beyond ``num_frames``; it returns (B, num_classes) probabilities. Every pooling
masks by ``num_frames``, so T (the padding) never changes the output: a batch padded to
its longest clip and the same batch padded to 300 frames give the same scores.

YouTube-8M models (``google/youtube-8m`` ``frame_level_models.py``), re-implemented:

* ``FrameLevelLogisticModel`` (``Logistic``): mean over frames → sigmoid dense.
* ``DbofModel`` (``Dbof``): 30 frames sampled with replacement (training only; at
  inference every valid frame is used, so scores are deterministic), input BN,
  cluster layer + BN + activation, max-pool, hidden layer + BN + activation, MoE.
* ``LstmModel`` (``Lstm``): stacked LSTMs, final state of the top layer → MoE.
* ``MoeModel``: the mixture-of-experts head (also usable alone on mean-pooled frames).

Beyond them:

* ``AttentionModel`` (``Attention``): per-frame MLP (dense + BN + ReLU + dropout) and
  multi-level attention pooling (Kong et al. 2018, Yu et al. 2018): at each chosen
  level, per class a softmax-over-frames attention weights a per-frame sigmoid
  classifier; the levels' pooled vectors are concatenated into a final sigmoid layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MODELS", "ModelSpec", "build_model", "canonical_name", "make_hparams"]


@dataclass(frozen=True)
class LogisticHParams:
    l2_penalty: float = 1e-8


@dataclass(frozen=True)
class MoeHParams:
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8


@dataclass(frozen=True)
class DbofHParams:
    dbof_cluster_size: int = 8192
    dbof_hidden_size: int = 1024
    iterations: int = 30  # frames sampled per clip during training
    dbof_activation: str = "relu6"  # the 2017 code; current YouTube-8M uses sigmoid
    # Batch-norm moving-average momentum. Keras' 0.99 leaves the moving statistics far from
    # the data after the few hundred steps bal_train allows (0.99^78 ≈ 0.46 of the initial
    # values remain after 2 epochs), which wrecks inference; 0.9 converges in ~40 steps.
    bn_momentum: float = 0.9
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8


@dataclass(frozen=True)
class LstmHParams:
    lstm_cells: int = 1024
    lstm_layers: int = 2
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8


@dataclass(frozen=True)
class AttentionHParams:
    hidden_size: int = 512
    hidden_layers: int = 3
    dropout: float = 0.4
    attention_levels: tuple[int, ...] = (2, 3)  # 1-based hidden layers pooled by attention


def _keras():
    import keras

    return keras


def _mask(num_frames, width, dtype="float32"):
    import tensorflow as tf

    return tf.sequence_mask(num_frames, width, dtype=dtype)


def _moe_layers(keras, num_classes: int, k: int, l2: float):
    reg = keras.regularizers.L2(l2) if l2 else None
    gates = keras.layers.Dense(num_classes * (k + 1), kernel_regularizer=reg, name="gates")
    experts = keras.layers.Dense(num_classes * k, kernel_regularizer=reg, name="experts")
    return gates, experts


def _moe_apply(gates_layer, experts_layer, x, num_classes: int, k: int):
    import tensorflow as tf

    g = tf.nn.softmax(tf.reshape(gates_layer(x), [-1, num_classes, k + 1]), axis=-1)
    e = tf.sigmoid(tf.reshape(experts_layer(x), [-1, num_classes, k]))
    return tf.reduce_sum(g[:, :, :k] * e, axis=-1)


def _mean_pool(frames, num_frames):
    import tensorflow as tf

    denom = tf.maximum(tf.cast(num_frames, frames.dtype), 1.0)[:, None]
    return tf.reduce_sum(frames, axis=1) / denom


def _make_classes():
    """Define the Keras classes lazily so importing this module never imports TF."""
    keras = _keras()
    import tensorflow as tf

    class FrameLevelLogistic(keras.Model):
        def __init__(self, num_classes: int, hp: LogisticHParams, **kw):
            super().__init__(**kw)
            reg = keras.regularizers.L2(hp.l2_penalty) if hp.l2_penalty else None
            self.out = keras.layers.Dense(num_classes, activation="sigmoid",
                                          kernel_regularizer=reg, name="logistic")

        def call(self, inputs, training=False):
            frames, num_frames = inputs
            return self.out(_mean_pool(frames, num_frames))

    class Moe(keras.Model):
        def __init__(self, num_classes: int, hp: MoeHParams, **kw):
            super().__init__(**kw)
            self.num_classes, self.k = num_classes, hp.moe_num_mixtures
            self.gates, self.experts = _moe_layers(keras, num_classes, self.k, hp.moe_l2)

        def call(self, inputs, training=False):
            frames, num_frames = inputs
            return _moe_apply(self.gates, self.experts, _mean_pool(frames, num_frames),
                              self.num_classes, self.k)

    def _act(name: str):
        if name == "relu6":
            return tf.nn.relu6
        if name in ("sigmoid", "relu"):
            return getattr(tf.nn, name)
        raise ValueError(f"unknown dbof_activation {name!r} (relu6, sigmoid, relu)")

    class Dbof(keras.Model):
        def __init__(self, num_classes: int, hp: DbofHParams, **kw):
            super().__init__(**kw)
            self.hp, self.num_classes = hp, num_classes
            self.act = _act(hp.dbof_activation)
            bn = hp.bn_momentum
            self.input_bn = keras.layers.BatchNormalization(momentum=bn, name="input_bn")
            self.cluster = keras.layers.Dense(hp.dbof_cluster_size, use_bias=False,
                                              name="cluster")
            self.cluster_bn = keras.layers.BatchNormalization(momentum=bn, name="cluster_bn")
            self.hidden = keras.layers.Dense(hp.dbof_hidden_size, use_bias=False,
                                             name="hidden")
            self.hidden_bn = keras.layers.BatchNormalization(momentum=bn, name="hidden_bn")
            self.gates, self.experts = _moe_layers(keras, num_classes, hp.moe_num_mixtures,
                                                   hp.moe_l2)

        def call(self, inputs, training=False):
            frames, num_frames = inputs
            n = tf.maximum(num_frames, 1)
            if training:
                # YouTube-8M SampleRandomFrames: index floor(u · num_frames), u ~ U[0, 1).
                u = tf.random.uniform([tf.shape(frames)[0], self.hp.iterations])
                idx = tf.cast(u * tf.cast(n, tf.float32)[:, None], tf.int32)
                x = tf.gather(frames, idx, batch_dims=1)
                valid = tf.ones(tf.shape(idx), tf.float32)
            else:
                x = frames
                valid = _mask(num_frames, tf.shape(frames)[1])
            b, t = tf.shape(x)[0], tf.shape(x)[1]
            flat = tf.reshape(x, [-1, x.shape[-1]])
            flat_valid = tf.reshape(valid, [-1])
            # Batch norm statistics over valid frames only (padding would bias them).
            keep = tf.where(flat_valid > 0)[:, 0]
            h = tf.gather(flat, keep)
            h = self.input_bn(h, training=training)
            h = self.act(self.cluster_bn(self.cluster(h), training=training))
            h = tf.scatter_nd(keep[:, None], h, [b * t, h.shape[-1]])
            h = tf.reshape(h, [b, t, -1])
            h = tf.where(tf.reshape(flat_valid, [b, t, 1]) > 0, h, tf.fill(tf.shape(h), -1e9))
            pooled = tf.reduce_max(h, axis=1)
            pooled = tf.where(pooled < -1e8, tf.zeros_like(pooled), pooled)
            hidden = self.act(self.hidden_bn(self.hidden(pooled), training=training))
            return _moe_apply(self.gates, self.experts, hidden, self.num_classes,
                              self.hp.moe_num_mixtures)

    class Lstm(keras.Model):
        def __init__(self, num_classes: int, hp: LstmHParams, **kw):
            super().__init__(**kw)
            self.hp, self.num_classes = hp, num_classes
            self.lstms = [keras.layers.LSTM(hp.lstm_cells, return_sequences=i < hp.lstm_layers - 1,
                                            name=f"lstm_{i}") for i in range(hp.lstm_layers)]
            self.gates, self.experts = _moe_layers(keras, num_classes, hp.moe_num_mixtures,
                                                   hp.moe_l2)

        def call(self, inputs, training=False):
            frames, num_frames = inputs
            mask = tf.sequence_mask(num_frames, tf.shape(frames)[1])
            h = frames
            for layer in self.lstms:
                h = layer(h, mask=mask, training=training)
            return _moe_apply(self.gates, self.experts, h, self.num_classes,
                              self.hp.moe_num_mixtures)

    class Attention(keras.Model):
        def __init__(self, num_classes: int, hp: AttentionHParams, **kw):
            super().__init__(**kw)
            self.hp = hp
            if not hp.attention_levels or any(
                    not 1 <= lv <= hp.hidden_layers for lv in hp.attention_levels):
                raise ValueError(f"attention_levels must be in 1..{hp.hidden_layers}")
            self.dense = [keras.layers.Dense(hp.hidden_size, name=f"fc{i + 1}")
                          for i in range(hp.hidden_layers)]
            self.bns = [keras.layers.BatchNormalization(name=f"bn{i + 1}")
                        for i in range(hp.hidden_layers)]
            self.drops = [keras.layers.Dropout(hp.dropout) for _ in range(hp.hidden_layers)]
            self.levels = tuple(hp.attention_levels)
            self.att = [keras.layers.Dense(num_classes, name=f"att{lv}") for lv in self.levels]
            self.cla = [keras.layers.Dense(num_classes, activation="sigmoid", name=f"cla{lv}")
                        for lv in self.levels]
            self.final = (keras.layers.Dense(num_classes, activation="sigmoid", name="final")
                          if len(hp.attention_levels) > 1 else None)

        def call(self, inputs, training=False):
            frames, num_frames = inputs
            b, t = tf.shape(frames)[0], tf.shape(frames)[1]
            valid = tf.sequence_mask(num_frames, t)
            flat_valid = tf.reshape(valid, [-1])
            keep = tf.where(flat_valid)[:, 0]
            h = tf.gather(tf.reshape(frames, [-1, frames.shape[-1]]), keep)
            pooled = []
            for i in range(self.hp.hidden_layers):
                h = tf.nn.relu(self.bns[i](self.dense[i](h), training=training))
                h = self.drops[i](h, training=training)
                if i + 1 in self.levels:
                    j = self.levels.index(i + 1)
                    logits = self.att[j](h)
                    cla = self.cla[j](h)
                    width = logits.shape[-1]
                    logits = tf.reshape(tf.scatter_nd(keep[:, None], logits, [b * t, width]),
                                        [b, t, width])
                    cla = tf.reshape(tf.scatter_nd(keep[:, None], cla, [b * t, width]),
                                     [b, t, width])
                    logits = tf.where(valid[:, :, None], logits, -1e9)
                    weights = tf.nn.softmax(logits, axis=1)
                    pooled.append(tf.reduce_sum(weights * cla, axis=1))
            if self.final is None:
                return tf.clip_by_value(pooled[0], 0.0, 1.0)
            return self.final(tf.concat(pooled, axis=-1))

    return {"FrameLevelLogisticModel": FrameLevelLogistic, "MoeModel": Moe,
            "DbofModel": Dbof, "LstmModel": Lstm, "AttentionModel": Attention}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hparams: type
    description: str


MODELS: dict[str, ModelSpec] = {
    "FrameLevelLogisticModel": ModelSpec("FrameLevelLogisticModel", LogisticHParams,
                                         "mean over frames → logistic"),
    "MoeModel": ModelSpec("MoeModel", MoeHParams, "mean over frames → mixture of experts"),
    "DbofModel": ModelSpec("DbofModel", DbofHParams, "deep bag of frames → MoE"),
    "LstmModel": ModelSpec("LstmModel", LstmHParams, "stacked LSTM → MoE"),
    "AttentionModel": ModelSpec("AttentionModel", AttentionHParams,
                                "frame MLP + multi-level attention pooling"),
}
SHORT_NAMES = {"Logistic": "FrameLevelLogisticModel", "Moe": "MoeModel", "Dbof": "DbofModel",
               "Lstm": "LstmModel", "Attention": "AttentionModel"}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


def canonical_name(name: str) -> str:
    if name in MODELS:
        return name
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    raise UnknownModelError(
        f"unknown model {name!r}; known: {', '.join(list(MODELS) + list(SHORT_NAMES))}")


def make_hparams(name: str, values: dict[str, Any] | None = None):
    """The model's hyper-parameter dataclass from a dict; unknown keys are ignored so one
    flag set (e.g. ``--lstm_cells``) can serve every model."""
    cls = MODELS[canonical_name(name)].hparams
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in (values or {}).items():
        if key in fields and value is not None:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def build_model(name: str, num_classes: int, hparams: Any | None = None,
                feature_size: int = 128, build: bool = True):
    """Instantiate (and build, so weights exist) a registered model."""
    import numpy as np

    canonical = canonical_name(name)
    hp = hparams if hparams is not None else MODELS[canonical].hparams()
    classes: dict[str, Callable[..., Any]] = _make_classes()
    model = classes[canonical](num_classes, hp, name=canonical)
    if build:
        model((np.zeros((1, 1, feature_size), np.float32), np.ones((1,), np.int32)))
    return model

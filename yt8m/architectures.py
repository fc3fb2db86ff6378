"""The Keras classes of the frame-level classifiers registered in ``yt8m.models``.

This module imports TensorFlow at the top, so only ``yt8m.models`` imports it, and only
when a model is built: importing the registry (``--help``, the daemon's start) stays
free of TensorFlow. What each model does is described in ``yt8m.models``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from yt8m.model_hparams import (
    AttentionHParams,
    DbofHParams,
    LogisticHParams,
    LstmHParams,
    MoeHParams,
)

__all__ = ["Attention", "Dbof", "FrameLevelLogistic", "Lstm", "Moe"]


def _mask(num_frames, width, dtype="float32"):
    return tf.sequence_mask(num_frames, width, dtype=dtype)


def _moe_layers(num_classes: int, k: int, l2: float):
    reg = keras.regularizers.L2(l2) if l2 else None
    gates = keras.layers.Dense(num_classes * (k + 1), kernel_regularizer=reg, name="gates")
    experts = keras.layers.Dense(num_classes * k, kernel_regularizer=reg, name="experts")
    return gates, experts


def _moe_apply(gates_layer, experts_layer, x, num_classes: int, k: int):
    g = tf.nn.softmax(tf.reshape(gates_layer(x), [-1, num_classes, k + 1]), axis=-1)
    e = tf.sigmoid(tf.reshape(experts_layer(x), [-1, num_classes, k]))
    return tf.reduce_sum(g[:, :, :k] * e, axis=-1)


def _mean_pool(frames, num_frames):
    denom = tf.maximum(tf.cast(num_frames, frames.dtype), 1.0)[:, None]
    return tf.reduce_sum(frames, axis=1) / denom


def _act(name: str):
    if name == "relu6":
        return tf.nn.relu6
    if name in ("sigmoid", "relu"):
        return getattr(tf.nn, name)
    raise ValueError(f"unknown dbof_activation {name!r} (relu6, sigmoid, relu)")


class FrameLevelLogistic(keras.Model):
    """Mean over the valid frames → one sigmoid dense layer."""

    def __init__(self, num_classes: int, hp: LogisticHParams, **kw):
        super().__init__(**kw)
        reg = keras.regularizers.L2(hp.l2_penalty) if hp.l2_penalty else None
        self.out = keras.layers.Dense(num_classes, activation="sigmoid",
                                      kernel_regularizer=reg, name="logistic")

    def call(self, inputs, training=False):
        frames, num_frames = inputs
        return self.out(_mean_pool(frames, num_frames))


class Moe(keras.Model):
    """Mean over the valid frames → the mixture-of-experts head."""

    def __init__(self, num_classes: int, hp: MoeHParams, **kw):
        super().__init__(**kw)
        self.num_classes, self.k = num_classes, hp.moe_num_mixtures
        self.gates, self.experts = _moe_layers(num_classes, self.k, hp.moe_l2)

    def call(self, inputs, training=False):
        frames, num_frames = inputs
        return _moe_apply(self.gates, self.experts, _mean_pool(frames, num_frames),
                          self.num_classes, self.k)


class Dbof(keras.Model):
    """Deep bag of frames: sampled frames → cluster layer → max-pool → hidden → MoE."""

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
        self.gates, self.experts = _moe_layers(num_classes, hp.moe_num_mixtures,
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
    """Stacked LSTMs masked by ``num_frames``; the top layer's final state → MoE."""

    def __init__(self, num_classes: int, hp: LstmHParams, **kw):
        super().__init__(**kw)
        self.hp, self.num_classes = hp, num_classes
        self.lstms = [keras.layers.LSTM(hp.lstm_cells, return_sequences=i < hp.lstm_layers - 1,
                                        name=f"lstm_{i}") for i in range(hp.lstm_layers)]
        self.gates, self.experts = _moe_layers(num_classes, hp.moe_num_mixtures,
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
    """Per-frame MLP with attention pooling at the chosen hidden layers."""

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

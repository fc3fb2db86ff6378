"""The loss, and what happens at the end of each epoch: weight averaging (SWA),
validation, early stopping, the checkpoint, the progress line and TensorBoard."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.training.checkpoints import (
    BEST_WEIGHTS,
    SWA_WEIGHTS,
    save_checkpoint,
    save_weights_atomic,
)


def cross_entropy(y_true, y_pred):
    """YouTube-8M's loss: binary cross-entropy on probabilities with ε = 1e-5, summed
    over classes (the batch mean is taken by Keras)."""
    import tensorflow as tf

    eps = 1e-5
    y_true = tf.cast(y_true, y_pred.dtype)
    return -tf.reduce_sum(y_true * tf.math.log(y_pred + eps)
                          + (1.0 - y_true) * tf.math.log(1.0 - y_pred + eps), axis=-1)


def cross_entropy_np(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    eps = 1e-5
    return -np.sum(labels * np.log(pred + eps) + (1 - labels) * np.log(1 - pred + eps), axis=1)


def _swa_update(model, averaged, state: dict[str, Any], out_dir: Path):
    """Fold this epoch's weights (batch-norm statistics included) into the running mean
    and checkpoint it; the average is then the model that is validated and kept."""
    n = state.get("swa_count", 0)
    current = model.get_weights()
    averaged.set_weights(current if n == 0 else [
        a + (w - a) / (n + 1) for a, w in zip(averaged.get_weights(), current, strict=True)])
    state["swa_count"] = n + 1
    save_weights_atomic(averaged, out_dir / SWA_WEIGHTS)
    return averaged


def _validate(scored, val_ds, val_labels, logs: dict[str, Any], metric_name: str, best):
    """(validation scores, the monitored metric, whether it beats ``best``)."""
    from yt8m import metrics as M

    pred = scored.predict(val_ds, verbose=0)
    val = M.evaluate(pred, val_labels)
    val["loss"] = float(np.mean(cross_entropy_np(val_labels, pred)))
    for k in ("hit_at_one", "gap", "map", "auc", "loss"):
        logs[f"val_{k}"] = val[k]
    metric = val[metric_name]
    better = (metric < best) if metric_name == "loss" else (metric > best)
    return val, metric, better


def _progress_line(epoch: int, opts, state: dict[str, Any], logs: dict[str, Any], val) -> str:
    scores = ("(refit on all clips, no validation)" if val is None else
              f"val_loss {val['loss']:.4f} val_hit@1 {val['hit_at_one']:.4f} "
              f"val_gap {val['gap']:.4f} val_mAP {val['map']:.4f} "
              f"val_auc {val['auc']:.4f} best {opts.early_stopping_metric} "
              f"{state['best']:.4f}@{state['best_epoch']}")
    return (f"epoch {epoch + 1}/{opts.num_epochs} step {state['steps']} "
            f"loss {logs.get('loss', float('nan')):.4f} lr {logs['learning_rate']:.3g} "
            f"{scores} [{state['train_seconds']:.0f}s]")


def make_epoch_callback(model, optimizer, out_dir: Path, val_ds, val_labels, opts,
                        state: dict[str, Any], started: float, averaged=None):
    """Validation metrics, checkpointing, early stopping and progress, once per epoch."""
    import keras

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            logs["learning_rate"] = float(np.asarray(optimizer.learning_rate))
            scored = model
            if averaged is not None and epoch + 1 >= opts.swa_start_epoch:
                scored = _swa_update(model, averaged, state, out_dir)
            if val_ds is None:  # refit: no validation, the latest weights are the result
                val, metric, better = None, float(epoch + 1), True
            else:
                val, metric, better = _validate(scored, val_ds, val_labels, logs,
                                                 opts.early_stopping_metric, state["best"])
            if state["best"] is None or better or math.isnan(state["best"]):
                state.update(best=metric, best_epoch=epoch + 1, wait=0)
                save_weights_atomic(scored, out_dir / BEST_WEIGHTS)
                state["best_val"] = val
            else:
                state["wait"] += 1
            state["epoch"] = epoch + 1
            state["steps"] = int(optimizer.iterations.numpy())
            state["train_seconds"] = state["train_seconds_before"] + time.monotonic() - started
            if val_ds is not None and state["wait"] >= opts.early_stopping_patience:
                state["stopped_early"] = True
                self.model.stop_training = True
            save_checkpoint(model, optimizer, out_dir, state)
            if not opts.quiet:
                print(_progress_line(epoch, opts, state, logs, val), flush=True)

    return EpochEnd()


def scalar_metadata():
    """The SummaryMetadata TensorBoard's scalar plugin expects (built from TF's own protos,
    so writing event files does not need the ``tensorboard`` package installed)."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    meta.data_class = summary_pb2.DATA_CLASS_SCALAR
    return meta.SerializeToString()


def make_tensorboard(log_dir: Path, optimizer, every_steps: int):
    """TensorBoard event files: ``train/loss`` every ``every_steps`` steps, and per epoch
    ``epoch/*`` (train loss, learning rate, validation metrics)."""
    import keras
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    meta = scalar_metadata()

    def write(tag: str, value: float, step: int) -> None:
        with writer.as_default():
            tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                             metadata=meta)

    class Board(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(optimizer.iterations.numpy())
            if logs and "loss" in logs and (step % every_steps == 0 or step == 1):
                write("train/loss", logs["loss"], step)

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                write(f"epoch/{key}", value, epoch + 1)
            writer.flush()

        def on_train_end(self, logs=None):
            writer.flush()

    return Board()

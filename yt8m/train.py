"""Train a frame-level classifier on AudioSet embeddings (``python -m yt8m.train``).

Accepts the seed's YouTube-8M command line verbatim, e.g.::

    python -m yt8m.train --train_data_pattern=/path/bal_train/*.tfrecord --num_epochs=100 \\
        --learning_rate_decay_examples=400000 --feature_names=audio_embedding \\
        --feature_sizes=128 --frame_features --batch_size=512 --num_classes=527 \\
        --train_dir=runs/lstm --model=LstmModel --lstm_cells=256 --base_learning_rate=0.001

What happens:

* The training files are decoded once into memory (uint8, cached on disk under
  ``--data_cache_dir``); ``--validation_fraction`` of the clips (seeded) is held out for
  early stopping and model selection. The eval split is never looked at here.
* ``--validation_fraction=0`` (the refit step) trains on every clip for exactly
  ``--num_epochs`` epochs, no early stopping, and the final weights are the result: use it
  with the epoch count a run with a validation split chose (``best_epoch`` in its
  ``provenance.json``).
* ``--swa_start_epoch=S`` (stochastic weight averaging, Izmailov et al. 2018): from epoch
  S on, the weights at the end of each epoch (batch-norm statistics included) are
  averaged; validation, early stopping and ``best.weights.h5`` then use the averaged
  model, which is checkpointed as ``swa.weights.h5`` for resuming.
* Each epoch ends with a validation pass (hit@1, GAP, mAP, AUC), a checkpoint of the
  model *and* optimizer *and* early-stopping state (``last.*``), and, when the monitored
  metric improved, ``best.weights.h5``. Rerunning the same command resumes from the last
  checkpoint; ``--start_new_model`` discards it.
* TensorBoard event files go to ``<train_dir>/logs`` (loss per 10 steps and per epoch,
  learning rate, validation metrics). ``model_flags.json`` (all flags + the model config
  with its input contract) and ``provenance.json`` are written beside the checkpoints.
* ``--distribution_strategy mirrored`` replicates over the local GPUs (CPU when none);
  ``multi_worker`` uses ``tf.distribute.MultiWorkerMirroredStrategy`` configured by the
  ``TF_CONFIG`` environment variable (see docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.paths import PROJECT_ROOT

logger = logging.getLogger("yt8m.train")

DEFAULT_CACHE_DIR = PROJECT_ROOT / "runs" / "cache"
CHECKPOINT_WEIGHTS = "last.weights.h5"
CHECKPOINT_OPTIMIZER = "last.optimizer.npz"
CHECKPOINT_STATE = "last.state.json"
BEST_WEIGHTS = "best.weights.h5"
SWA_WEIGHTS = "swa.weights.h5"
FLAGS_FILE = "model_flags.json"
PROVENANCE_FILE = "provenance.json"
LOG_DIR = "logs"
METRIC_CHOICES = ("map", "hit_at_one", "gap", "auc", "loss")


class TrainError(RuntimeError):
    """A training run cannot start (bad flags, incompatible checkpoint, no data)."""


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "t", "yes", "y"):
        return True
    if v in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def _bool_flag(p: argparse.ArgumentParser, name: str, default: bool | None, help_: str) -> None:
    # absl style: `--flag`, `--flag=true`, `--flag=false`, plus `--noflag`.
    p.add_argument(f"--{name}", type=str2bool, nargs="?", const=True, default=default, help=help_)
    p.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m yt8m.train",
        description="Train a YouTube-8M style frame-level classifier on AudioSet embeddings.")
    g = p.add_argument_group("data (YouTube-8M flags)")
    g.add_argument("--train_data_pattern", required=True,
                   help="glob(s) of training TFRecords, comma separated")
    g.add_argument("--train_dir", required=True, help="checkpoints, logs and flags go here")
    g.add_argument("--feature_names", default="audio_embedding")
    g.add_argument("--feature_sizes", default="128")
    _bool_flag(g, "frame_features", True, "frame-level features (the only kind supported)")
    g.add_argument("--num_classes", type=int, default=527)
    g.add_argument("--max_frames", type=int, default=300)
    g.add_argument("--validation_data_pattern", default=None,
                   help="validation TFRecords (default: carve --validation_fraction from train)")
    g.add_argument("--validation_fraction", type=float, default=0.1,
                   help="share of the training clips held out for early stopping; 0 trains "
                        "on all of them for exactly --num_epochs (the refit step)")
    g.add_argument("--refit_epochs_from", default=None, metavar="TRAIN_DIR",
                   help="refit step: --validation_fraction=0 and --num_epochs = the best "
                        "epoch recorded in TRAIN_DIR/provenance.json (a finished run of the "
                        "same configuration with a validation split)")
    g.add_argument("--reader_on_error", choices=("skip", "raise"), default="skip",
                   help="malformed records: skip them with a counted warning, or fail")
    g.add_argument("--data_cache_dir", default=str(DEFAULT_CACHE_DIR),
                   help="decoded-data cache ('' disables)")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="FrameLevelLogisticModel",
                   help="FrameLevelLogisticModel|DbofModel|LstmModel|MoeModel|AttentionModel "
                        "(short names Logistic, Dbof, Lstm, Moe, Attention)")
    _bool_flag(m, "l2_normalize", None,
               "L2-normalise each frame (default: true, as YouTube-8M; false for Attention)")
    m.add_argument("--l2_penalty", type=float, default=None, help="Logistic weight decay")
    m.add_argument("--lstm_cells", type=int, default=None)
    m.add_argument("--lstm_layers", type=int, default=None)
    m.add_argument("--moe_num_mixtures", type=int, default=None)
    m.add_argument("--dbof_cluster_size", type=int, default=None)
    m.add_argument("--dbof_hidden_size", type=int, default=None)
    m.add_argument("--dbof_activation", default=None)
    m.add_argument("--iterations", type=int, default=None, help="DBoF frames sampled per clip")
    m.add_argument("--hidden_size", type=int, default=None)
    m.add_argument("--hidden_layers", type=int, default=None)
    m.add_argument("--dropout", type=float, default=None)
    m.add_argument("--attention_levels", default=None, help="e.g. 2,3")
    o = p.add_argument_group("optimisation")
    o.add_argument("--batch_size", type=int, default=1024)
    o.add_argument("--num_epochs", type=int, default=5)
    o.add_argument("--base_learning_rate", type=float, default=0.01)
    o.add_argument("--learning_rate_decay", type=float, default=0.95)
    o.add_argument("--learning_rate_decay_examples", type=int, default=4000000)
    o.add_argument("--optimizer", default="AdamOptimizer", choices=("AdamOptimizer", "Adam"))
    o.add_argument("--clip_gradient_norm", type=float, default=1.0)
    o.add_argument("--mixup_alpha", type=float, default=0.0,
                   help="mixup Beta(α, α) between clips of a batch (0 disables)")
    o.add_argument("--swa_start_epoch", type=int, default=0,
                   help="average the weights of every epoch from this one on (1-based; "
                        "0 disables) and validate/keep the average")
    o.add_argument("--early_stopping_patience", type=int, default=5,
                   help="epochs without improvement of the validation metric before stopping")
    o.add_argument("--early_stopping_metric", choices=METRIC_CHOICES, default="map")
    o.add_argument("--steps_per_epoch", type=int, default=None, help="cap (tests)")
    o.add_argument("--seed", type=int, default=1)
    r = p.add_argument_group("run")
    _bool_flag(r, "start_new_model", False, "discard checkpoints in --train_dir and start over")
    r.add_argument("--distribution_strategy", choices=("none", "mirrored", "multi_worker"),
                   default="none")
    r.add_argument("--num_threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra- and inter-op threads")
    r.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return p


HPARAM_FLAGS = ("l2_penalty", "lstm_cells", "lstm_layers", "moe_num_mixtures", "dbof_cluster_size",
                "dbof_hidden_size", "dbof_activation", "iterations", "hidden_size",
                "hidden_layers", "dropout", "attention_levels")


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The saved model configuration: architecture + hyper-parameters + input contract."""
    import dataclasses

    from yt8m.models import canonical_name, make_hparams

    name = canonical_name(args.model)
    values = {k: getattr(args, k) for k in HPARAM_FLAGS}
    if values["attention_levels"] is not None:
        values["attention_levels"] = tuple(int(x) for x in str(values["attention_levels"])
                                           .split(",") if x.strip())
    hp = make_hparams(name, values)
    l2 = args.l2_normalize if args.l2_normalize is not None else name != "AttentionModel"
    return {
        "num_classes": args.num_classes,
        "members": [{"model": name, "hparams": dataclasses.asdict(hp)}],
        "input": {"dequantize": True, "l2_normalize": bool(l2), "max_frames": args.max_frames,
                  "feature_size": int(args.feature_sizes), "feature_name": args.feature_names},
    }


def cross_entropy(y_true, y_pred):
    """YouTube-8M's loss: binary cross-entropy on probabilities with ε = 1e-5, summed
    over classes (the batch mean is taken by Keras)."""
    import tensorflow as tf

    eps = 1e-5
    y_true = tf.cast(y_true, y_pred.dtype)
    return -tf.reduce_sum(y_true * tf.math.log(y_pred + eps)
                          + (1.0 - y_true) * tf.math.log(1.0 - y_pred + eps), axis=-1)


def configure_threads(num_threads: int) -> None:
    """Use ``num_threads`` for TensorFlow's intra- and inter-op pools. TF fixes them at
    its first op; when it already ran in this process (tests, notebooks) keep its pools."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(num_threads)
    except RuntimeError:
        logger.debug("TensorFlow already initialised; keeping its thread pools")


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise TrainError("--distribution_strategy=multi_worker needs TF_CONFIG "
                             "(see docs/results.md)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def make_train_dataset(clips, batch_size: int, l2: bool, seed: int, mixup_alpha: float):
    import tensorflow as tf

    from yt8m.reader import preprocess_frames

    # Shuffle indices, not records: each batch is gathered from the in-memory arrays,
    # so an epoch costs no copying of 20k records through a shuffle buffer.
    n = len(clips)
    frames_all = tf.constant(clips.frames)
    num_all = tf.constant(clips.num_frames)
    labels_all = tf.constant(clips.labels.astype(np.uint8))
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda idx: (tf.gather(frames_all, idx),
                                               tf.gather(num_all, idx),
                                               tf.cast(tf.gather(labels_all, idx), tf.float32)))

    def prep(frames, num, labels):
        x = preprocess_frames(frames, num, l2)
        if mixup_alpha > 0:
            b = tf.shape(x)[0]
            g1 = tf.random.gamma([b], mixup_alpha)
            g2 = tf.random.gamma([b], mixup_alpha)
            lam = g1 / (g1 + g2)
            perm = tf.reverse(tf.range(b), [0])
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * tf.gather(x, perm)
            labels = lam[:, None] * labels + (1 - lam[:, None]) * tf.gather(labels, perm)
            num = tf.maximum(num, tf.gather(num, perm))
        return (x, num), labels

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE).with_options(options)


def make_eval_dataset(clips, batch_size: int, l2: bool):
    import tensorflow as tf

    from yt8m.reader import preprocess_frames

    ds = tf.data.Dataset.from_tensor_slices((clips.frames, clips.num_frames)).batch(batch_size)
    return ds.map(lambda f, n: ((preprocess_frames(f, n, l2), n),),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _atomic_save_weights(model, path: Path) -> None:
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _make_callback(model, optimizer, train_dir: Path, val_ds, val_labels, args, state,
                   started: float, averaged=None):
    """Validation metrics, checkpointing, early stopping and progress, once per epoch."""
    import keras

    from yt8m import metrics as M

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            logs["learning_rate"] = float(np.asarray(optimizer.learning_rate))
            scored = model
            if averaged is not None and epoch + 1 >= args.swa_start_epoch:
                n = state.get("swa_count", 0)
                current = model.get_weights()
                averaged.set_weights(current if n == 0 else [
                    a + (w - a) / (n + 1) for a, w in zip(averaged.get_weights(), current,
                                                          strict=True)])
                state["swa_count"] = n + 1
                _atomic_save_weights(averaged, train_dir / SWA_WEIGHTS)
                scored = averaged
            if val_ds is None:  # refit: no validation, the latest weights are the result
                val, metric, better = None, float(epoch + 1), True
            else:
                pred = scored.predict(val_ds, verbose=0)
                val = M.evaluate(pred, val_labels)
                val["loss"] = float(np.mean(cross_entropy_np(val_labels, pred)))
                for k in ("hit_at_one", "gap", "map", "auc", "loss"):
                    logs[f"val_{k}"] = val[k]
                metric = val[args.early_stopping_metric]
                better = (metric < state["best"]) if args.early_stopping_metric == "loss" else (
                    metric > state["best"])
            if state["best"] is None or better or math.isnan(state["best"]):
                state.update(best=metric, best_epoch=epoch + 1, wait=0)
                _atomic_save_weights(scored, train_dir / BEST_WEIGHTS)
                state["best_val"] = val
            else:
                state["wait"] += 1
            state["epoch"] = epoch + 1
            state["steps"] = int(optimizer.iterations.numpy())
            state["train_seconds"] = state["train_seconds_before"] + time.monotonic() - started
            if val_ds is not None and state["wait"] >= args.early_stopping_patience:
                state["stopped_early"] = True
                self.model.stop_training = True
            _atomic_save_weights(model, train_dir / CHECKPOINT_WEIGHTS)
            tmp = train_dir / "last.optimizer.tmp.npz"
            np.savez(tmp, *[np.asarray(v.numpy()) for v in optimizer.variables])
            os.replace(tmp, train_dir / CHECKPOINT_OPTIMIZER)
            _write_json(train_dir / CHECKPOINT_STATE, state)
            if not args.quiet:
                scores = ("(refit on all clips, no validation)" if val is None else
                          f"val_loss {val['loss']:.4f} val_hit@1 {val['hit_at_one']:.4f} "
                          f"val_gap {val['gap']:.4f} val_mAP {val['map']:.4f} "
                          f"val_auc {val['auc']:.4f} best {args.early_stopping_metric} "
                          f"{state['best']:.4f}@{state['best_epoch']}")
                print(f"epoch {epoch + 1}/{args.num_epochs} step {state['steps']} "
                      f"loss {logs.get('loss', float('nan')):.4f} lr {logs['learning_rate']:.3g} "
                      f"{scores} [{state['train_seconds']:.0f}s]", flush=True)

    return EpochEnd()


def scalar_metadata():
    """The SummaryMetadata TensorBoard's scalar plugin expects (built from TF's own protos,
    so writing event files does not need the ``tensorboard`` package installed)."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    meta.data_class = summary_pb2.DATA_CLASS_SCALAR
    return meta.SerializeToString()


def _make_tensorboard(log_dir: Path, optimizer, every_steps: int):
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


def cross_entropy_np(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    eps = 1e-5
    return -np.sum(labels * np.log(pred + eps) + (1 - labels) * np.log(1 - pred + eps), axis=1)


def _clear_checkpoints(train_dir: Path) -> None:
    for name in (CHECKPOINT_WEIGHTS, CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE, BEST_WEIGHTS,
                 SWA_WEIGHTS, FLAGS_FILE, PROVENANCE_FILE):
        (train_dir / name).unlink(missing_ok=True)
    shutil.rmtree(train_dir / LOG_DIR, ignore_errors=True)


def _split(clips, fraction: float, seed: int):
    if fraction == 0:
        return clips, None
    n = len(clips)
    n_val = round(n * fraction)
    if not 0 < n_val < n:
        raise TrainError(f"--validation_fraction={fraction} leaves no train or validation "
                         f"clip out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return clips.subset(np.sort(order[n_val:])), clips.subset(np.sort(order[:n_val]))


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) training; returns the final state dict."""
    t_process = time.monotonic()
    from yt8m import provenance

    git_at_start = provenance.git_commit()  # the code that actually ran
    if not args.frame_features:
        raise TrainError("only frame-level features are supported (--frame_features)")
    if "," in args.feature_names or "," in args.feature_sizes:
        raise TrainError("exactly one feature is supported (audio_embedding, 128)")
    if args.refit_epochs_from:
        source = Path(args.refit_epochs_from).expanduser() / PROVENANCE_FILE
        try:
            best_epoch = int(json.loads(source.read_text(encoding="utf-8"))["best_epoch"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainError(f"--refit_epochs_from: cannot read best_epoch from {source} "
                             f"({exc})") from None
        if best_epoch < 1:
            raise TrainError(f"{source}: best_epoch is {best_epoch}")
        args.num_epochs, args.validation_fraction = best_epoch, 0.0
        args.validation_data_pattern = None
    config = model_config(args)
    train_dir = Path(args.train_dir).expanduser()
    train_dir.mkdir(parents=True, exist_ok=True)


    configure_threads(args.num_threads)
    import keras

    from yt8m.models import build_model, make_hparams
    from yt8m.reader import ReaderConfig, load_clips_cached

    if args.start_new_model:
        _clear_checkpoints(train_dir)
    state: dict[str, Any] = {"epoch": 0, "steps": 0, "best": None, "best_epoch": 0, "wait": 0,
                             "train_seconds": 0.0, "stopped_early": False}
    flags_path = train_dir / FLAGS_FILE
    resuming = (train_dir / CHECKPOINT_STATE).is_file()
    if resuming:
        saved = json.loads(flags_path.read_text(encoding="utf-8"))
        if saved.get("config") != json.loads(json.dumps(config)):  # tuples → lists
            raise TrainError(f"{train_dir} holds a checkpoint of a different model "
                             f"({saved.get('config', {}).get('members')}); use "
                             f"--start_new_model or another --train_dir")
        state.update(json.loads((train_dir / CHECKPOINT_STATE).read_text(encoding="utf-8")))
    if state["best"] is None:
        state["best"] = math.inf if args.early_stopping_metric == "loss" else -math.inf
    state["train_seconds_before"] = state["train_seconds"]
    command = ([sys.executable, "-m", "yt8m.train", *sys.argv[1:]] if args.argv is None
               else ["python", "-m", "yt8m.train", *args.argv])
    state["commands"] = [*state.get("commands", []), command]  # one per (resumed) invocation

    reader = ReaderConfig(feature_name=args.feature_names, feature_size=int(args.feature_sizes),
                          num_classes=args.num_classes, max_frames=args.max_frames,
                          on_error=args.reader_on_error)
    t0 = time.monotonic()
    clips = load_clips_cached(args.train_data_pattern, reader, args.data_cache_dir or None)
    if args.validation_data_pattern:
        train_clips = clips
        val_clips = load_clips_cached(args.validation_data_pattern, reader,
                                      args.data_cache_dir or None)
    else:
        train_clips, val_clips = _split(clips, args.validation_fraction, args.seed)
    load_seconds = time.monotonic() - t0
    n_val = 0 if val_clips is None else len(val_clips)
    logger.info("data: %d train / %d validation clips in %.1fs", len(train_clips), n_val,
                load_seconds)

    keras.utils.set_random_seed(args.seed + state["epoch"])
    strategy = _strategy(args.distribution_strategy)
    # Multi-worker: every worker trains; only the chief writes into --train_dir (a shared
    # filesystem), the others write their (identical) files to a scratch directory.
    out_dir = train_dir if _is_chief(strategy) else Path(tempfile.mkdtemp(prefix="yt8m_worker_"))
    l2 = config["input"]["l2_normalize"]
    spec = config["members"][0]

    def new_model():
        return build_model(spec["model"], args.num_classes,
                           make_hparams(spec["model"], spec["hparams"]),
                           feature_size=int(args.feature_sizes))

    with strategy.scope():
        model = new_model()
        decay_steps = max(1.0, args.learning_rate_decay_examples / args.batch_size)
        schedule = keras.optimizers.schedules.ExponentialDecay(
            args.base_learning_rate, decay_steps, args.learning_rate_decay, staircase=True)
        optimizer = keras.optimizers.Adam(
            schedule, clipnorm=args.clip_gradient_norm if args.clip_gradient_norm > 0 else None)
        model.compile(optimizer=optimizer, loss=cross_entropy)
        optimizer.build(model.trainable_variables)
        if resuming:
            model.load_weights(str(train_dir / CHECKPOINT_WEIGHTS))
            with np.load(train_dir / CHECKPOINT_OPTIMIZER) as z:
                arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
            if len(arrays) != len(optimizer.variables):
                raise TrainError(f"{train_dir}: optimizer checkpoint does not match the model")
            for v, a in zip(optimizer.variables, arrays, strict=True):
                v.assign(a)
            print(f"resuming {train_dir} at epoch {state['epoch']} step "
                  f"{int(optimizer.iterations.numpy())}", flush=True)

    averaged = None
    if args.swa_start_epoch > 0:
        averaged = new_model()
        if resuming and state.get("swa_count", 0) > 0:
            averaged.load_weights(str(train_dir / SWA_WEIGHTS))

    n_params = int(sum(np.prod(v.shape) for v in model.weights))
    _write_json(out_dir / FLAGS_FILE, {"flags": vars(args), "config": config, "num_params": n_params})
    train_ds = make_train_dataset(train_clips, args.batch_size, l2, args.seed + state["epoch"],
                                  args.mixup_alpha)
    val_ds = None if val_clips is None else make_eval_dataset(val_clips, 1024, l2)
    started = time.monotonic()
    load_avg_start = os.getloadavg()
    callbacks = [
        _make_callback(model, optimizer, out_dir, val_ds,
                       None if val_clips is None else val_clips.labels, args, state,
                       started, averaged),
        _make_tensorboard(out_dir / LOG_DIR, optimizer, every_steps=10),
    ]
    if state["stopped_early"] or state["epoch"] >= args.num_epochs:
        print(f"{train_dir}: training already finished at epoch {state['epoch']}", flush=True)
    else:
        model.fit(train_ds, epochs=args.num_epochs, initial_epoch=state["epoch"],
                  steps_per_epoch=args.steps_per_epoch, callbacks=callbacks, verbose=0)
    state.pop("train_seconds_before", None)
    prov = {
        "command": command,
        "commands": state["commands"],
        "date": provenance.now(),
        "git": git_at_start,
        "machine": provenance.machine(),
        "load_average_at_start": [round(x, 2) for x in load_avg_start],
        "train_data": {"pattern": args.train_data_pattern, "clips": len(clips),
                       "skipped_malformed": clips.skipped,
                       **provenance.files_digest(clips.files)},
        "validation": ({"pattern": args.validation_data_pattern} if args.validation_data_pattern
                       else {"carved_fraction": args.validation_fraction, "seed": args.seed}),
        "num_train_clips": len(train_clips),
        "num_validation_clips": n_val,
        "data_load_seconds": round(load_seconds, 2),
        "train_wall_seconds": round(state["train_seconds"], 2),
        "process_wall_seconds": round(time.monotonic() - t_process, 2),
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped_early": state["stopped_early"],
        "steps": state["steps"],
        "num_params": n_params,
        "best_validation": state.get("best_val"),
    }
    _write_json(out_dir / PROVENANCE_FILE, prov)
    if not args.quiet:
        chosen = ("final weights (refit, no validation)" if val_clips is None else
                  f"best val {args.early_stopping_metric} {state['best']:.4f} at epoch "
                  f"{state['best_epoch']}")
        print(f"done: {state['epoch']} epochs, {chosen}, "
              f"{state['train_seconds']:.1f}s training, weights {train_dir / BEST_WEIGHTS}",
              flush=True)
    return state


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from yt8m.models import UnknownModelError
    from yt8m.reader import ReaderError

    try:
        train(args)
    except (TrainError, ReaderError, UnknownModelError, ValueError, OSError) as exc:
        print(f"yt8m.train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One training run in three steps: setup (options, state, data, model), fit, and the
provenance record. ``train`` strings them together."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggish.environment import TF_CONFIG_ENV, env_value
from yt8m.training import TrainError
from yt8m.training.callbacks import cross_entropy, make_epoch_callback, make_tensorboard
from yt8m.training.checkpoints import (
    BEST_WEIGHTS,
    FLAGS_FILE,
    LOG_DIR,
    PROVENANCE_FILE,
    SWA_WEIGHTS,
    clear_checkpoints,
    restore_checkpoint,
    start_state,
    write_json,
)
from yt8m.training.data import TrainData, load_data, make_eval_dataset, make_train_dataset
from yt8m.training.options import TrainOptions, model_config, resolve_options

logger = logging.getLogger("yt8m.train")


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
        if env_value(TF_CONFIG_ENV) is None:
            raise TrainError("--distribution_strategy=multi_worker needs TF_CONFIG "
                             "(see docs/results.md)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class Setup:
    """What the fit and provenance steps need, once setup has run."""

    opts: TrainOptions
    config: dict[str, Any]
    command: list[str]
    train_dir: Path
    out_dir: Path  # train_dir, or a scratch directory on a non-chief worker
    state: dict[str, Any]  # mutated by the epoch callback; saved as last.state.json
    data: TrainData
    model: Any
    optimizer: Any
    averaged: Any | None  # the SWA model, with --swa_start_epoch
    num_params: int


def _new_model(opts: TrainOptions, config: dict[str, Any]):
    from yt8m.models import build_model, make_hparams

    spec = config["members"][0]
    return build_model(spec["model"], opts.num_classes,
                       make_hparams(spec["model"], spec["hparams"]),
                       feature_size=int(opts.feature_sizes))


def _compile(opts: TrainOptions, config: dict[str, Any], train_dir: Path, state, resuming):
    """Model and Adam optimizer (exponential decay, clipping), restored when resuming;
    called inside the distribution strategy's scope."""
    import keras

    model = _new_model(opts, config)
    decay_steps = max(1.0, opts.learning_rate_decay_examples / opts.batch_size)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        opts.base_learning_rate, decay_steps, opts.learning_rate_decay, staircase=True)
    optimizer = keras.optimizers.Adam(
        schedule, clipnorm=opts.clip_gradient_norm if opts.clip_gradient_norm > 0 else None)
    model.compile(optimizer=optimizer, loss=cross_entropy)
    optimizer.build(model.trainable_variables)
    if resuming:
        restore_checkpoint(model, optimizer, train_dir)
        print(f"resuming {train_dir} at epoch {state['epoch']} step "
              f"{int(optimizer.iterations.numpy())}", flush=True)
    return model, optimizer


def _swa_model(opts: TrainOptions, config: dict[str, Any], train_dir: Path, state, resuming):
    """The weight-averaged model (None without --swa_start_epoch), resumed from
    ``swa.weights.h5`` once it holds an average."""
    if opts.swa_start_epoch <= 0:
        return None
    averaged = _new_model(opts, config)
    if resuming and state.get("swa_count", 0) > 0:
        averaged.load_weights(str(train_dir / SWA_WEIGHTS))
    return averaged


def setup(opts: TrainOptions) -> Setup:
    """Prepare a run: the directory, the (resumed) state, the data, the model and the
    optimizer; writes ``model_flags.json``."""
    config = model_config(opts)
    train_dir = Path(opts.train_dir).expanduser()
    train_dir.mkdir(parents=True, exist_ok=True)
    configure_threads(opts.num_threads)
    import keras

    if opts.start_new_model:
        clear_checkpoints(train_dir)
    command = opts.command()
    state, resuming = start_state(train_dir, config, opts.early_stopping_metric, command)
    data = load_data(opts)
    keras.utils.set_random_seed(opts.seed + state["epoch"])
    strategy = _strategy(opts.distribution_strategy)
    # Multi-worker: every worker trains; only the chief writes into --train_dir (a shared
    # filesystem), the others write their (identical) files to a scratch directory.
    out_dir = train_dir if _is_chief(strategy) else Path(tempfile.mkdtemp(prefix="yt8m_worker_"))
    with strategy.scope():
        model, optimizer = _compile(opts, config, train_dir, state, resuming)
    averaged = _swa_model(opts, config, train_dir, state, resuming)
    n_params = int(sum(np.prod(v.shape) for v in model.weights))
    write_json(out_dir / FLAGS_FILE, {"flags": opts.flags(), "config": config,
                                      "num_params": n_params})
    return Setup(opts, config, command, train_dir, out_dir, state, data, model, optimizer,
                 averaged, n_params)


def fit(run: Setup) -> tuple[float, float, float]:
    """Train up to ``--num_epochs`` (nothing when the run already finished); returns the
    load average at the start of training."""
    opts, state, data = run.opts, run.state, run.data
    l2 = run.config["input"]["l2_normalize"]
    train_ds = make_train_dataset(data.train, opts.batch_size, l2, opts.seed + state["epoch"],
                                  opts.mixup_alpha, data.targets)
    val_ds = None if data.validation is None else make_eval_dataset(data.validation, 1024, l2)
    started = time.monotonic()
    load_avg_start = os.getloadavg()
    callbacks = [
        make_epoch_callback(run.model, run.optimizer, run.out_dir, val_ds,
                            None if data.validation is None else data.validation.labels, opts,
                            state, started, run.averaged),
        make_tensorboard(run.out_dir / LOG_DIR, run.optimizer, every_steps=10),
    ]
    if state["stopped_early"] or state["epoch"] >= opts.num_epochs:
        print(f"{run.train_dir}: training already finished at epoch {state['epoch']}",
              flush=True)
    else:
        run.model.fit(train_ds, epochs=opts.num_epochs, initial_epoch=state["epoch"],
                      steps_per_epoch=opts.steps_per_epoch, callbacks=callbacks, verbose=0)
    return load_avg_start


def provenance_record(run: Setup, git: dict[str, Any], load_avg_start,
                      t_process: float) -> dict[str, Any]:
    """``provenance.json``: the command(s), code, machine, data and outcome of the run."""
    from yt8m import provenance

    opts, state, data = run.opts, run.state, run.data
    return {
        "command": run.command,
        "commands": state["commands"],
        "date": provenance.now(),
        "git": git,
        "machine": provenance.machine(),
        "load_average_at_start": [round(x, 2) for x in load_avg_start],
        "train_data": {"pattern": opts.train_data_pattern, "clips": len(data.clips),
                       "skipped_malformed": data.clips.skipped,
                       **provenance.files_digest(data.clips.files)},
        "validation": ({"pattern": opts.validation_data_pattern} if opts.validation_data_pattern
                       else {"carved_fraction": opts.validation_fraction, "seed": opts.split_seed}),
        "distillation": data.teacher,
        "label_smoothing": opts.label_smoothing,
        "num_train_clips": len(data.train),
        "num_validation_clips": data.num_validation,
        "data_load_seconds": round(data.load_seconds, 2),
        "train_wall_seconds": round(state["train_seconds"], 2),
        "process_wall_seconds": round(time.monotonic() - t_process, 2),
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped_early": state["stopped_early"],
        "steps": state["steps"],
        "num_params": run.num_params,
        "best_validation": state.get("best_val"),
    }


def _report_done(run: Setup) -> None:
    state = run.state
    chosen = ("final weights (refit, no validation)" if run.data.validation is None else
              f"best val {run.opts.early_stopping_metric} {state['best']:.4f} at epoch "
              f"{state['best_epoch']}")
    print(f"done: {state['epoch']} epochs, {chosen}, "
          f"{state['train_seconds']:.1f}s training, weights {run.train_dir / BEST_WEIGHTS}",
          flush=True)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) training; returns the final state dict. ``args`` (the parsed
    command line) is not modified: the refit step's rewrite goes into ``TrainOptions``."""
    t_process = time.monotonic()
    from yt8m import provenance

    git_at_start = provenance.git_commit()  # the code that actually ran
    run = setup(resolve_options(args))
    load_avg_start = fit(run)
    run.state.pop("train_seconds_before", None)
    write_json(run.out_dir / PROVENANCE_FILE,
               provenance_record(run, git_at_start, load_avg_start, t_process))
    if not run.opts.quiet:
        _report_done(run)
    return run.state

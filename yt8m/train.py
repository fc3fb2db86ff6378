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

This module is the command line; the steps live in ``yt8m.training`` (options,
checkpoints, data, callbacks, run) and the names other modules use are re-exported here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from yt8m.paths import DEFAULT_CACHE_DIR
from yt8m.training import TrainError
from yt8m.training.callbacks import cross_entropy, cross_entropy_np, scalar_metadata
from yt8m.training.checkpoints import (
    BEST_WEIGHTS,
    CHECKPOINT_OPTIMIZER,
    CHECKPOINT_STATE,
    CHECKPOINT_WEIGHTS,
    FLAGS_FILE,
    LOG_DIR,
    PROVENANCE_FILE,
    SWA_WEIGHTS,
)
from yt8m.training.data import make_eval_dataset, make_train_dataset
from yt8m.training.options import (
    HPARAM_FLAGS,
    METRIC_CHOICES,
    TrainOptions,
    model_config,
    resolve_options,
)
from yt8m.training.run import configure_threads, train

__all__ = [
    "BEST_WEIGHTS", "CHECKPOINT_OPTIMIZER", "CHECKPOINT_STATE", "CHECKPOINT_WEIGHTS",
    "DEFAULT_CACHE_DIR", "FLAGS_FILE", "HPARAM_FLAGS", "LOG_DIR", "METRIC_CHOICES",
    "PROVENANCE_FILE", "SWA_WEIGHTS", "TrainError", "TrainOptions", "build_parser",
    "configure_threads", "cross_entropy", "cross_entropy_np", "main", "make_eval_dataset",
    "make_train_dataset", "model_config", "resolve_options", "scalar_metadata", "str2bool",
    "train",
]

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


def _data_flags(p: argparse.ArgumentParser) -> None:
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


def _model_flags(p: argparse.ArgumentParser) -> None:
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


def _optimisation_flags(p: argparse.ArgumentParser) -> None:
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
    o.add_argument("--validation_seed", type=int, default=None,
                   help="seed of the carved validation split (default: --seed); members "
                        "of one ensemble that share it share one held-out split")


def _target_flags(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("targets (distillation, label smoothing)")
    t.add_argument("--teacher_scores", default=None, metavar="NPZ",
                   help="a teacher's scores on the training clips (python -m yt8m.distill): "
                        "train on distill_weight·teacher + (1 − distill_weight)·labels")
    t.add_argument("--distill_weight", type=float, default=0.5,
                   help="the teacher's share λ of each target (with --teacher_scores)")
    t.add_argument("--label_smoothing", type=float, default=0.0,
                   help="ε: labels become (1 − ε)·labels + ε/2 before any distillation")


def _run_flags(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("run")
    _bool_flag(r, "start_new_model", False, "discard checkpoints in --train_dir and start over")
    r.add_argument("--distribution_strategy", choices=("none", "mirrored", "multi_worker"),
                   default="none")
    r.add_argument("--num_threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra- and inter-op threads")
    r.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")


def build_parser() -> argparse.ArgumentParser:
    """The seed's YouTube-8M command line (absl-style booleans) plus this project's flags;
    every destination is a field of ``TrainOptions``."""
    p = argparse.ArgumentParser(
        prog="python -m yt8m.train",
        description="Train a YouTube-8M style frame-level classifier on AudioSet embeddings.")
    _data_flags(p)
    _model_flags(p)
    _optimisation_flags(p)
    _target_flags(p)
    _run_flags(p)
    return p


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

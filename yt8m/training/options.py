"""The training flags, resolved once into a frozen ``TrainOptions``.

The refit step (``--refit_epochs_from``) rewrites three flags from a finished run's
provenance; resolving them here, into a new value, leaves the parsed command line as
it was, and every later step reads one immutable set of options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yt8m.training import TrainError
from yt8m.training.checkpoints import PROVENANCE_FILE

METRIC_CHOICES = ("map", "hit_at_one", "gap", "auc", "loss")
HPARAM_FLAGS = ("l2_penalty", "lstm_cells", "lstm_layers", "moe_num_mixtures", "dbof_cluster_size",
                "dbof_hidden_size", "dbof_activation", "iterations", "hidden_size",
                "hidden_layers", "dropout", "attention_levels")


@dataclass(frozen=True)
class TrainOptions:
    """Every flag of ``python -m yt8m.train`` (one field per parser destination), after
    the refit step's rewrite; ``argv`` is the command line given to ``main`` (None:
    ``sys.argv``)."""

    train_data_pattern: str
    train_dir: str
    feature_names: str
    feature_sizes: str
    frame_features: bool
    num_classes: int
    max_frames: int
    validation_data_pattern: str | None
    validation_fraction: float
    refit_epochs_from: str | None
    reader_on_error: str
    data_cache_dir: str
    model: str
    l2_normalize: bool | None
    l2_penalty: float | None
    lstm_cells: int | None
    lstm_layers: int | None
    moe_num_mixtures: int | None
    dbof_cluster_size: int | None
    dbof_hidden_size: int | None
    dbof_activation: str | None
    iterations: int | None
    hidden_size: int | None
    hidden_layers: int | None
    dropout: float | None
    attention_levels: str | None
    batch_size: int
    num_epochs: int
    base_learning_rate: float
    learning_rate_decay: float
    learning_rate_decay_examples: int
    optimizer: str
    clip_gradient_norm: float
    mixup_alpha: float
    swa_start_epoch: int
    early_stopping_patience: int
    early_stopping_metric: str
    teacher_scores: str | None
    distill_weight: float
    label_smoothing: float
    steps_per_epoch: int | None
    seed: int
    validation_seed: int | None
    start_new_model: bool
    distribution_strategy: str
    num_threads: int
    quiet: bool
    argv: tuple[str, ...] | None = None

    def flags(self) -> dict[str, Any]:
        """The flags as ``model_flags.json`` records them."""
        return dataclasses.asdict(self)

    @property
    def split_seed(self) -> int:
        """The seed that carves the validation split."""
        return self.seed if self.validation_seed is None else self.validation_seed

    def command(self) -> list[str]:
        """The command line of this invocation, as provenance records it."""
        if self.argv is None:
            return [sys.executable, "-m", "yt8m.train", *sys.argv[1:]]
        return ["python", "-m", "yt8m.train", *self.argv]


def _refit_epochs(train_dir: str) -> int:
    """The best epoch a finished run with a validation split recorded."""
    source = Path(train_dir).expanduser() / PROVENANCE_FILE
    try:
        best_epoch = int(json.loads(source.read_text(encoding="utf-8"))["best_epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainError(f"--refit_epochs_from: cannot read best_epoch from {source} "
                         f"({exc})") from None
    if best_epoch < 1:
        raise TrainError(f"{source}: best_epoch is {best_epoch}")
    return best_epoch


def resolve_options(args: argparse.Namespace) -> TrainOptions:
    """Check the flags and apply the refit step's rewrite (``args`` is left unchanged)."""
    if not args.frame_features:
        raise TrainError("only frame-level features are supported (--frame_features)")
    if "," in args.feature_names or "," in args.feature_sizes:
        raise TrainError("exactly one feature is supported (audio_embedding, 128)")
    if not 0.0 <= args.distill_weight <= 1.0:
        raise TrainError(f"--distill_weight must be within [0, 1], got {args.distill_weight}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise TrainError(f"--label_smoothing must be within [0, 1), got {args.label_smoothing}")
    values = dict(vars(args))
    if values.get("argv") is not None:
        values["argv"] = tuple(values["argv"])
    if args.refit_epochs_from:
        values.update(num_epochs=_refit_epochs(args.refit_epochs_from),
                      validation_fraction=0.0, validation_data_pattern=None)
    return TrainOptions(**values)


def model_config(opts: TrainOptions | argparse.Namespace) -> dict[str, Any]:
    """The saved model configuration: architecture + hyper-parameters + input contract."""
    from yt8m.models import canonical_name, make_hparams

    name = canonical_name(opts.model)
    values = {k: getattr(opts, k) for k in HPARAM_FLAGS}
    if values["attention_levels"] is not None:
        values["attention_levels"] = tuple(int(x) for x in str(values["attention_levels"])
                                           .split(",") if x.strip())
    hp = make_hparams(name, values)
    l2 = opts.l2_normalize if opts.l2_normalize is not None else name != "AttentionModel"
    return {
        "num_classes": opts.num_classes,
        "members": [{"model": name, "hparams": dataclasses.asdict(hp)}],
        "input": {"dequantize": True, "l2_normalize": bool(l2), "max_frames": opts.max_frames,
                  "feature_size": int(opts.feature_sizes), "feature_name": opts.feature_names},
    }

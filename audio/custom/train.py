"""Train a classifier for your own sounds from a folder of recordings (transfer learning).

    python -m audio.train_custom DATA_DIR [--negative DIR] [--embedding vggish|yamnet]
                                 [--head logistic|mlp] [--target CLASS] [--name NAME]

``DATA_DIR`` holds one sub-folder of audio files per class (any format ``parse_file.py``
reads). Each file is cut into frames (VGGish: 0.96 s; YAMNet: 0.975 s every 0.48 s), each
frame embedded by the chosen pretrained network (VGGish's 8-bit post-processed embedding,
dequantised, as the shipped classifier sees it; or YAMNet's 1024-d embedding), and a
small head — multinomial logistic regression or a one-hidden-layer MLP, in numpy — is
trained to classify frames, every frame labelled with its file's class. A clip's score is
the mean of its frames' probabilities, at training time and in the entry scripts.

Files, not frames, are split into train / validation / held-out test sets (stratified per
class), so no recording contributes frames to both sides. The held-out test set gets a
per-class precision / recall / F1 report and a confusion matrix, at clip level.

``--negative DIR``: recordings of "anything else" (background, other sounds). In
multi-class mode they form an extra class named by ``--negative_label`` (default
``other``); in detector mode they are negatives.

``--target CLASS``: a binary detector for one class (the Capuchin-bird recipe): the head
has one sigmoid output; positives are the target's files, negatives every other file. The
decision threshold is tuned on the validation files to maximise frame-level F1 and stored
in the bundle, where the entry scripts use it when ``--threshold`` is not given, so
``parse_file.py --model NAME --timeline --count CLASS long.wav`` counts calls with it.

The result is a bundle directory ``models/<name>/`` (``config.json``, ``labels.csv``,
``head.npz``, ``metrics.json``; ``<name>`` defaults to the data folder's name, with
``-<target>`` for a detector, so ``train_custom my_sounds/`` is ``--model my_sounds``)
that ``--model NAME`` accepts in ``parse_file.py``,
``capture.py`` and ``daemon.py`` (with ``--backend yamnet`` for YAMNet heads). Inference
with it needs no TensorFlow (YAMNet always; VGGish once exported with
``python -m audio.export``). An existing bundle is never overwritten silently: without
``--force`` the run stops before reading any file, with one line and exit status
:data:`EXIT_BUNDLE_EXISTS`. LiteRT's and TensorFlow's start-up lines stay off the
terminal unless ``-v``, as in the entry scripts.

This module is the command line and the order of the steps; the steps themselves live in
``audio.custom.data``, ``embed``, ``head`` and ``metrics``. The documented command
``python -m audio.train_custom`` is a thin entry that calls :func:`main` here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audio.custom.data import Clip, TrainDataError, scan_dataset, split_clips, stack_frames
from audio.custom.embed import Embedder, embed_clips
from audio.custom.head import Head, fit_head
from audio.custom.metrics import Evaluation, evaluate_detector, evaluate_multiclass
from audio.errors import EXIT_FAILURE, EXIT_OK, EXIT_OUTPUT_EXISTS, EXIT_USAGE
from audio.native import silenced_native_stderr
from audio.settings import apply_native_output_defaults

EXIT_BUNDLE_EXISTS = EXIT_OUTPUT_EXISTS  # audio.errors holds every exit code
"""The bundle the run would write exists and ``--force`` was not given."""


class BundleExistsError(TrainDataError):
    """The bundle directory exists already: a second run must not replace the first
    silently."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m audio.train_custom",
        description="Train a small classifier for your own sound classes on VGGish or YAMNet "
                    "embeddings; export a bundle that --model accepts in every entry script.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR",
                   help="one sub-folder of audio files per class")
    p.add_argument("--negative", type=Path, default=None, metavar="DIR",
                   help="recordings of anything else (background / other sounds)")
    p.add_argument("--negative_label", default="other",
                   help="class name of --negative files in multi-class mode (default: other)")
    p.add_argument("--embedding", choices=("vggish", "yamnet"), default="vggish",
                   help="pretrained network whose embeddings the head learns from")
    p.add_argument("--head", choices=("logistic", "mlp"), default="logistic")
    p.add_argument("--hidden", type=int, default=64, help="MLP hidden units (default 64)")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="train a binary detector for this class, with a tuned threshold")
    p.add_argument("--name", default=None,
                   help="bundle name in the models directory, or a path (default: the "
                        "data folder's name, with -<target> for a detector)")
    p.add_argument("--force", action="store_true",
                   help=f"replace an existing bundle of that name (without it the run "
                        f"stops, exit status {EXIT_BUNDLE_EXISTS})")
    p.add_argument("--test_fraction", type=float, default=0.25)
    p.add_argument("--val_fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--l2", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vggish_checkpoint", default=None, metavar="PATH")
    p.add_argument("--pca_params", default=None, metavar="PATH")
    p.add_argument("--yamnet_model", default=None, metavar="PATH")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _bundle_dir(args: argparse.Namespace) -> Path:
    """``--name``, else the data folder's name (``-<target>`` appended for a detector), in
    the models directory; ``custom-<embedding>`` when the folder has no usable name."""
    from yt8m.bundle import resolve_bundle_path

    folder = args.data_dir.resolve().name
    if not folder or folder.startswith("."):
        folder = f"custom-{args.embedding}"
    default = folder + (f"-{args.target}" if args.target else "")
    return resolve_bundle_path(args.name or default)


def _check_args(args: argparse.Namespace) -> None:
    """Argument errors argparse cannot see, reported before any file is read."""
    if not (0 < args.test_fraction < 1 and 0 < args.val_fraction < 1):
        raise TrainDataError("--test_fraction and --val_fraction must be in (0, 1)")
    if args.hidden < 1 and args.head == "mlp":
        raise TrainDataError("--hidden must be positive")
    out = _bundle_dir(args)
    if out.exists() and not args.force:
        raise BundleExistsError(f"{out} exists (a bundle trained before?): pass --force to "
                                f"replace it, or --name for another")


def _hidden_units(args: argparse.Namespace) -> int:
    """Hidden layer width: 0 means no hidden layer (the logistic head)."""
    return args.hidden if args.head == "mlp" else 0


def _fit(args: argparse.Namespace, names: list[str], train: Sequence[Clip],
         feats: Mapping[Path, np.ndarray]) -> Head:
    """Train the head on the training files' frames, each labelled with its file's class."""
    binary = args.target is not None
    x_train, y_train = stack_frames(train, feats)
    num_out = 1 if binary else len(names)
    return fit_head(x_train, y_train, num_out, binary, _hidden_units(args), args.l2,
                    args.epochs, args.lr, args.seed)


def _evaluate(args: argparse.Namespace, names: list[str], head: Head,
              feats: Mapping[Path, np.ndarray], val: Sequence[Clip],
              test: Sequence[Clip]) -> Evaluation:
    """Score the held-out files and print the report (detector: tune the threshold first)."""
    if args.target is not None:
        result = evaluate_detector(head, feats, names[0], val, test)
        print(f"tuned threshold (max frame F1 on {len(val)} validation files): "
              f"{result.threshold:.3f}")
    else:
        result = evaluate_multiclass(head, feats, names, test)
    print(f"held-out test set ({len(test)} files), clip level:")
    print(result.report())
    return result


def _export(args: argparse.Namespace, names: list[str], clips: Sequence[Clip], head: Head,
            embedder: Embedder, threshold: float | None, metrics: dict[str, Any]) -> Path:
    """Write the bundle the entry scripts load with ``--model``: head, labels, metrics."""
    from yt8m.bundle import BundleWriter, save_head

    binary = args.target is not None
    out = _bundle_dir(args)
    save_head(out, name=out.name, embedding=args.embedding,
              mode="detector" if binary else "multiclass", labels=names,
              mean=head.mean, scale=head.scale, layers=[(w, b) for w, b in head.layers],
              feature_size=embedder.feature_size, max_frames=embedder.max_frames,
              threshold=threshold,
              extra={"head": {"type": args.head, "hidden": _hidden_units(args), "l2": args.l2,
                              "epochs": args.epochs, "lr": args.lr, "seed": args.seed},
                     "training": {"data_dir": str(args.data_dir.resolve()),
                                  "negative": str(args.negative.resolve()) if args.negative
                                  else None, "files": len(clips)}})
    BundleWriter(out).metrics(metrics)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, export; returns the metrics written to ``metrics.json``.

    The order is the cheap-to-expensive one: argument and data-folder errors surface
    before the embedding network is loaded, and every file is embedded once.
    """
    _check_args(args)
    t0 = time.time()
    names, clips = scan_dataset(args.data_dir, args.negative, args.target, args.negative_label)
    train, val, test = split_clips(clips, args.test_fraction, args.val_fraction, args.seed)
    with silenced_native_stderr():  # LiteRT's and TensorFlow's start-up lines
        embedder = Embedder(args.embedding, args.vggish_checkpoint, args.pca_params,
                            args.yamnet_model)
    feats = embed_clips(embedder, clips)
    print(f"{len(clips)} files, {sum(f.shape[0] for f in feats.values())} frames of "
          f"{args.embedding} embeddings ({time.time() - t0:.1f} s); split by file: "
          f"{len(train)} train, {len(val)} validation, {len(test)} test")
    head = _fit(args, names, train, feats)
    result = _evaluate(args, names, head, feats, val, test)
    metrics = result.metrics(train, val, test)
    out = _export(args, names, clips, head, embedder, result.threshold, metrics)
    backend = " --backend yamnet" if args.embedding == "yamnet" else ""
    print(f"bundle written to {out}; use it with: parse_file.py{backend} --model {out} FILE")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_native_output_defaults(args.verbose)  # before TensorFlow is imported
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from audio.backends.yamnet import YamnetError, YamnetFilesMissingError
    from audio.downloads import MissingModelFilesError
    from audio.io import AudioFileError
    from yt8m.bundle import HeadError

    try:
        run(args)
    except BundleExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUNDLE_EXISTS
    except (TrainDataError, AudioFileError, HeadError, YamnetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (MissingModelFilesError, YamnetFilesMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK

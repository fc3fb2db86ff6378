"""Export trained runs as a self-contained classifier bundle (``python -m yt8m.export``).

    python -m yt8m.export --train_dir=runs/attention_s1 --train_dir=runs/attention_s2 \\
        --train_dir=runs/dbof_refit --weights_dtype=int8 --name=audioset-ensemble-v3 \\
        --eval_data_pattern='../shared/data/audioset_v1_embeddings/eval/*.tfrecord'

Several ``--train_dir`` make an ensemble (scores averaged), possibly of different
architectures: they must share the feature, its size, ``max_frames`` and the class count;
per-frame L2 normalisation is recorded per member (``members[i]["l2_normalize"]``), so a
YouTube-8M model (normalised) and the attention model (raw) can sit in one bundle.
``--weights_dtype float16`` stores the weights at half size, ``int8`` (per-channel scales,
``yt8m.weights``) at a quarter; they are turned back into float32 when loaded, and
``metrics.json`` is computed on what is stored.

The bundle (``models_dir()/<name>/`` or ``--output_dir``) gets ``config.json``,
``member_<i>.weights.h5``, ``labels.csv`` (derived from AudioSet's
``class_labels_indices.csv``), ``provenance.json`` (the export command, and each
member's training provenance), and ``metrics.json``: the bundle is loaded back exactly as
the application loads it and evaluated on ``--eval_data_pattern``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vggish.errors import AudioAnalysisError
from yt8m.bundle.format import FORMAT_VERSION
from yt8m.weights import WEIGHTS_DTYPES

SHARED_INPUT_KEYS = ("dequantize", "feature_name", "feature_size", "max_frames")
LABELS_CSV_NAME = "class_labels_indices.csv"


class ExportError(AudioAnalysisError, RuntimeError):
    """The runs cannot be exported (missing files, mismatching contracts, too big)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m yt8m.export",
                                description="Write a classifier bundle from training runs.")
    p.add_argument("--train_dir", action="append", required=True,
                   help="a finished yt8m.train directory; repeat for an ensemble")
    p.add_argument("--name", required=True, help="bundle name (directory name)")
    p.add_argument("--output_dir", default=None,
                   help="bundle directory (default: <models dir>/<name>)")
    p.add_argument("--eval_data_pattern", required=True,
                   help="eval TFRecords: the bundle's metrics.json is computed on them")
    p.add_argument("--labels_csv", default=None,
                   help=f"AudioSet {LABELS_CSV_NAME} (default: beside the eval split's folder)")
    p.add_argument("--max_size_mb", type=float, default=20.0)
    p.add_argument("--weights_dtype", choices=WEIGHTS_DTYPES, default="float32",
                   help="storage type of the members' weights (float16 halves the bundle, "
                        "int8 with per-channel scales quarters it; see yt8m.weights)")
    p.add_argument("--data_cache_dir", default=None, help="decoded-data cache for the eval")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    return p


def _default_labels_csv(pattern: str) -> Path:
    first = pattern.split(",")[0]
    folder = Path(first).expanduser().parent
    for candidate in (folder / LABELS_CSV_NAME, folder.parent / LABELS_CSV_NAME):
        if candidate.is_file():
            return candidate
    raise ExportError(f"{LABELS_CSV_NAME} not found beside {folder}; pass --labels_csv")


def _read_runs(runs: list[Path]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Each run's model config and training provenance (None where it has none)."""
    from yt8m.train import BEST_WEIGHTS, FLAGS_FILE
    from yt8m.train import PROVENANCE_FILE as RUN_PROVENANCE

    configs, run_provenance = [], []
    for d in runs:
        for f in (d / FLAGS_FILE, d / BEST_WEIGHTS):
            if not f.is_file():
                raise ExportError(f"{f} not found: is {d} a finished training run?")
        configs.append(json.loads((d / FLAGS_FILE).read_text(encoding="utf-8"))["config"])
        prov = d / RUN_PROVENANCE
        run_provenance.append(json.loads(prov.read_text(encoding="utf-8"))
                              if prov.is_file() else None)
    return configs, run_provenance


def _bundle_config(name: str, runs: list[Path], configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The bundle's config without members; the runs must share the input contract."""
    base = configs[0]
    shared_input = {k: base["input"][k] for k in SHARED_INPUT_KEYS if k in base["input"]}
    for d, c in zip(runs, configs, strict=True):
        if ({k: c["input"].get(k) for k in shared_input} != shared_input
                or c["num_classes"] != base["num_classes"]):
            raise ExportError(f"{d}: feature, max_frames or classes differ from {runs[0]}")
    return {"name": name, "format_version": FORMAT_VERSION, "num_classes": base["num_classes"],
            "input": shared_input, "members": []}


def _write_members(tmp: Path, runs: list[Path], configs: list[dict[str, Any]],
                   config: dict[str, Any], weights_dtype: str) -> None:
    """Save each run's model weights (as ``weights_dtype``) and describe it in ``config``."""
    from yt8m.bundle import build_members
    from yt8m.train import BEST_WEIGHTS
    from yt8m.weights import convert_weights_file

    for i, (d, c) in enumerate(zip(runs, configs, strict=True)):
        weights = f"member_{i}.weights.h5"
        # Rebuild the model and save only its variables: a training checkpoint also
        # holds the optimizer's moments (twice the model's size), useless for inference.
        (model,) = build_members(c, [d / BEST_WEIGHTS])
        model.save_weights(str(tmp / weights))
        convert_weights_file(tmp / weights, weights_dtype)
        config["members"].append({**c["members"][0], "weights": weights,
                                  "weights_dtype": weights_dtype,
                                  "l2_normalize": bool(c["input"]["l2_normalize"]),
                                  "train_dir": d.name})


def _provenance(args: argparse.Namespace, argv: list[str] | None, labels_csv: Path,
                run_provenance: list[Any]) -> dict[str, Any]:
    from yt8m import provenance

    return {
        "export_command": ["python", "-m", "yt8m.export",
                           *(argv if argv is not None else sys.argv[1:])],
        "date": provenance.now(),
        "git": provenance.git_commit(),
        "machine": provenance.machine(),
        "labels_csv": {"file": labels_csv.name, **provenance.files_digest([str(labels_csv)])},
        "eval_data": {"pattern": args.eval_data_pattern,
                      **provenance.files_digest(_expand(args.eval_data_pattern))},
        "members": run_provenance,
    }


@dataclass(frozen=True)
class _Plan:
    """What an export writes, checked before anything is written."""

    runs: list[Path]
    configs: list[dict[str, Any]]
    run_provenance: list[Any]
    config: dict[str, Any]
    labels_csv: Path


def _plan(args: argparse.Namespace) -> _Plan:
    labels_csv = Path(args.labels_csv) if args.labels_csv else _default_labels_csv(
        args.eval_data_pattern)
    runs = [Path(d).expanduser() for d in args.train_dir]
    configs, run_provenance = _read_runs(runs)
    return _Plan(runs, configs, run_provenance, _bundle_config(args.name, runs, configs),
                 labels_csv)


def _write_bundle(tmp: Path, plan: _Plan, args: argparse.Namespace,
                  argv: list[str] | None) -> None:
    """Every file of the bundle into ``tmp``, its metrics computed on the loaded bundle."""
    from yt8m.bundle import BundleWriter, load_keras_bundle, read_labels
    from yt8m.eval import evaluate_predictor

    config = plan.config
    _write_members(tmp, plan.runs, plan.configs, config, args.weights_dtype)
    writer = BundleWriter(tmp)
    writer.config(config)
    n_labels = writer.labels(*read_labels(plan.labels_csv))
    if n_labels != config["num_classes"]:
        raise ExportError(f"{plan.labels_csv}: {n_labels} labels for {config['num_classes']} "
                          f"classes")
    metrics = evaluate_predictor(load_keras_bundle(tmp), args.eval_data_pattern,
                                 cache_dir=args.data_cache_dir)
    writer.metrics(metrics, sort_keys=True)
    writer.provenance(_provenance(args, argv, plan.labels_csv, plan.run_provenance))
    size = sum(f.stat().st_size for f in tmp.iterdir())
    if size > args.max_size_mb * 1e6:
        raise ExportError(f"bundle is {size / 1e6:.1f} MB > --max_size_mb={args.max_size_mb}")


def export(args: argparse.Namespace, argv: list[str] | None = None) -> Path:
    """Write the bundle in a temporary directory beside its destination, then move it in.

    A failed export leaves no partial bundle, and an existing one (``--force``) is
    replaced only by a complete one.
    """
    from yt8m.paths import models_dir

    dest = Path(args.output_dir).expanduser() if args.output_dir else models_dir() / args.name
    if dest.exists() and not args.force:
        raise ExportError(f"{dest} exists (use --force to replace it)")
    plan = _plan(args)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.name}.", dir=dest.parent))
    try:
        _write_bundle(tmp, plan, args, argv)
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _expand(pattern: str) -> list[str]:
    from yt8m.reader import expand_pattern

    return expand_pattern(pattern)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from yt8m.bundle import METRICS_FILE, BundleError
    from yt8m.eval import format_table
    from yt8m.reader import ReaderError

    try:
        dest = export(args, argv)
    except (ExportError, BundleError, ReaderError, FileNotFoundError, ValueError,
            OSError) as exc:
        print(f"yt8m.export: error: {exc}", file=sys.stderr)
        return 2
    metrics = json.loads((dest / METRICS_FILE).read_text(encoding="utf-8"))
    size = sum(f.stat().st_size for f in dest.iterdir())
    print(format_table(metrics, f"bundle {dest} ({size / 1e6:.2f} MB)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

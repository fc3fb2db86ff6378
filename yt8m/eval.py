"""Evaluate a trained model or a bundle on AudioSet TFRecords (``python -m yt8m.eval``).

    python -m yt8m.eval --eval_data_pattern='../shared/data/audioset_v1_embeddings/eval/*.tfrecord' \\
        --train_dir=runs/lstm            # best checkpoint of a training run
    python -m yt8m.eval --eval_data_pattern=... --bundle=audioset-ensemble-v3   # a bundle

Prints hit@1, PERR, GAP@20, mAP, macro AUC and d′ as a table and writes them as JSON
(``--output_json``; default ``<train_dir>/eval_metrics.json`` for a training run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from yt8m.paths import add_scoring_flags

METRIC_ROWS = (("hit_at_one", "hit@1"), ("perr", "PERR"), ("gap", "GAP@20"), ("map", "mAP"),
               ("auc", "AUC"), ("d_prime", "d′"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m yt8m.eval",
                                description="Evaluate a classifier on AudioSet TFRecords.")
    p.add_argument("--eval_data_pattern", required=True, help="glob(s) of eval TFRecords")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--train_dir", help="a yt8m.train directory (its best weights)")
    src.add_argument("--bundle", help="bundle name (under the models dir) or path")
    p.add_argument("--output_json", default=None, help="where to write the metrics")
    p.add_argument("--top_k", type=int, default=20, help="GAP@k")
    p.add_argument("--reader_on_error", choices=("skip", "raise"), default="skip")
    add_scoring_flags(p)
    return p


def load_train_dir(train_dir: str | os.PathLike[str]):
    """A :class:`yt8m.bundle.Bundle`-like predictor over a training run's best weights."""
    from yt8m.bundle import Bundle, build_members
    from yt8m.train import BEST_WEIGHTS, FLAGS_FILE

    d = Path(train_dir).expanduser()
    flags = d / FLAGS_FILE
    weights = d / BEST_WEIGHTS
    for f in (flags, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: is {d} a finished yt8m.train directory?")
    config = json.loads(flags.read_text(encoding="utf-8"))["config"]
    members = build_members(config, [weights])
    n = int(config["num_classes"])
    return Bundle(name=d.name, path=d, config=config, labels=[str(i) for i in range(n)],
                  label_ids=[str(i) for i in range(n)], members=members)


def evaluate_predictor(predictor, pattern: str, on_error: str = "skip",
                       cache_dir: str | None = None, top_k: int = 20) -> dict[str, Any]:
    """Score every clip of ``pattern`` with ``predictor.predict`` and compute all metrics."""
    from yt8m import metrics
    from yt8m.reader import ReaderConfig, load_clips_cached

    clips = load_clips_cached(pattern, ReaderConfig.for_bundle(predictor.config, on_error),
                              cache_dir or None)
    t0 = time.monotonic()
    scores = predictor.predict(clips.frames, clips.num_frames)
    predict_seconds = time.monotonic() - t0
    result: dict[str, Any] = metrics.evaluate(scores, clips.labels, top_k=top_k)
    result.update(eval_data_pattern=pattern, num_files=len(clips.files),
                  skipped_malformed=clips.skipped, predict_seconds=round(predict_seconds, 2),
                  top_k=top_k)
    return result


def format_table(result: dict[str, Any], title: str = "") -> str:
    lines = [title] if title else []
    lines += [f"{label:<8}{result[key]:.4f}" for key, label in METRIC_ROWS]
    lines.append(f"{'clips':<8}{result['num_clips']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from yt8m.bundle import BundleError, load_keras_bundle
    from yt8m.reader import ReaderError

    try:
        from yt8m.train import configure_threads

        configure_threads(args.num_threads)
        predictor = load_train_dir(args.train_dir) if args.train_dir else load_keras_bundle(args.bundle)
        result = evaluate_predictor(predictor, args.eval_data_pattern, args.reader_on_error,
                                    args.data_cache_dir, args.top_k)
    except (BundleError, ReaderError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"yt8m.eval: error: {exc}", file=sys.stderr)
        return 2
    result["source"] = str(args.train_dir or predictor.path)
    out = args.output_json or (Path(args.train_dir) / "eval_metrics.json" if args.train_dir
                               else None)
    print(format_table(result, f"{predictor.name} on {args.eval_data_pattern}"))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n",
                             encoding="utf-8")
        print(f"metrics written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

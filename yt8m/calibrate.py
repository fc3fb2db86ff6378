"""Per-class thresholds and metrics of a bundle (``python -m yt8m.calibrate BUNDLE``).

    D=../shared/data/audioset_v1_embeddings
    python -m yt8m.calibrate models/audioset-logistic-v1 \\
        --train_data_pattern="$D/bal_train/*.tfrecord" --eval_data_pattern="$D/eval/*.tfrecord"
    python -m yt8m.calibrate models/audioset-ensemble-v3 --validation_bundle=TWIN ...

1. **Validation scores.** The validation split is carved from ``bal_train`` exactly as
   training carved it (``yt8m.training.data.split_validation``: the fraction and seed its
   members' ``provenance.json`` record, all members alike), and checked against the
   recorded clip counts and the data's digest. Eval is never used to choose anything.
   A bundle whose members trained on every ``bal_train`` clip (the *refit* step) has no
   held-out clip: ``--validation_bundle`` then names its *validation twin*, the same
   recipe trained with the split held out, whose validation scores choose the thresholds.
2. **Thresholds** (``yt8m.thresholds``): per class, the threshold of maximum F1
   (``config.json`` ``"class_thresholds"``, a list aligned with the labels, which the
   application reads: the event detector's per-sound defaults and ``--threshold
   calibrated``) and the lowest threshold of precision >= 0.8 (``"class_thresholds_p80"``,
   null where none reaches it). With ~6 validation positives per class a raw max-F1
   threshold is mostly noise, so each is shrunk toward the single global threshold of best
   validation macro F1, by an amount chosen by cross-validation within the validation
   split (``yt8m.thresholds.cross_validate_shrinkage``; the raw values stay in
   ``class_metrics.csv``). *Fallback*: a class without a validation positive gets that
   global threshold (listed in ``calibration.json``), never a value chosen on eval.
3. **Eval metrics** of the bundle itself: ``class_metrics.csv`` (AP, AUC, the thresholds
   with precision and recall on eval at each, positives in training, validation and
   eval) and ``calibration.json`` (how the thresholds were chosen; micro/macro F1 on eval
   at the calibrated thresholds, at the global 0.1 and at the best global threshold
   chosen on validation).

None of these is part of the bundle's fingerprint (``yt8m.bundle.format.fingerprint``):
calibrating changes no score, so a TFLite export made before stays valid.
Scoring uses the Keras runtime: 20k eval clips take ~1 min there against ~7 min one
clip at a time in LiteRT; the threshold search and metrics are numpy.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggish.errors import AudioAnalysisError
from yt8m import thresholds as th
from yt8m.bundle.format import (
    CALIBRATION_FILE,
    CLASS_METRICS_FILE,
    LABELS_FILE,
    PROVENANCE_FILE,
    read_config,
    read_labels,
)
from yt8m.paths import add_scoring_flags

logger = logging.getLogger("yt8m.calibrate")

MIN_PRECISION = 0.8
GLOBAL_DEFAULT = 0.1
"""The application's global ranking threshold (``audio.settings.DEFAULT_THRESHOLD``,
the original's PREDICTIONS_HIT_LIMIT), the baseline the calibration is compared with."""
CV_FOLDS = 5
CV_SEED = 0
CSV_COLUMNS = ("index", "mid", "display_name", "ap", "auc", "threshold", "precision",
               "recall", "f1", "threshold_max_f1", "threshold_p80", "precision_p80", "recall_p80",
               "train_positives", "validation_positives", "eval_positives")


class CalibrationError(AudioAnalysisError, ValueError):
    """The bundle cannot be calibrated as asked (no held-out split, data mismatch)."""


@dataclass(frozen=True)
class Split:
    """How a bundle's members carved their validation split (fraction 0: none)."""

    fraction: float
    seed: int
    num_validation: int
    num_train: int
    data_digest: str | None


def bundle_split(bundle: Path) -> Split:
    """The split every member of ``bundle`` trained with (they must agree)."""
    prov = json.loads((bundle / PROVENANCE_FILE).read_text(encoding="utf-8"))
    members = [m for m in prov.get("members", []) if m]
    if not members:
        raise CalibrationError(f"{bundle}: provenance.json records no training run")
    splits = set()
    for m in members:
        val = m.get("validation") or {}
        if "carved_fraction" not in val:
            raise CalibrationError(f"{bundle}: a member validated on other files "
                                   f"({val}); only a split carved from training is supported")
        fraction = float(val["carved_fraction"])
        # Nothing carved (the refit step): the seed chose no split, members may differ.
        splits.add((fraction, int(val["seed"]) if fraction > 0 else 0,
                    int(m.get("num_validation_clips") or 0), int(m["num_train_clips"]),
                    (m.get("train_data") or {}).get("sha256_of_file_sha256s")))
    if len(splits) != 1:
        raise CalibrationError(f"{bundle}: its members trained on different splits "
                               f"{sorted(splits)}; no clip is held out from all of them")
    return Split(*splits.pop())


def load_train_clips(pattern: str, config: dict[str, Any], cache_dir: str | None):
    """``bal_train`` decoded as training decoded it (same reader settings, same cache)."""
    from yt8m.reader import ReaderConfig, load_clips_cached

    return load_clips_cached(pattern, ReaderConfig.for_bundle(config), cache_dir or None)


def carve(clips, split: Split, where: Path):
    """(train, validation) clips of ``split``, checked against what training recorded."""
    from yt8m.provenance import files_digest
    from yt8m.training.data import split_validation

    if split.data_digest is not None:
        digest = files_digest(clips.files)["sha256_of_file_sha256s"]
        if digest != split.data_digest:
            raise CalibrationError(f"{where}: the training data differ from the files its "
                                   f"runs trained on (digest {digest[:12]} ≠ "
                                   f"{split.data_digest[:12]})")
    train, validation = split_validation(clips, split.fraction, split.seed)
    got = (len(train), 0 if validation is None else len(validation))
    if got != (split.num_train, split.num_validation):
        raise CalibrationError(f"{where}: carving gives {got[0]} train / {got[1]} validation "
                               f"clips, training recorded {split.num_train} / "
                               f"{split.num_validation}")
    return train, validation


def score(bundle: Path, clips) -> np.ndarray:
    from yt8m.bundle.loader import load_classifier

    classifier = load_classifier(bundle, prefer_tflite=False)
    return np.asarray(classifier.predict(clips.frames, clips.num_frames), dtype=np.float64)


@dataclass(frozen=True)
class Choice:
    """The thresholds chosen on validation: raw per class, and as shipped (shrunk)."""

    chosen: th.ClassThresholds
    thresholds: np.ndarray
    """What ``config.json`` gets: max F1 shrunk toward ``global_macro`` with ``k``."""
    global_micro: float
    global_macro: float
    k: float
    cv: dict[float, th.F1Summary]


def choose(val_scores: np.ndarray, val_labels: np.ndarray) -> Choice:
    chosen = th.choose_thresholds(val_scores, val_labels, MIN_PRECISION)
    micro, _ = th.best_global_threshold(val_scores, val_labels, "micro_f1")
    macro, _ = th.best_global_threshold(val_scores, val_labels, "macro_f1")
    k, cv = th.cross_validate_shrinkage(val_scores, val_labels, folds=CV_FOLDS, seed=CV_SEED)
    return Choice(chosen, th.shrink(chosen.max_f1, chosen.positives, macro, k), micro, macro,
                  k, cv)


def class_rows(labels: tuple[list[str], list[str]], choice: Choice, eval_scores: np.ndarray,
               eval_labels: np.ndarray, train_positives: np.ndarray) -> list[dict[str, Any]]:
    """One ``class_metrics.csv`` row per class (eval figures; NaN → empty cell)."""
    from yt8m import metrics

    ap = metrics.per_class_average_precision(eval_scores, eval_labels)
    auc = metrics.per_class_auc(eval_scores, eval_labels)
    tp, fp, pos = th.counts_at(eval_scores, eval_labels, choice.thresholds)
    precision, recall = th.precision_recall(tp, fp, pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(pos > 0, 2.0 * tp / (2.0 * tp + fp + (pos - tp)), np.nan)
    has_p80 = ~np.isnan(choice.chosen.precise)
    tp8, fp8, _ = th.counts_at(eval_scores, eval_labels,
                               np.where(has_p80, choice.chosen.precise, th.TOP))
    precision8, recall8 = (np.where(has_p80, x, np.nan)
                           for x in th.precision_recall(tp8, fp8, pos))
    columns = {"ap": ap, "auc": auc, "threshold": choice.thresholds, "precision": precision,
               "recall": recall, "f1": f1, "threshold_max_f1": choice.chosen.max_f1,
               "threshold_p80": choice.chosen.precise,
               "precision_p80": precision8, "recall_p80": recall8,
               "train_positives": train_positives, "validation_positives":
               choice.chosen.positives, "eval_positives": pos}
    mids, names = labels
    return [{"index": i, "mid": mids[i], "display_name": names[i],
             **{k: v[i] for k, v in columns.items()}} for i in range(len(names))]


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for row in rows:
        w.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else repr(float(value))
    return str(value)


def eval_summaries(choice: Choice, scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Micro/macro F1 on eval for each way of deciding."""
    p80 = np.nan_to_num(choice.chosen.precise, nan=th.TOP)
    cases = {
        "calibrated": choice.thresholds,
        "calibrated_raw_max_f1": th.with_fallback(choice.chosen.max_f1, choice.global_macro),
        "calibrated_p80": p80,
        f"global_{GLOBAL_DEFAULT:g}": GLOBAL_DEFAULT,
        "global_best_micro_f1_on_validation": choice.global_micro,
        "global_best_macro_f1_on_validation": choice.global_macro,
    }
    return {name: th.f1_summary(scores, labels, t).as_dict() for name, t in cases.items()}


def calibration_record(choice: Choice, validation: dict[str, Any], summaries: dict[str, Any],
                       names: list[str], eval_info: dict[str, Any]) -> dict[str, Any]:
    no_pos = [names[i] for i in np.flatnonzero(choice.chosen.positives == 0)]
    return {
        "validation": validation,
        "rule": {
            "decision": "a class is predicted when its score is > its threshold",
            "class_thresholds": "maximum F1 on the validation split, shrunk toward the "
                                "global threshold of best validation macro F1 in logit space with weight P / (P + k) "
                                "(P: the class's validation positives; k chosen by "
                                f"{CV_FOLDS}-fold cross-validation of macro F1 within the "
                                f"validation split, folds seeded {CV_SEED})",
            "class_thresholds_p80": f"lowest threshold of precision >= {MIN_PRECISION} on the "
                                    f"validation split (null: no threshold reaches it)",
            "fallback": "classes without a validation positive: the global threshold of "
                        "best validation macro F1",
        },
        "shrinkage": {"k": None if np.isinf(choice.k) else choice.k,  # None: global only
                      "cross_validation": {
            f"{k:g}": summary.as_dict() for k, summary in choice.cv.items()}},
        "global_thresholds_on_validation": {"micro_f1": choice.global_micro,
                                            "macro_f1": choice.global_macro},
        "classes_without_validation_positives": no_pos,
        "classes_without_p80": int(np.isnan(choice.chosen.precise).sum()),
        "eval": {**eval_info, "f1": summaries},
    }


def calibrate(bundle: Path, train_pattern: str, eval_pattern: str,
              validation_bundle: Path | None = None, cache_dir: str | None = None
              ) -> dict[str, Any]:
    """Choose the thresholds on validation, measure on eval, write them into ``bundle``."""
    config = read_config(bundle)
    labels = read_labels(bundle / LABELS_FILE)
    source = validation_bundle or bundle
    if read_labels(source / LABELS_FILE) != labels:
        raise CalibrationError(f"{source} and {bundle} do not have the same classes")
    held, own = bundle_split(source), bundle_split(bundle)
    if held.fraction == 0:
        raise CalibrationError(
            f"{source}: its members trained on every clip of the training data, none is "
            f"held out; give --validation_bundle, the same recipe trained with the "
            f"validation split held out")
    clips = load_train_clips(train_pattern, config, cache_dir)
    _, validation = carve(clips, held, source)
    trained, _ = carve(clips, own, bundle)
    logger.info("validation: %d clips (fraction %g, seed %d) scored by %s",
                len(validation), held.fraction, held.seed, source)
    choice = choose(score(source, validation), validation.labels)
    eval_clips = load_train_clips(eval_pattern, config, cache_dir)
    eval_scores = score(bundle, eval_clips)
    rows = class_rows(labels, choice, eval_scores, eval_clips.labels,
                      (trained.labels > 0).sum(axis=0))
    record = calibration_record(
        choice, {"scored_by": source.name, "fraction": held.fraction, "seed": held.seed,
                 "clips": len(validation), "train_data_pattern": train_pattern},
        eval_summaries(choice, eval_scores, eval_clips.labels), labels[1],
        {"data_pattern": eval_pattern, "clips": len(eval_clips)})
    write(bundle, config, choice, rows, record)
    return record


def write(bundle: Path, config: dict[str, Any], choice: Choice, rows: list[dict[str, Any]],
          record: dict[str, Any]) -> None:
    """The thresholds into ``config.json``; ``class_metrics.csv``; ``calibration.json``."""
    from yt8m.bundle.writer import BundleWriter

    config = dict(config)
    config["class_thresholds"] = [float(t) for t in choice.thresholds]
    config["class_thresholds_p80"] = [None if np.isnan(t) else float(t)
                                      for t in choice.chosen.precise]
    out = BundleWriter(bundle)
    out.config(config)
    out.data(CLASS_METRICS_FILE, csv_text(rows).encode("utf-8"))
    out.json(CALIBRATION_FILE, record)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m yt8m.calibrate",
                                description="Per-class thresholds (chosen on the validation "
                                            "split) and eval metrics of a bundle.")
    p.add_argument("bundle", help="bundle directory (or name under the models dir)")
    p.add_argument("--train_data_pattern", required=True,
                   help="the training TFRecords its runs carved their validation split from")
    p.add_argument("--eval_data_pattern", required=True, help="eval TFRecords (metrics only)")
    p.add_argument("--validation_bundle", default=None,
                   help="the validation twin of a bundle refit on every training clip")
    add_scoring_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from yt8m.bundle.format import locate_bundle
    from yt8m.train import configure_threads

    try:
        configure_threads(args.num_threads)
        bundle = locate_bundle(args.bundle)
        twin = locate_bundle(args.validation_bundle) if args.validation_bundle else None
        record = calibrate(bundle, args.train_data_pattern, args.eval_data_pattern, twin,
                           args.data_cache_dir)
    except (AudioAnalysisError, OSError, ValueError, KeyError) as exc:
        print(f"yt8m.calibrate: error: {exc}", file=sys.stderr)
        return 2
    for name, f1 in record["eval"]["f1"].items():
        print(f"{name:<38} micro F1 {f1['micro_f1']:.4f}  macro F1 {f1['macro_f1']:.4f}")
    print(f"wrote {bundle / CLASS_METRICS_FILE}, {bundle / CALIBRATION_FILE} and the "
          f"thresholds in {bundle / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A teacher's soft scores on the training clips, for distillation
(``python -m yt8m.distill``).

    python -m yt8m.distill audioset-ensemble-v3 \\
        --train_data_pattern='../shared/data/audioset_v1_embeddings/bal_train/*.tfrecord' \\
        --output=runs/teacher/audioset-ensemble-v3.npz

A student is then trained with ``python -m yt8m.train --teacher_scores=FILE
--distill_weight=λ`` on targets ``λ·teacher + (1 − λ)·labels`` (Hinton et al. 2015, with
the multi-label sigmoid outputs of YouTube-8M's cross-entropy instead of a softmax).

Why a file, not the teacher in the training loop: scoring 22,160 clips with a six-member
ensemble costs minutes once; every epoch of every student run would pay it again. The
file keys each score row by ``video_id``, so a student's validation split (carved by its
own seed) takes exactly the rows of its training clips, and it records the teacher's
fingerprint and the data digest so that provenance can say what the student learnt from.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.paths import add_scoring_flags
from yt8m.training.teacher import (  # noqa: F401  (the file format, re-exported)
    TeacherScores,
    TeacherScoresError,
    load_teacher_scores,
    write_teacher_scores,
)

logger = logging.getLogger("yt8m.distill")


def score_clips(bundle_name: str, pattern: str,
                cache_dir: str | None) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """(clips, teacher scores, what they came from) for every clip of ``pattern``, scored
    as the application scores them."""
    from yt8m import provenance
    from yt8m.bundle import load_keras_bundle
    from yt8m.bundle.format import fingerprint
    from yt8m.reader import ReaderConfig, load_clips_cached

    bundle = load_keras_bundle(bundle_name)
    clips = load_clips_cached(pattern, ReaderConfig.for_bundle(bundle.config), cache_dir or None)
    scores = bundle.predict(clips.frames, clips.num_frames)
    meta = {"teacher": bundle.name, "teacher_path": str(bundle.path),
            "teacher_fingerprint": fingerprint(bundle.path),
            "train_data": {"pattern": pattern, "clips": len(clips),
                           **provenance.files_digest(clips.files)}}
    return clips, scores, meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m yt8m.distill",
                                description="Write a teacher bundle's scores on the training "
                                            "clips, the targets of a distilled student.")
    p.add_argument("bundle", help="teacher bundle (name under the models dir, or path)")
    p.add_argument("--train_data_pattern", required=True, help="glob(s) of training TFRecords")
    p.add_argument("--output", required=True, help="the .npz to write")
    add_scoring_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from yt8m.bundle import BundleError
    from yt8m.reader import ReaderError
    from yt8m.training.run import configure_threads

    try:
        configure_threads(args.num_threads)
        clips, scores, meta = score_clips(args.bundle, args.train_data_pattern,
                                          args.data_cache_dir)
        write_teacher_scores(Path(args.output), clips.video_ids, scores, meta)
    except (BundleError, ReaderError, OSError) as exc:
        print(f"yt8m.distill: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(clips)} clips scored by {meta['teacher']}; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

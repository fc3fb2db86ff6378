"""A teacher's scores on the training clips, as training reads them (written by
``python -m yt8m.distill``): an ``.npz`` of ``video_ids``, float16 ``scores`` and a JSON
``meta`` saying which bundle scored which data.

Keyed by ``video_id`` so that a student's validation split, carved by its own seed,
takes exactly the rows of its training clips.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggish.errors import AudioAnalysisError
from vggish.files import sha256_file


class TeacherScoresError(AudioAnalysisError, ValueError):
    """A teacher-scores file that is missing, unreadable or does not cover the clips."""


@dataclass(frozen=True)
class TeacherScores:
    """Soft scores (N, num_classes) float16 keyed by ``video_ids``, and where they came from."""

    video_ids: np.ndarray
    scores: np.ndarray
    meta: dict[str, Any]
    path: Path

    def for_clips(self, video_ids: np.ndarray) -> np.ndarray:
        """The score rows of ``video_ids`` (float32, in that order); every clip must be
        present: a student must never train on a clip its teacher did not score."""
        index = {v: i for i, v in enumerate(self.video_ids.tolist())}
        missing = [v for v in video_ids.tolist() if v not in index]
        if missing:
            raise TeacherScoresError(
                f"{self.path}: {len(missing)} training clips have no teacher score "
                f"(first: {missing[0]!r}); was it made from the same --train_data_pattern?")
        rows = np.fromiter((index[v] for v in video_ids.tolist()), np.int64, len(video_ids))
        return self.scores[rows].astype(np.float32)

    def sha256(self) -> str:
        return sha256_file(self.path)


def load_teacher_scores(path: str | os.PathLike[str], num_classes: int) -> TeacherScores:
    p = Path(path).expanduser()
    try:
        with np.load(p, allow_pickle=False) as z:
            ids, scores = z["video_ids"], z["scores"]
            meta = json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise TeacherScoresError(f"cannot read teacher scores {p}: {exc}") from None
    if scores.ndim != 2 or scores.shape != (len(ids), num_classes):
        raise TeacherScoresError(f"{p}: scores have shape {scores.shape}, expected "
                                 f"({len(ids)}, {num_classes})")
    if not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
        raise TeacherScoresError(f"{p}: scores must be probabilities in [0, 1]")
    return TeacherScores(ids, scores, meta, p)


def write_teacher_scores(output: Path, video_ids: np.ndarray, scores: np.ndarray,
                         meta: dict[str, Any]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp.npz")
    np.savez(tmp, video_ids=video_ids, scores=scores.astype(np.float16),
             meta=np.array(json.dumps(meta, sort_keys=True)))
    os.replace(tmp, output)

"""Which bundle the TensorFlow-free path serves by default: the rule of issue 18.

The shipped ensemble is the most accurate classifier but its TFLite export is ~19 MB and
costs six models per clip; the distilled student is one model of ~2 MB. The student is the
edge default only while its *published* eval mAP (``metrics.json``, asserted in CI) is
within :data:`EDGE_MAP_TOLERANCE` of the ensemble's; otherwise the edge runs the ensemble
(its export keeps int8 weights). The decision is read from the bundles' measured figures
each time, never fixed in code, so retraining either bundle can flip it.

Where it applies: ``python -m audio.export`` without ``--model`` exports the edge bundle,
and a run without ``--model`` (nor ``$AUDIO_ANALYSIS_MODEL``) uses the default bundle's
TFLite export when there is one, else the edge bundle's, else the default bundle through
TensorFlow (``yt8m.bundle.loader.choose_runtime``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from yt8m.bundle.format import DEFAULT_BUNDLE, METRICS_FILE, resolve_bundle_path

STUDENT_BUNDLE = "audioset-student-v1"
"""The distilled single-model bundle (``make results``), the edge candidate."""
EDGE_MAP_TOLERANCE = 0.01
"""How much eval mAP the student may lose against the ensemble and still be the default."""


@dataclass(frozen=True)
class EdgeChoice:
    """The bundle chosen for the edge and why (the measured figures behind the rule)."""

    path: Path
    reason: str


def _published_map(path: Path) -> float | None:
    try:
        value = json.loads((path / METRICS_FILE).read_text(encoding="utf-8"))["map"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def edge_bundle(models_dir: str | os.PathLike[str] | None = None) -> EdgeChoice:
    """The student when its published eval mAP is within 0.01 of the default bundle's,
    else the default bundle."""
    default = resolve_bundle_path(DEFAULT_BUNDLE, models_dir)
    student = resolve_bundle_path(STUDENT_BUNDLE, models_dir)
    big, small = _published_map(default), _published_map(student)
    if small is None:
        return EdgeChoice(default, f"no published eval mAP for {student.name}")
    if big is None:
        return EdgeChoice(student, f"no published eval mAP for {default.name}")
    if small >= big - EDGE_MAP_TOLERANCE:
        return EdgeChoice(student, f"{student.name} eval mAP {small:.4f} is within "
                                   f"{EDGE_MAP_TOLERANCE} of {default.name}'s {big:.4f}")
    return EdgeChoice(default, f"{student.name} eval mAP {small:.4f} is more than "
                               f"{EDGE_MAP_TOLERANCE} below {default.name}'s {big:.4f}")


"""Where the project's files live, for ``yt8m`` and ``audio``.

``PROJECT_ROOT`` is anchored on this file, never on the working directory. The models
directory (``$AUDIO_ANALYSIS_MODELS_DIR``, else ``models/`` in the project root) is
defined once, in ``vggish.files``, because the bottom layer needs it too (``python -m
vggish.export`` finds the checkpoint on its own); it is named here for this package's
modules.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vggish.environment import MODELS_DIR_ENV, models_dir

__all__ = ["DEFAULT_CACHE_DIR", "MODELS_DIR_ENV", "PROJECT_ROOT", "add_scoring_flags",
           "models_dir"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = PROJECT_ROOT / "runs" / "cache"
"""The decoded-data cache of every command that reads AudioSet TFRecords."""


def add_scoring_flags(p: argparse.ArgumentParser) -> None:
    """``--data_cache_dir`` and ``--num_threads``, as every command that decodes and
    scores AudioSet TFRecords takes them (eval, calibrate, distill)."""
    p.add_argument("--data_cache_dir", default=str(DEFAULT_CACHE_DIR),
                   help="decoded-data cache ('' disables)")
    p.add_argument("--num_threads", type=int, default=os.cpu_count() or 1)

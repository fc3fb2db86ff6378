"""Where model files live: the one definition shared by ``yt8m`` and ``audio``.

``$AUDIO_ANALYSIS_MODELS_DIR`` when set, otherwise ``models/`` in the project root,
anchored on this file, never on the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_DIR_ENV = "AUDIO_ANALYSIS_MODELS_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else PROJECT_ROOT / "models"

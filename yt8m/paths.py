"""Where the project's files live, for ``yt8m`` and ``audio``.

``PROJECT_ROOT`` is anchored on this file, never on the working directory. The models
directory (``$AUDIO_ANALYSIS_MODELS_DIR``, else ``models/`` in the project root) is
defined once, in ``vggish.files``, because the bottom layer needs it too (``python -m
vggish.export`` finds the checkpoint on its own); it is named here for this package's
modules.
"""

from __future__ import annotations

from pathlib import Path

from vggish.environment import MODELS_DIR_ENV, models_dir

__all__ = ["MODELS_DIR_ENV", "PROJECT_ROOT", "models_dir"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

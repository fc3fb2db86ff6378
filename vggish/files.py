"""Where the model files live by default, and writing files so no reader sees half of one.

The bottom layer holds these because ``python -m vggish.export`` must find the VGGish
checkpoint and its exports on its own, and this package imports nothing of ``yt8m`` or
``audio``; those build on this one definition (``yt8m.paths``, ``audio.downloads``) rather
than repeat it.

The models directory and the flag > environment > default rule are
``vggish.environment``'s (``models_dir``, ``model_file``); this module names the
checkpoint's default file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from vggish.environment import VGGISH_CHECKPOINT_ENV, model_file

VGGISH_CHECKPOINT_FILE = "vggish_model.ckpt"


def resolve_vggish_checkpoint(override: str | os.PathLike[str] | None = None) -> Path:
    """Flag > ``$AUDIO_ANALYSIS_VGGISH_CHECKPOINT`` > ``models_dir()/vggish_model.ckpt``."""
    return model_file(override, VGGISH_CHECKPOINT_ENV, VGGISH_CHECKPOINT_FILE)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it.

    A reader (another process loading a model, a sidecar check) sees the old file or the
    new one, never a truncated one. Parent folders are created; the mode is what a plain
    ``open(path, "wb")`` would give.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; these files are not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

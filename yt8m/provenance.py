"""Provenance of training runs and bundles: what data, which code, which machine."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yt8m.paths import PROJECT_ROOT


def git_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """HEAD and whether the yt8m sources differ from it (best effort: no git → None)."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "yt8m"],
                               capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
        return {"commit": head, "yt8m_sources_modified": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "yt8m_sources_modified": None}


def files_digest(files: Sequence[str]) -> dict[str, Any]:
    """Count, bytes and one sha256 over the sorted (basename, sha256 of content) pairs."""
    total = hashlib.sha256()
    size = 0
    for f in sorted(files):
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            data = fh.read()
        h.update(data)
        size += len(data)
        total.update(f"{os.path.basename(f)} {h.hexdigest()}\n".encode())
    return {"num_files": len(files), "bytes": size, "sha256_of_file_sha256s": total.hexdigest()}


def machine() -> dict[str, Any]:
    import numpy as np

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        import keras

        info["keras"] = keras.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()

"""The one writer of bundle files: ``yt8m.export``, custom heads and the TFLite export.

Every file goes through :func:`atomic_write` (a temporary file renamed over the target),
so a process loading a bundle or checking an export's sidecar never reads half a file.
JSON files are indented by two spaces and end with a newline, as people read them.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vggish.files import atomic_write
from yt8m.bundle.format import CONFIG_FILE, LABELS_FILE, METRICS_FILE, PROVENANCE_FILE, write_labels

__all__ = ["BundleWriter", "atomic_write"]


class BundleWriter:
    """Writes the files of one bundle (or export) directory, creating it if needed."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def data(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        atomic_write(path, data)
        return path

    def json(self, name: str, obj: Any, *, sort_keys: bool = False) -> Path:
        return self.data(name, (json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n").encode())

    def config(self, config: Mapping[str, Any]) -> Path:
        return self.json(CONFIG_FILE, config)

    def metrics(self, metrics: Mapping[str, Any], *, sort_keys: bool = False) -> Path:
        return self.json(METRICS_FILE, metrics, sort_keys=sort_keys)

    def provenance(self, provenance: Mapping[str, Any]) -> Path:
        return self.json(PROVENANCE_FILE, provenance)

    def labels(self, mids: Sequence[str], names: Sequence[str]) -> int:
        return write_labels(self.directory / LABELS_FILE, mids, names)

    def arrays(self, name: str, arrays: Mapping[str, np.ndarray]) -> Path:
        """A ``.npz`` of named arrays (``np.savez``, uncompressed)."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return self.data(name, buffer.getvalue())

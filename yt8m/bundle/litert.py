"""The LiteRT runtime of a bundle: its TFLite export, run without TensorFlow.

``python -m audio.export --model NAME`` (``yt8m.bundle.tflite_export``) freezes a Keras
bundle's whole scoring function (dequantise, per-frame L2 normalisation, every ensemble
member, averaging) into ``models/exported/<bundle>/classifier.tflite``, with a sidecar
``export.json`` recording the sha256 of the bundle's files. :func:`find_bundle_export`
returns the export only while those files are unchanged, so an edited or retrained bundle
is never shadowed by a stale export.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from yt8m.bundle.format import LABELS_FILE, InputContract, fingerprint, read_config, read_labels

logger = logging.getLogger(__name__)

EXPORT_FILE = "classifier.tflite"
EXPORT_SIDECAR = "export.json"


def export_dir_for(bundle_path: Path) -> Path:
    """Where a bundle's TFLite export lives: ``<VGGish export dir>/<bundle name>/``."""
    from vggish.export import default_export_dir

    return default_export_dir() / bundle_path.resolve().name


class TFLiteBundle(InputContract):
    """A bundle's exported scoring function run by LiteRT (no TensorFlow)."""

    def __init__(self, bundle_path: Path, tflite_path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        config = read_config(bundle_path)
        self.path = bundle_path
        self.config = config
        self.name = config.get("name", bundle_path.name)
        self.label_ids, self.labels = read_labels(bundle_path / LABELS_FILE)
        self._it = Interpreter(model_path=str(tflite_path))
        inputs = self._it.get_input_details()
        self._frames_in = next(int(d["index"]) for d in inputs if len(d["shape"]) == 3)
        self._count_in = next(int(d["index"]) for d in inputs if len(d["shape"]) == 1)
        self._out = int(self._it.get_output_details()[0]["index"])
        self._it.allocate_tensors()

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def predict(self, embeddings: np.ndarray, num_frames: np.ndarray | None = None) -> np.ndarray:
        """(N, C) scores, one clip per call: the export takes a zero-padded (1, max_frames)."""
        x = np.asarray(embeddings)
        if x.ndim != 3 or x.shape[2] != self.feature_size or x.dtype != np.uint8:
            raise ValueError(f"embeddings must be uint8 (N, frames, {self.feature_size}), "
                             f"got {x.dtype} {x.shape}")
        n, t = x.shape[:2]
        t_keep = min(t, self.max_frames)
        x = np.ascontiguousarray(x[:, :t_keep])
        nf = (np.full(n, t_keep) if num_frames is None
              else np.minimum(np.asarray(num_frames).reshape(-1), t_keep)).astype(np.int32)
        out = np.zeros((n, self.num_classes), np.float32)
        clip = np.zeros((1, self.max_frames, self.feature_size), np.uint8)
        for i in range(n):
            clip[:] = 0
            clip[0, :t_keep] = x[i]
            self._it.set_tensor(self._frames_in, clip)
            self._it.set_tensor(self._count_in, nf[i:i + 1])
            self._it.invoke()
            out[i] = self._it.get_tensor(self._out)[0]
        return out


def find_bundle_export(bundle_path: Path) -> Path | None:
    """The ``.tflite`` exported from exactly this bundle's files, else None."""
    out = export_dir_for(bundle_path)
    try:
        sidecar = json.loads((out / EXPORT_SIDECAR).read_text())
    except (OSError, ValueError):
        return None
    if sidecar.get("files") != fingerprint(bundle_path):
        logger.info("TFLite export of %s is stale (bundle changed); using the bundle", bundle_path)
        return None
    target = out / EXPORT_FILE
    return target if target.is_file() and target.stat().st_size == sidecar.get("size") else None

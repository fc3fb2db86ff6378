"""Which runtime serves a bundle: the one loader the application calls.

For a bundle path, :func:`load_classifier` returns a numpy head as it is; else the
bundle's TFLite export when one matches its files (LiteRT, no TensorFlow); else the Keras
bundle (TensorFlow). Every classifier it returns has ``name``, ``path``, ``labels``,
``max_frames``, ``num_classes`` and ``predict(uint8 or float (N, T, D), num_frames) ->
(N, C) float32``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from yt8m.bundle.format import CONFIG_FILE, HEAD_FORMAT, read_config, resolve_bundle_path
from yt8m.bundle.head import is_head_bundle, load_head
from yt8m.bundle.keras_runtime import load_keras_bundle
from yt8m.bundle.litert import TFLiteBundle, find_bundle_export

logger = logging.getLogger(__name__)


def load_classifier(name_or_path: str | os.PathLike[str] | None, prefer_tflite: bool = True) -> Any:
    """A custom head, else a matching TFLite export, else the TensorFlow bundle."""
    path = resolve_bundle_path(name_or_path)
    if is_head_bundle(path):
        return load_head(path)
    if prefer_tflite and (path / CONFIG_FILE).is_file():
        exported = find_bundle_export(path)
        if exported is not None:
            logger.info("classifier %s: using its TFLite export %s", path, exported)
            return TFLiteBundle(path, exported)
    return load_keras_bundle(path)


def bundle_threshold(name_or_path: str | os.PathLike[str] | None) -> float | None:
    """The decision threshold a detector bundle was tuned with, else None.

    Reads only ``config.json`` (cheap: the entry scripts call it while parsing flags).
    """
    if not name_or_path:
        return None
    try:
        config = read_config(resolve_bundle_path(name_or_path))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("format") != HEAD_FORMAT:
        return None
    value = config.get("threshold")
    return float(value) if isinstance(value, (int, float)) and 0 <= value < 1 else None

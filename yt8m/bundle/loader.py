"""Which runtime serves a bundle: the one loader the application calls.

For a bundle path, :func:`load_classifier` returns a numpy head as it is; else the
bundle's TFLite export when one matches its files (LiteRT, no TensorFlow), or without a
bundle asked for, the edge bundle's (:func:`choose_runtime`); else the Keras bundle
(TensorFlow). Every classifier it returns has ``name``, ``path``, ``labels``,
``max_frames``, ``num_classes`` and ``predict(uint8 or float (N, T, D), num_frames) ->
(N, C) float32``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from vggish.environment import MODEL_ENV, env_value
from yt8m.bundle.edge import edge_bundle
from yt8m.bundle.format import CONFIG_FILE, HEAD_FORMAT, read_config, resolve_bundle_path
from yt8m.bundle.head import is_head_bundle, load_head
from yt8m.bundle.keras_runtime import load_keras_bundle
from yt8m.bundle.litert import TFLiteBundle, find_bundle_export

logger = logging.getLogger(__name__)


def choose_runtime(name_or_path: str | os.PathLike[str] | None,
                   prefer_tflite: bool = True) -> tuple[Path, Path | None]:
    """The bundle a run loads and its matching TFLite export (None: TensorFlow runs it).

    A bundle asked for (``--model``, ``$AUDIO_ANALYSIS_MODEL``) is loaded as it is. Without
    one, the default bundle's export is used when there is one, else the edge bundle's
    (:mod:`yt8m.bundle.edge`: the distilled student while the published figures allow),
    so a run after ``python -m audio.export`` needs no TensorFlow. Each bundle's export is
    looked up once: the lookup hashes the bundle's files.
    """
    path = resolve_bundle_path(name_or_path)
    if not prefer_tflite or not (path / CONFIG_FILE).is_file():
        return path, None
    exported = find_bundle_export(path)
    if exported is not None or name_or_path is not None or env_value(MODEL_ENV):
        return path, exported
    choice = edge_bundle()
    edge_export = None if choice.path == path else find_bundle_export(choice.path)
    if edge_export is None:
        return path, None
    logger.info("classifier: %s (the edge default because %s)", choice.path.name,
                choice.reason)
    return choice.path, edge_export


def load_classifier(name_or_path: str | os.PathLike[str] | None, prefer_tflite: bool = True) -> Any:
    """A custom head, else a matching TFLite export (:func:`choose_runtime`), else the
    TensorFlow bundle."""
    path = resolve_bundle_path(name_or_path)
    if is_head_bundle(path):
        return load_head(path)
    path, exported = choose_runtime(name_or_path, prefer_tflite)
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

"""The TFLite export of a Keras bundle (TensorFlow needed here only).

Run by ``python -m audio.export --model NAME``; :mod:`yt8m.bundle.litert` finds and runs
the result without TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from yt8m.bundle.format import fingerprint
from yt8m.bundle.keras_runtime import load_keras_bundle
from yt8m.bundle.litert import EXPORT_FILE, EXPORT_SIDECAR, export_dir_for
from yt8m.bundle.writer import BundleWriter


def int8_weights(config: dict) -> bool:
    """Whether every member of a bundle stores int8 weights (``yt8m.export
    --weights_dtype=int8``): then its export keeps them int8."""
    members = config.get("members") or []
    return bool(members) and all(m.get("weights_dtype") == "int8" for m in members)


def export_bundle(name_or_path: str | os.PathLike[str], out_dir: Path | None = None) -> Path:
    """Freeze a bundle's scoring function into a ``.tflite`` and write its sidecar.

    The function takes one clip, uint8 ``(1, max_frames, 128)`` zero-padded, and its
    int32 ``(1,)`` frame count, and returns ``(1, C)`` scores, as ``Bundle.predict``.
    A bundle whose members all store int8 weights stays int8 in the file (dynamic-range
    quantisation, per-channel scales): a float32 export of the 19.7 MB ensemble is 76 MB.
    The sidecar is removed first and written last, so an interrupted export is never
    taken for a valid one.
    """
    import tensorflow as tf

    from vggish.export import ExportError, convert_function

    bundle = load_keras_bundle(name_or_path)

    # A fixed (1, max_frames) input, traced directly (not through Bundle.predict's
    # dynamic-shape function): with dynamic batch and time the converter meets a
    # StridedSlice (the frame mask's new axis) that only TensorFlow's own kernels can run,
    # and the LSTM's loop a TensorList without a static element shape. With static shapes
    # both fold away; clips are zero-padded, their true length given.
    @tf.function(input_signature=[
        tf.TensorSpec([1, bundle.max_frames, bundle.feature_size], tf.uint8, name="frames"),
        tf.TensorSpec([1], tf.int32, name="num_frames")])
    @tf.autograph.experimental.do_not_convert
    def fixed(frames: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
        return bundle.score_graph(frames, num_frames)

    int8 = int8_weights(bundle.config)
    try:
        data = convert_function(fixed, quantize=int8)
    except ExportError as exc:
        raise ExportError(f"bundle {bundle.path}: {exc}") from exc.__cause__
    writer = BundleWriter(out_dir or export_dir_for(bundle.path))
    (writer.directory / EXPORT_SIDECAR).unlink(missing_ok=True)
    target = writer.data(EXPORT_FILE, data)
    writer.json(EXPORT_SIDECAR, {
        "bundle": str(bundle.path.resolve()), "files": fingerprint(bundle.path),
        "tflite_sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
        "weights": "int8" if int8 else "float32",
        "tensorflow": tf.__version__})
    return target

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


def export_bundle(name_or_path: str | os.PathLike[str], out_dir: Path | None = None) -> Path:
    """Freeze a bundle's scoring function into a ``.tflite`` and write its sidecar.

    The function takes one clip, uint8 ``(1, max_frames, 128)`` zero-padded, and its
    int32 ``(1,)`` frame count, and returns ``(1, C)`` scores, as ``Bundle.predict``.
    The sidecar is removed first and written last, so an interrupted export is never
    taken for a valid one.
    """
    import tensorflow as tf

    from vggish.export import ExportError, convert_function

    bundle = load_keras_bundle(name_or_path)
    inner = bundle._function()  # the one tf.function Bundle.predict itself runs

    # A fixed (1, max_frames) input: with dynamic batch and time the converter meets a
    # StridedSlice (the frame mask's new axis) that only TensorFlow's own kernels can run.
    # With static shapes it folds away; clips are zero-padded, their true length given.
    @tf.function(input_signature=[
        tf.TensorSpec([1, bundle.max_frames, bundle.feature_size], tf.uint8, name="frames"),
        tf.TensorSpec([1], tf.int32, name="num_frames")])
    @tf.autograph.experimental.do_not_convert
    def fixed(frames: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
        return inner(frames, num_frames)

    try:
        data = convert_function(fixed)
    except ExportError as exc:
        raise ExportError(f"bundle {bundle.path}: {exc}") from exc.__cause__
    writer = BundleWriter(out_dir or export_dir_for(bundle.path))
    (writer.directory / EXPORT_SIDECAR).unlink(missing_ok=True)
    target = writer.data(EXPORT_FILE, data)
    writer.json(EXPORT_SIDECAR, {
        "bundle": str(bundle.path.resolve()), "files": fingerprint(bundle.path),
        "tflite_sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
        "tensorflow": tf.__version__})
    return target

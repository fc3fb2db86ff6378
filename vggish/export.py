"""VGGish as TensorFlow Lite files, and running them without TensorFlow.

``python -m vggish.export`` loads the VGGish checkpoint in use (the same resolution as the
entry scripts: flag, ``$AUDIO_ANALYSIS_VGGISH_CHECKPOINT``, ``models/vggish_model.ckpt``),
converts it with ``tf.lite.TFLiteConverter`` twice — float32, and dynamic-range int8
(weights stored as int8, activations quantised on the fly by the kernels; no
calibration data needed) — and writes, under ``models/exported/`` by default:

* ``vggish_float32.tflite`` and ``vggish_int8.tflite``: input ``(batch, 96, 64)`` float32
  log-mel examples with a resizable batch, output ``(batch, 128)`` raw embeddings;
* ``vggish_export.json``: which checkpoint they were made from (absolute path, size,
  modification time in ns, sha256) and the sha256 of each ``.tflite``.

At inference, :func:`find_export` returns an export only when the sidecar matches the
checkpoint that would otherwise be loaded (same size and mtime; the sha256 is recorded for
people, not re-hashed at start-up, because hashing 290 MB costs longer than the whole
TensorFlow-free start), so a replaced checkpoint is never silently shadowed by a stale
export. :class:`TFLiteVGGish` runs an export through LiteRT: importing this module does
not import TensorFlow (it is imported only inside the conversion functions).

This module knows nothing of ``audio/`` or ``yt8m/``: its command finds the checkpoint
with ``vggish.files`` (the same resolution as the entry scripts), and exporting a
classifier bundle too is the application's ``python -m audio.export --model NAME``, which
runs :func:`main` with its own checkpoint resolution and ``yt8m.bundle.export_bundle``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggish.environment import VGGISH_TFLITE_ENV, env_value, models_dir
from vggish.errors import ModelFilesError
from vggish.files import atomic_write, resolve_vggish_checkpoint, sha256_file
from vggish.params import PARAMS, VGGishParams

log = logging.getLogger(__name__)

EXPORT_DIR_NAME = "exported"
SIDECAR_NAME = "vggish_export.json"
SIDECAR_FORMAT = 1
VARIANTS: tuple[str, ...] = ("int8", "float32")
"""Export variants, in the order the pipeline prefers them."""
DEFAULT_BATCH = 64
"""Examples per interpreter call: large enough that per-call overhead vanishes."""


class ExportError(ModelFilesError, RuntimeError):
    """Conversion failed or an exported file is unusable; the message is one line."""


def tflite_name(variant: str) -> str:
    if variant not in VARIANTS:
        raise ExportError(f"unknown export variant {variant!r} (choose from {', '.join(VARIANTS)})")
    return f"vggish_{variant}.tflite"


def _source_record(checkpoint: Path, with_hash: bool) -> dict[str, Any]:
    st = checkpoint.stat()
    record: dict[str, Any] = {
        "path": str(checkpoint.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    if with_hash:
        record["sha256"] = sha256_file(checkpoint)
    return record


# --- Conversion (TensorFlow, imported lazily) -----------------------------------------


def convert_function(function: Any, quantize: bool = False) -> bytes:
    """TFLite flatbuffer of a ``tf.function`` with an input signature, weights frozen in.

    Freezing matters: the converter would otherwise keep Keras 3's resource variables as
    variables (a 16 kB file whose weights are read at run time). ``quantize=True`` applies
    dynamic-range quantisation (``Optimize.DEFAULT`` with no representative dataset).
    The classifier bundle's export (``yt8m.bundle``) converts its scoring function here.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises many unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"TFLite conversion failed: {first}") from exc


def convert_keras_model(model: Any, input_shape: Sequence[int], quantize: bool) -> bytes:
    """TFLite flatbuffer of a Keras model with a resizable leading (batch) dimension.

    Converted from a concrete function with a ``None`` batch so that LiteRT can resize the
    input to any batch.
    """
    import tensorflow as tf

    spec = tf.TensorSpec([None, *input_shape], tf.float32, name="input")

    @tf.function(input_signature=[spec])
    def serve(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return convert_function(serve, quantize)


def export_vggish(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    variants: Sequence[str] = VARIANTS,
    legacy_fc2_relu: bool = False,
    params: VGGishParams = PARAMS,
) -> dict[str, Path]:
    """Convert the checkpoint's VGGish to ``.tflite`` files and write the sidecar.

    Returns ``{variant: path}``. The sidecar is written last, so an interrupted export
    never leaves files that claim to match the checkpoint.
    """
    import tensorflow as tf

    from vggish.model import load_vggish

    checkpoint = Path(checkpoint)
    out = Path(out_dir)
    model = load_vggish(checkpoint, legacy_fc2_relu=legacy_fc2_relu, params=params)
    shape = (params.num_frames, params.num_bands)
    sidecar = out / SIDECAR_NAME
    sidecar.unlink(missing_ok=True)  # stale until the new files are all written
    written: dict[str, Path] = {}
    files: dict[str, dict[str, Any]] = {}
    for variant in variants:
        data = convert_keras_model(model, shape, quantize=(variant == "int8"))
        path = out / tflite_name(variant)
        atomic_write(path, data)
        written[variant] = path
        files[variant] = {"file": path.name, "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()}
        log.info("wrote %s (%d bytes)", path, len(data))
    record = {
        "format": SIDECAR_FORMAT,
        "source": _source_record(checkpoint, with_hash=True),
        "legacy_fc2_relu": legacy_fc2_relu,
        "input_shape": [None, *shape],
        "embedding_size": params.embedding_size,
        "files": files,
        "tensorflow": tf.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(sidecar, (json.dumps(record, indent=2) + "\n").encode())
    return written


# --- Finding and running an export (no TensorFlow) ------------------------------------


def default_export_dir() -> Path:
    return models_dir() / EXPORT_DIR_NAME


@dataclass(frozen=True)
class VGGishExport:
    """An export that matches a checkpoint: the file to run and its variant."""

    path: Path
    variant: str
    sidecar: Path


def find_export(
    checkpoint: str | os.PathLike[str],
    export_dir: str | os.PathLike[str] | None = None,
    variants: Sequence[str] = VARIANTS,
    legacy_fc2_relu: bool = False,
) -> VGGishExport | None:
    """The first of ``variants`` exported from exactly this checkpoint, else None.

    "Exactly" means the sidecar's size and mtime match the checkpoint's, and the
    ``.tflite`` has the size the sidecar recorded; anything else (no sidecar, another
    checkpoint, a half-written export) gives None and a debug log line saying why.
    """
    directory = Path(export_dir) if export_dir is not None else default_export_dir()
    sidecar = directory / SIDECAR_NAME
    checkpoint = Path(checkpoint)
    try:
        record = json.loads(sidecar.read_text())
        st = checkpoint.stat()
    except (OSError, ValueError) as exc:
        log.debug("no usable VGGish export in %s: %s", directory, exc)
        return None
    source = record.get("source", {}) if isinstance(record, dict) else {}
    if record.get("format") != SIDECAR_FORMAT or (
        source.get("size"),
        source.get("mtime_ns"),
    ) != (st.st_size, st.st_mtime_ns):
        log.info("VGGish export in %s was made from another checkpoint; ignoring it "
                 "(re-run `python -m vggish.export`)", directory)
        return None
    if bool(record.get("legacy_fc2_relu")) != legacy_fc2_relu:
        return None
    files = record.get("files", {})
    for variant in variants:
        entry = files.get(variant)
        if not entry:
            continue
        path = directory / entry["file"]
        try:
            if path.stat().st_size == entry["size"]:
                return VGGishExport(path=path, variant=variant, sidecar=sidecar)
        except OSError:
            continue
    return None


class TFLiteVGGish:
    """Runs an exported VGGish through LiteRT: (K, 96, 64) examples → (K, 128) embeddings.

    Examples go through in batches of at most ``batch``; the input is resized to each
    batch's size when it changes (after the first allocation a resize costs ~0.1 ms,
    far less than padding a 10-example clip to 64 rows would).
    """

    def __init__(self, path: str | os.PathLike[str], batch: int = DEFAULT_BATCH,
                 num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter  # lazy: keeps --help instant

        if batch < 1:
            raise ExportError(f"batch must be positive, got {batch}")
        self.path = Path(path)
        try:
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            raise ExportError(f"{self.path}: not a loadable TensorFlow Lite model ({exc})") from exc
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 3:
            raise ExportError(f"{self.path}: not a VGGish export (one (batch, 96, 64) input)")
        self._in = int(inputs[0]["index"])
        self._out = int(outputs[0]["index"])
        self.example_shape = tuple(int(v) for v in inputs[0]["shape"][1:])
        self.embedding_size = int(outputs[0]["shape"][-1])
        self.batch = batch
        self._batch = 0

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._in, [batch, *self.example_shape])
            self._interpreter.allocate_tensors()
            self._batch = batch

    def __call__(self, examples: np.ndarray) -> np.ndarray:
        return self.embed(examples)

    def embed(self, examples: np.ndarray) -> np.ndarray:
        x = np.asarray(examples, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != self.example_shape:
            raise ValueError(f"expected examples of shape (K, {self.example_shape[0]}, "
                             f"{self.example_shape[1]}), got {x.shape}")
        out = np.empty((x.shape[0], self.embedding_size), dtype=np.float32)
        it = self._interpreter
        for start in range(0, x.shape[0], self.batch):
            chunk = x[start:start + self.batch]
            self._resize(chunk.shape[0])
            it.set_tensor(self._in, np.ascontiguousarray(chunk))
            it.invoke()
            out[start:start + chunk.shape[0]] = it.get_tensor(self._out)
        return out

    def close(self) -> None:
        self._interpreter = None

    def __enter__(self) -> TFLiteVGGish:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KerasVGGish:
    """The TensorFlow path, behind the same call as :class:`TFLiteVGGish`."""

    def __init__(self, checkpoint: Path, batch: int = DEFAULT_BATCH,
                 legacy_fc2_relu: bool = False) -> None:
        from vggish.model import load_vggish

        self.path = checkpoint
        self._model = load_vggish(checkpoint, legacy_fc2_relu=legacy_fc2_relu)
        self._batch = batch

    def __call__(self, examples: np.ndarray) -> np.ndarray:
        from vggish.model import embed

        return embed(self._model, examples, batch_size=self._batch)

    def close(self) -> None:
        self._model = None


def load_embedder(checkpoint: str | os.PathLike[str], batch: int = DEFAULT_BATCH,
                  preference: str | None = None, legacy_fc2_relu: bool = False,
                  export_dir: str | os.PathLike[str] | None = None) -> TFLiteVGGish | KerasVGGish:
    """What the pipeline embeds with: a matching TFLite export if any, else Keras.

    ``preference`` (default ``$AUDIO_ANALYSIS_VGGISH_TFLITE``, else ``auto``): ``auto``
    tries int8 then float32; ``int8`` or ``float32`` only that variant; ``off`` always
    loads the checkpoint with TensorFlow.
    """
    choice = (preference or env_value(VGGISH_TFLITE_ENV) or "auto").strip().lower()
    if choice not in ("auto", "off", *VARIANTS):
        raise ExportError(f"${VGGISH_TFLITE_ENV} must be auto, off, int8 or float32, "
                          f"got {choice!r}")
    checkpoint = Path(checkpoint)
    if choice != "off":
        wanted = VARIANTS if choice == "auto" else (choice,)
        found = find_export(checkpoint, export_dir, wanted, legacy_fc2_relu)
        if found is not None:
            log.info("VGGish: using the %s TFLite export %s", found.variant, found.path)
            return TFLiteVGGish(found.path, batch=batch)
    return KerasVGGish(checkpoint, batch=batch, legacy_fc2_relu=legacy_fc2_relu)


# --- Command line ---------------------------------------------------------------------

BundleExporter = Callable[[str], Path]
"""Exports a classifier bundle by name or path to TFLite and returns the file written."""
APPLICATION_COMMAND = "python -m audio.export"
"""The application's command that also exports classifier bundles (see :func:`main`)."""


def build_parser(prog: str = "python -m vggish.export",
                 with_bundles: bool = False) -> argparse.ArgumentParser:
    what = "VGGish (and optionally a classifier bundle)" if with_bundles else "VGGish"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Convert {what} to TensorFlow Lite (float32 and dynamic-range int8) so "
                    "that inference needs no TensorFlow.")
    parser.add_argument("--vggish_checkpoint", metavar="PATH", default=None,
                        help="checkpoint to convert (default: as the entry scripts resolve it)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="output directory (default: models/exported/)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="what to write (default: both)")
    parser.add_argument("--legacy_fc2_relu", action="store_true",
                        help="export the 2017 graph (ReLU on fc2), as the original used")
    parser.add_argument("--model", metavar="NAME_OR_PATH", default=None,
                        help="also export this classifier bundle's TensorFlow-free form"
                             + (" (default: the edge bundle: the distilled student while "
                                "its eval mAP is within 0.01 of the ensemble's)"
                                if with_bundles else f" (with `{APPLICATION_COMMAND}`)"))
    parser.add_argument("--skip_vggish", action="store_true",
                        help="only export the classifier bundle (--model"
                             + (", else the edge bundle)" if with_bundles else ")"))
    return parser


def existing_checkpoint(flag: str | None) -> Path:
    """The checkpoint to convert: flag, ``$AUDIO_ANALYSIS_VGGISH_CHECKPOINT``, models dir."""
    checkpoint = resolve_vggish_checkpoint(flag)
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"missing model file: {checkpoint} (run `python -m audio.models download` to fetch "
            f"them, or point the command's flags or environment variables at existing copies)")
    return checkpoint


def _export_and_report(checkpoint: Path, out: Path, args: argparse.Namespace) -> None:
    written = export_vggish(checkpoint, out, args.variants, legacy_fc2_relu=args.legacy_fc2_relu)
    for variant, path in written.items():
        print(f"{variant}: {path} ({path.stat().st_size:,} bytes)")
    print(f"sidecar: {out / SIDECAR_NAME} (from {checkpoint})")


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m vggish.export",
         resolve_checkpoint: Callable[[str | None], Path] = existing_checkpoint,
         export_bundle: BundleExporter | None = None,
         default_model: Callable[[], str | None] | None = None) -> int:
    """``python -m vggish.export``: VGGish only (``--model`` names the command that can).

    The application's ``python -m audio.export`` runs this with its own checkpoint
    resolution, a bundle exporter and the bundle to export when ``--model`` is not given
    (``default_model``), so one command line serves both and this package stays free of
    classifier bundles.
    """
    args = build_parser(prog, with_bundles=export_bundle is not None).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.model and export_bundle is None:
        print(f"error: {prog} exports VGGish only; for a classifier bundle run "
              f"`{APPLICATION_COMMAND} --model {args.model}`", file=sys.stderr)
        return 2
    model = args.model or (default_model() if default_model is not None else None)
    if args.skip_vggish and not model:
        print("error: --skip_vggish needs --model", file=sys.stderr)
        return 2
    out = (args.out or default_export_dir()).expanduser()
    try:
        if not args.skip_vggish:
            _export_and_report(resolve_checkpoint(args.vggish_checkpoint), out, args)
        if model and export_bundle is not None:
            print(f"classifier bundle: {export_bundle(model)}")
    except (ExportError, FileNotFoundError, ValueError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

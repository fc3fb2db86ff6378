#!/usr/bin/env python3
"""Regenerate tests/data/vggish_frontend_reference.npz from Google's reference code.

Runs the reference ``vggish_input.waveform_to_examples`` and
``vggish_postprocess.Postprocessor`` (tensorflow/models, research/audioset/vggish) on the
deterministic inputs of ``tests/fixtures_frontend.py`` and stores only their outputs,
which ``tests/test_vggish_input.py`` and ``tests/test_postprocess.py`` compare against.
The reference code itself is never copied into this project.

Usage:
    git clone https://github.com/tensorflow/models /tmp/tf-models
    .venv/bin/python scripts/make_frontend_reference.py --reference-dir /tmp/tf-models

``--reference-dir`` may be the checkout's root or the directory holding
``mel_features.py`` (``research/audioset/vggish`` now, ``research/audioset`` in 2017).
The reference needs numpy and resampy (both in requirements.txt); it imports
soundfile only for wav files, which this script does not use.

The committed npz was made from these reference files (tensorflow/models):
    mel_features.py        3e9e7a607b5538bbe54e5b6e872fc0eec19a4c79
    vggish_input.py        6cfe2418c0a2a424fe0059311d30570b15000f93
    vggish_params.py       2fd7d3ae49322850039920ce68b87a4db054c4d1
    vggish_postprocess.py  4b2f15f40e9da8f274fb29b677f5c5f7378cdc23
(the numerics of these files have not changed since the 2017 release). The versions of
numpy and resampy used are stored in the npz (``meta_*`` keys).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "tests" / "data" / "vggish_frontend_reference.npz"
_REFERENCE_MODULES = ("mel_features", "vggish_params", "vggish_input", "vggish_postprocess")


def find_reference_dir(root: Path) -> Path:
    """The directory holding the reference's ``mel_features.py`` and ``vggish_input.py``."""
    for candidate in (root, root / "research" / "audioset" / "vggish",
                      root / "research" / "audioset"):
        if (candidate / "mel_features.py").is_file() and (candidate / "vggish_input.py").is_file():
            return candidate
    raise FileNotFoundError(f"no mel_features.py and vggish_input.py under {root} (tried the "
                            "directory itself, research/audioset/vggish and research/audioset)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, required=True,
                        help="checkout of tensorflow/models (or its research/audioset/vggish)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"npz to write (default: {DEFAULT_OUTPUT})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        reference_dir = find_reference_dir(args.reference_dir.resolve())
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.fixtures_frontend import frontend_reference_inputs, postprocess_reference_inputs

    # The reference imports its siblings by bare name (``import mel_features``).
    sys.path.insert(0, str(reference_dir))
    modules = {name: importlib.import_module(name) for name in _REFERENCE_MODULES}
    for name, module in modules.items():
        if Path(module.__file__).resolve().parent != reference_dir:
            print(f"error: imported {name} from {module.__file__}, not {reference_dir}",
                  file=sys.stderr)
            return 2

    import resampy

    outputs: dict[str, np.ndarray] = {}
    for name, (samples, rate) in frontend_reference_inputs().items():
        examples = np.asarray(modules["vggish_input"].waveform_to_examples(samples, rate),
                              dtype=np.float64)
        outputs[f"{name}_examples"] = examples
        print(f"{name}: {samples.shape} at {rate} Hz -> examples {examples.shape}")

    embeddings, vectors, means = postprocess_reference_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        pca_path = Path(tmp) / "pca.npz"
        np.savez(pca_path, pca_eigen_vectors=vectors, pca_means=means)
        quantized = modules["vggish_postprocess"].Postprocessor(str(pca_path)).postprocess(
            embeddings)
    outputs["postprocess_uint8"] = np.asarray(quantized, dtype=np.uint8)
    print(f"postprocess: {embeddings.shape} -> {quantized.shape} {quantized.dtype}")

    outputs["meta_numpy_version"] = np.array(np.__version__)
    outputs["meta_resampy_version"] = np.array(resampy.__version__)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **outputs)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

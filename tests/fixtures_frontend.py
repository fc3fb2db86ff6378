"""Fixtures and deterministic signals for the VGGish front-end tests.

The regression file ``tests/data/vggish_frontend_reference.npz`` holds only the
*outputs* of Google's reference code (written by ``scripts/make_frontend_reference.py``);
the inputs are regenerated here, from fixed seeds and closed-form formulas, both by that
script and by the tests, so the two can never drift apart. Uniform draws
(``Generator.random``) are used rather than Gaussian ones because their stream is the
one numpy is least likely to change between versions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FRONTEND_REFERENCE_NPZ = Path(__file__).resolve().parent / "data" / "vggish_frontend_reference.npz"

_SEED = 20171122


def _chirp(t: np.ndarray, f0: float, f1: float, duration: float) -> np.ndarray:
    """Exponential sweep from ``f0`` to ``f1`` Hz over ``duration`` seconds."""
    k = np.log(f1 / f0)
    return np.sin(2.0 * np.pi * f0 * duration / k * (np.exp(t / duration * k) - 1.0))


def frontend_reference_inputs() -> dict[str, tuple[np.ndarray, int]]:
    """The waveforms the reference was run on: name → (samples, sample rate).

    * ``noise_16k``: 3.0 s of uniform white noise in [−0.5, 0.5) at 16 kHz (K = 3);
    * ``chirp_44k_stereo``: 2.5 s at 44.1 kHz, (frames, 2): a 100 Hz → 7 kHz sweep on the
      left, the same sweep at half amplitude plus noise on the right (exercises the
      channel mean and resampy);
    * ``mixture_16k``: 10.5 s at 16 kHz of tones (440 Hz, 1 kHz, 3.1 kHz) with slow
      amplitude modulation, noise, and one second of digital silence (exercises the log
      offset), K = 10.
    """
    rng = np.random.default_rng(_SEED)
    noise = rng.random(48000) - 0.5

    rate = 44100
    t = np.arange(int(2.5 * rate)) / rate
    sweep = 0.8 * _chirp(t, 100.0, 7000.0, 2.5)
    right = 0.5 * sweep + 0.05 * (rng.random(t.size) - 0.5)
    stereo = np.stack([sweep, right], axis=1)

    t = np.arange(int(10.5 * 16000)) / 16000
    mixture = (0.3 * np.sin(2 * np.pi * 440.0 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
               + 0.2 * np.sin(2 * np.pi * 1000.0 * t)
               + 0.1 * np.sin(2 * np.pi * 3100.0 * t) * (t > 5.0)
               + 0.02 * (rng.random(t.size) - 0.5))
    mixture[int(2.0 * 16000):int(3.0 * 16000)] = 0.0
    return {"noise_16k": (noise, 16000), "chirp_44k_stereo": (stereo, rate),
            "mixture_16k": (mixture, 16000)}


def postprocess_reference_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings (40, 128) float32, PCA eigenvectors (128, 128), PCA means (128,)).

    The embeddings have the spread of real raw VGGish output (tens to hundreds), and the
    random PCA is scaled so that many projected values fall outside [−2, 2] and get
    clipped, while the rest are spread over all 256 quantisation levels.
    """
    rng = np.random.default_rng(_SEED + 1)
    embeddings = ((rng.random((40, 128)) - 0.3) * 200.0).astype(np.float32)
    vectors = (rng.random((128, 128)) - 0.5) * 0.01
    means = (rng.random(128) - 0.3) * 200.0
    return embeddings, vectors, means


@pytest.fixture(scope="session")
def frontend_reference() -> dict[str, np.ndarray]:
    """The stored outputs of Google's reference front end and post-processing."""
    if not FRONTEND_REFERENCE_NPZ.exists():
        pytest.fail(f"{FRONTEND_REFERENCE_NPZ} is missing: regenerate it with "
                    "scripts/make_frontend_reference.py --reference-dir <tensorflow/models>",
                    pytrace=False)
    with np.load(FRONTEND_REFERENCE_NPZ) as npz:
        return {key: npz[key] for key in npz.files}

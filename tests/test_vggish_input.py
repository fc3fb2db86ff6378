"""vggish.input: waveforms and wav files → (K, 96, 64) float32 examples.

Includes the acceptance check against Google's reference: the stored outputs of its
``vggish_input.waveform_to_examples`` (``tests/data/vggish_frontend_reference.npz``,
made by ``scripts/make_frontend_reference.py``) must be matched to ≤ 1e-6 absolute.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import resampy
from scipy.io import wavfile

from tests.fixtures_frontend import frontend_reference_inputs
from vggish import mel_features
from vggish.input import (
    WavFormatError,
    num_examples,
    waveform_to_examples,
    wavfile_to_examples,
)
from vggish.params import PARAMS

RATE = PARAMS.sample_rate
EXAMPLE_SHAPE = (PARAMS.num_frames, PARAMS.num_bands)

REFERENCE_TOLERANCE = 1e-6


def log_mel_float64(signal: np.ndarray) -> np.ndarray:
    return mel_features.log_mel_spectrogram(
        signal, audio_sample_rate=RATE, log_offset=PARAMS.log_offset,
        window_length_secs=PARAMS.stft_window_seconds,
        hop_length_secs=PARAMS.stft_hop_seconds, num_mel_bins=PARAMS.num_mel_bins,
        lower_edge_hertz=PARAMS.mel_min_hz, upper_edge_hertz=PARAMS.mel_max_hz)


def test_example_shape_constants() -> None:
    assert EXAMPLE_SHAPE == (96, 64)
    assert RATE == 16000


# --- Counting examples ------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "samples", "expected"), [
    (0.96, 15360, 0),     # 94 frames: the 25 ms window does not fit 96 times
    (None, 15599, 0),     # 95 frames
    (0.975, 15600, 1),    # 96 frames: the shortest input with one example
    (1.935, 30960, 2),    # 192 frames
    (3.0, 48000, 3),      # 298 frames
])
def test_example_counts(seconds: float | None, samples: int, expected: int,
                        rng: np.random.Generator) -> None:
    if seconds is not None:
        assert round(seconds * RATE) == samples
    assert num_examples(samples) == expected
    examples = waveform_to_examples(rng.random(samples) - 0.5, RATE)
    assert examples.shape == (expected, *EXAMPLE_SHAPE)
    assert examples.dtype == np.float32


def test_output_is_a_writeable_contiguous_float32_array(rng: np.random.Generator) -> None:
    examples = waveform_to_examples(rng.random(48000) - 0.5, RATE)
    assert examples.flags.c_contiguous
    assert examples.flags.writeable
    assert examples.dtype == np.float32


@pytest.mark.parametrize("data", [np.zeros(0), np.zeros((0, 2)), np.zeros(1), np.zeros(399)])
@pytest.mark.parametrize("rate", [16000, 44100, 8000])
def test_empty_and_too_short_give_zero_examples(data: np.ndarray, rate: int) -> None:
    examples = waveform_to_examples(data, rate)
    assert examples.shape == (0, 96, 64)
    assert examples.dtype == np.float32


def test_examples_are_consecutive_log_mel_patches(rng: np.random.Generator) -> None:
    signal = rng.random(16000 * 5) - 0.5
    examples = waveform_to_examples(signal, RATE)
    log_mel = log_mel_float64(signal)
    assert examples.shape == (5, 96, 64)
    for k in range(5):
        np.testing.assert_array_equal(examples[k], log_mel[96 * k:96 * (k + 1)].astype(np.float32))


def test_memory_stays_near_the_output_size(rng: np.random.Generator) -> None:
    # 5 minutes: a full-length complex spectrogram would be 30000 × 257 × 16 B ≈ 118 MB and
    # a float64 log-mel 15 MB; the chunked front end needs the float32 output (7 MB) plus
    # a few MB of per-chunk scratch.
    import tracemalloc

    signal = rng.random(16000 * 300) - 0.5
    waveform_to_examples(signal[:48000], RATE)  # build the cached mel matrix first
    tracemalloc.start()
    try:
        examples = waveform_to_examples(signal, RATE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert examples.shape == (312, 96, 64)
    assert peak < examples.nbytes + 6 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_overlapping_examples_with_other_params(rng: np.random.Generator) -> None:
    params = dataclasses.replace(PARAMS, example_hop_seconds=0.48)
    signal = rng.random(48000) - 0.5
    examples = waveform_to_examples(signal, RATE, params)
    log_mel = log_mel_float64(signal).astype(np.float32)  # 298 frames
    assert examples.shape == (1 + (298 - 96) // 48, 96, 64)
    np.testing.assert_array_equal(examples[3], log_mel[144:240])
    assert examples.flags.writeable


def test_1khz_sine_peaks_in_band_19() -> None:
    # mel(1000 Hz) ≈ 999.99 lies between the centres of bands 19 (≈ 981.5) and 20
    # (≈ 1021.3) of 66 edges spaced evenly in mel over 125–7500 Hz, nearer to band 19.
    t = np.arange(3 * RATE) / RATE
    examples = waveform_to_examples(0.5 * np.sin(2 * np.pi * 1000.0 * t), RATE)
    assert np.all(examples.argmax(axis=2) == 19)


# --- Channels, dtypes, resampling -------------------------------------------------------

def test_multichannel_is_mean_of_channels(rng: np.random.Generator) -> None:
    stereo = rng.random((40000, 3)) - 0.5
    np.testing.assert_array_equal(waveform_to_examples(stereo, RATE),
                                  waveform_to_examples(stereo.mean(axis=1), RATE))


def test_channel_mean_is_taken_before_resampling(rng: np.random.Generator) -> None:
    stereo = rng.random((44100 * 2, 2)) - 0.5
    mono_resampled = resampy.resample(stereo.mean(axis=1), 44100, RATE)
    np.testing.assert_array_equal(waveform_to_examples(stereo, 44100),
                                  waveform_to_examples(mono_resampled, RATE))


def test_44k1_input_is_resampled_with_resampy(rng: np.random.Generator) -> None:
    t = np.arange(44100 * 3) / 44100
    signal = 0.4 * np.sin(2 * np.pi * 2500.0 * t) + 0.1 * (rng.random(t.size) - 0.5)
    resampled = resampy.resample(signal, 44100, RATE)
    assert resampled.shape == (48000,)
    examples = waveform_to_examples(signal, 44100)
    assert examples.shape == (3, 96, 64)
    np.testing.assert_array_equal(examples, waveform_to_examples(resampled, RATE))
    # Content survives: 2.5 kHz is the strongest band, as at 16 kHz.
    direct = waveform_to_examples(0.4 * np.sin(2 * np.pi * 2500.0 * np.arange(48000) / RATE),
                                  RATE)
    assert np.all(examples.mean(axis=1).argmax(axis=1) == direct.mean(axis=1).argmax(axis=1))


def test_float_sample_rate_equal_to_16k_is_not_resampled(rng: np.random.Generator) -> None:
    signal = rng.random(20000) - 0.5
    np.testing.assert_array_equal(waveform_to_examples(signal, 16000.0),
                                  waveform_to_examples(signal, RATE))


def test_float32_input_is_computed_in_float64(rng: np.random.Generator) -> None:
    signal = (rng.random(20000) - 0.5).astype(np.float32)
    np.testing.assert_array_equal(waveform_to_examples(signal, RATE),
                                  waveform_to_examples(signal.astype(np.float64), RATE))


def test_int16_arrays_are_not_scaled(rng: np.random.Generator) -> None:
    pcm = (rng.integers(-3000, 3000, 20000)).astype(np.int16)
    examples = waveform_to_examples(pcm, RATE)
    np.testing.assert_array_equal(examples, waveform_to_examples(pcm.astype(np.float64), RATE))
    # Unscaled int16 is 32768× louder: log-mel ≈ ln(32768) ≈ 10.4 higher.
    scaled = waveform_to_examples(pcm / 32768.0, RATE)
    assert float(np.median(examples - scaled)) == pytest.approx(math.log(32768.0), abs=0.05)


# --- Bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise(bad: float) -> None:
    signal = np.zeros(20000)
    signal[1234] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite.*sample 1234"):
        waveform_to_examples(signal, RATE)
    stereo = np.zeros((20000, 2))
    stereo[77, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        waveform_to_examples(stereo, 44100)


@pytest.mark.parametrize(("data", "rate", "match"), [
    (np.zeros((10, 10, 2)), 16000, r"1-D .* or 2-D"),
    (np.zeros(1000, dtype=complex), 16000, "real numbers"),
    (np.array(["a", "b"]), 16000, "real numbers"),
    (np.zeros((1000, 0)), 16000, "no channels"),
    (np.zeros((2, 48000)), 16000, r"looks like \(channels, frames\)"),
    (np.zeros(1000), 0, "sample_rate"),
    (np.zeros(1000), -16000, "sample_rate"),
    (np.zeros(1000), float("nan"), "sample_rate"),
    (np.zeros(1000), "16000", "sample_rate"),
    (np.zeros(1000), True, "sample_rate"),
])
def test_bad_arguments_raise_value_error(data: np.ndarray, rate: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        waveform_to_examples(data, rate)


# --- WAV files --------------------------------------------------------------------------

def test_wavfile_int16_mono_and_stereo(tmp_path: Path, rng: np.random.Generator) -> None:
    mono = rng.integers(-20000, 20000, 32000).astype(np.int16)
    path = tmp_path / "mono.wav"
    wavfile.write(path, RATE, mono)
    np.testing.assert_array_equal(wavfile_to_examples(path),
                                  waveform_to_examples(mono / 32768.0, RATE))
    stereo = rng.integers(-20000, 20000, (44100 * 2, 2)).astype(np.int16)
    path = tmp_path / "stereo.wav"
    wavfile.write(path, 44100, stereo)
    examples = wavfile_to_examples(str(path))
    assert examples.shape == (2, 96, 64)
    np.testing.assert_array_equal(examples, waveform_to_examples(stereo / 32768.0, 44100))


def test_wavfile_full_scale_maps_to_minus_one(tmp_path: Path) -> None:
    # −32768 must become exactly −1.0: compare a constant full-scale file with the float.
    path = tmp_path / "dc.wav"
    wavfile.write(path, RATE, np.full(16000, -32768, dtype=np.int16))
    np.testing.assert_array_equal(wavfile_to_examples(path),
                                  waveform_to_examples(np.full(16000, -1.0), RATE))


def test_wavfile_rejects_other_sample_formats(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    wavfile.write(path, RATE, np.zeros(16000, dtype=np.float32))
    with pytest.raises(WavFormatError, match=r"float32.*16-bit"):
        wavfile_to_examples(path)
    path = tmp_path / "int32.wav"
    wavfile.write(path, RATE, np.zeros(16000, dtype=np.int32))
    with pytest.raises(WavFormatError, match="int32"):
        wavfile_to_examples(path)


def test_wavfile_rejects_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(WavFormatError, match="no such file"):
        wavfile_to_examples(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not a RIFF file at all" * 10)
    with pytest.raises(WavFormatError, match="not a readable WAV"):
        wavfile_to_examples(garbage)
    assert issubclass(WavFormatError, ValueError)


def test_bundled_example_clip_is_readable(project_root: Path) -> None:
    path = project_root / "examples" / "speech.wav"
    examples = wavfile_to_examples(path)
    assert examples.ndim == 3 and examples.shape[1:] == (96, 64)
    assert examples.shape[0] >= 1
    assert np.isfinite(examples).all()


# --- Google's reference -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["noise_16k", "chirp_44k_stereo", "mixture_16k"])
def test_matches_google_reference(name: str, frontend_reference: dict[str, np.ndarray],
                                  record_property) -> None:
    samples, rate = frontend_reference_inputs()[name]
    expected = frontend_reference[f"{name}_examples"]
    examples = waveform_to_examples(samples, rate)
    assert examples.shape == expected.shape
    assert examples.dtype == np.float32
    max_diff = float(np.max(np.abs(examples.astype(np.float64) - expected)))
    record_property("max_abs_diff_float32", max_diff)
    assert max_diff <= REFERENCE_TOLERANCE, f"{name}: max abs diff {max_diff:.3g}"

    # Before the float32 cast the two agree to rounding noise (float64 throughout).
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if rate != RATE:
        mono = resampy.resample(mono, rate, RATE)
    log_mel = log_mel_float64(mono)[:expected.shape[0] * 96].reshape(expected.shape)
    max_diff64 = float(np.max(np.abs(log_mel - expected)))
    record_property("max_abs_diff_float64", max_diff64)
    assert max_diff64 <= 1e-9, f"{name}: float64 max abs diff {max_diff64:.3g}"


def test_reference_script_reports_a_missing_checkout(tmp_path: Path, project_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(project_root / "scripts" / "make_frontend_reference.py"),
         "--reference-dir", str(tmp_path), "--output", str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no mel_features.py")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.npz").exists()

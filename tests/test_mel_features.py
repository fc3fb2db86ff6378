"""vggish.mel_features: independent facts about VGGish's log-mel front end.

Expected values are derived here from first principles (formulas of numerics.md, loops
written for clarity), never by calling the code under test a second way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vggish import mel_features as mf
from vggish.params import PARAMS

RATE = PARAMS.sample_rate
WINDOW = PARAMS.stft_window_length_samples
HOP = PARAMS.stft_hop_length_samples
FFT = PARAMS.fft_length
BINS = FFT // 2 + 1
BANDS = PARAMS.num_mel_bins

VGGISH_MEL = dict(num_mel_bins=BANDS, lower_edge_hertz=PARAMS.mel_min_hz,
                  upper_edge_hertz=PARAMS.mel_max_hz)


def vggish_matrix() -> np.ndarray:
    return mf.spectrogram_to_mel_matrix(num_spectrogram_bins=BINS, audio_sample_rate=RATE,
                                        **VGGISH_MEL)


def naive_log_mel(signal: np.ndarray, offset: float = PARAMS.log_offset) -> np.ndarray:
    """Frame-by-frame textbook computation, for comparison with the chunked one."""
    n = np.arange(WINDOW)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / WINDOW)
    count = 1 + (signal.size - WINDOW) // HOP
    rows = []
    for i in range(count):
        spectrum = np.abs(np.fft.rfft(signal[i * HOP:i * HOP + WINDOW] * window, FFT))
        rows.append(spectrum)
    return np.log(np.array(rows) @ np.array(vggish_matrix()) + offset)


# --- Parameters -------------------------------------------------------------------------

def test_vggish_stft_geometry() -> None:
    assert (WINDOW, HOP, FFT, BINS) == (400, 160, 512, 257)


# --- periodic_hann ----------------------------------------------------------------------

def test_periodic_hann_values() -> None:
    w = mf.periodic_hann(400)
    assert w.shape == (400,)
    assert w.dtype == np.float64
    assert w[0] == 0.0
    assert w[200] == 1.0
    assert w[100] == pytest.approx(0.5, abs=1e-15)
    expected = np.array([0.5 - 0.5 * math.cos(2 * math.pi * k / 400) for k in range(400)])
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-15)


def test_periodic_hann_is_periodic_not_symmetric() -> None:
    w = mf.periodic_hann(400)
    # Periodic symmetry: w[n] == w[N − n] for n = 1 … N−1 (one full cosine cycle) ...
    np.testing.assert_allclose(w[1:], w[1:][::-1], rtol=0, atol=1e-15)
    # ... but not the symmetric window: the last sample is not zero.
    assert w[-1] > 0.0
    assert not np.allclose(w, np.hanning(400))
    # np.hanning(N + 1) without its last sample *is* the periodic window.
    np.testing.assert_allclose(w, np.hanning(401)[:-1], rtol=0, atol=1e-15)


# --- hertz_to_mel -----------------------------------------------------------------------

def test_hertz_to_mel_htk() -> None:
    assert mf.hertz_to_mel(1000.0) == pytest.approx(1127.0 * math.log(1 + 1000 / 700), abs=1e-9)
    assert mf.hertz_to_mel(1000.0) == pytest.approx(999.99, abs=0.01)
    assert mf.hertz_to_mel(0.0) == 0.0
    freqs = np.array([0.0, 125.0, 700.0, 7500.0])
    mels = mf.hertz_to_mel(freqs)
    assert mels.shape == (4,)
    assert mels[2] == pytest.approx(1127.0 * math.log(2.0))
    assert np.all(np.diff(mels) > 0)
    np.testing.assert_array_equal(mf.hertz_to_mel([0.0, 700.0]), mels[[0, 2]])
    assert isinstance(mf.hertz_to_mel(1000), np.floating)


# --- spectrogram_to_mel_matrix ----------------------------------------------------------

def test_mel_matrix_shape_and_basic_facts() -> None:
    m = vggish_matrix()
    assert m.shape == (257, 64)
    assert m.dtype == np.float64
    assert np.all(m[0] == 0.0), "DC bin must have zero weight in every band"
    assert np.all(m >= 0.0)
    assert m.max() <= 1.0
    # Every band catches at least one FFT bin (bands are wider than 31.25 Hz bins).
    assert np.all(m.max(axis=0) > 0.0)
    # Nothing below 125 Hz or above 7500 Hz.
    bin_hz = np.linspace(0.0, RATE / 2, BINS)
    assert np.all(m[bin_hz <= 125.0] == 0.0)
    assert np.all(m[bin_hz >= 7500.0] == 0.0)


def test_mel_matrix_matches_triangle_definition() -> None:
    lo, hi = mf.hertz_to_mel(125.0), mf.hertz_to_mel(7500.0)
    edges = [lo + (hi - lo) * i / (BANDS + 1) for i in range(BANDS + 2)]
    bin_mel = [1127.0 * math.log(1 + (k * RATE / 2 / (BINS - 1)) / 700.0) for k in range(BINS)]
    expected = np.zeros((BINS, BANDS))
    for band in range(BANDS):
        lower, center, upper = edges[band:band + 3]
        for k in range(1, BINS):
            m = bin_mel[k]
            expected[k, band] = max(0.0, min((m - lower) / (center - lower),
                                             (upper - m) / (upper - center)))
    np.testing.assert_allclose(vggish_matrix(), expected, rtol=0, atol=1e-12)


def test_mel_matrix_is_cached_and_read_only() -> None:
    a = vggish_matrix()
    b = mf.spectrogram_to_mel_matrix(64, 257, 16000, 125, 7500)  # ints: same parameter set
    assert a is b
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[1, 1] = 5.0
    assert mf.spectrogram_to_mel_matrix() is not a  # the reference's 8 kHz defaults
    assert mf.spectrogram_to_mel_matrix().shape == (129, 20)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(lower_edge_hertz=7500.0, upper_edge_hertz=7500.0), "below upper_edge_hertz"),
    (dict(lower_edge_hertz=8000.0, upper_edge_hertz=125.0), "below upper_edge_hertz"),
    (dict(upper_edge_hertz=8000.5), "Nyquist"),
    (dict(lower_edge_hertz=-1.0), ">= 0"),
    (dict(lower_edge_hertz=float("nan")), ">= 0"),
    (dict(upper_edge_hertz=float("nan")), "below upper_edge_hertz"),
    (dict(num_mel_bins=0), "num_mel_bins"),
    (dict(num_mel_bins=2.5), "num_mel_bins"),
    (dict(num_spectrogram_bins=1), "num_spectrogram_bins"),
    (dict(audio_sample_rate=0), "audio_sample_rate"),
    (dict(audio_sample_rate="16k"), "must be numbers"),
])
def test_mel_matrix_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = dict(num_mel_bins=64, num_spectrogram_bins=257, audio_sample_rate=16000,
                lower_edge_hertz=125.0, upper_edge_hertz=7500.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mf.spectrogram_to_mel_matrix(**args)


def test_mel_matrix_upper_edge_at_nyquist_is_allowed() -> None:
    m = mf.spectrogram_to_mel_matrix(64, 257, 16000, 125.0, 8000.0)
    assert m.shape == (257, 64)


# --- frame ------------------------------------------------------------------------------

@pytest.mark.parametrize(("samples", "frames"), [
    (0, 0), (1, 0), (399, 0), (400, 1), (559, 1), (560, 2), (15599, 95), (15600, 96),
    (48000, 298),
])
def test_frame_counts(samples: int, frames: int) -> None:
    # F = 1 + floor((N − 400) / 160), no padding; 0 below one window.
    out = mf.frame(np.zeros(samples), WINDOW, HOP)
    assert out.shape == (frames, WINDOW)


def test_frame_is_a_read_only_view_with_the_right_samples(rng: np.random.Generator) -> None:
    data = rng.random(1000)
    frames = mf.frame(data, 400, 160)
    assert frames.shape == (4, 400)
    assert np.shares_memory(frames, data)
    assert not frames.flags.writeable
    for i in range(4):
        np.testing.assert_array_equal(frames[i], data[i * 160:i * 160 + 400])
    with pytest.raises(ValueError):
        frames[0, 0] = 1.0


def test_frame_multidimensional_and_strided_input(rng: np.random.Generator) -> None:
    data = rng.random((300, 64))
    frames = mf.frame(data, 96, 96)
    assert frames.shape == (3, 96, 64)
    np.testing.assert_array_equal(frames[2], data[192:288])
    strided = rng.random(2000)[::2]  # non-contiguous input
    frames = mf.frame(strided, 10, 7)
    np.testing.assert_array_equal(frames[5], strided[35:45])


@pytest.mark.parametrize(("window", "hop"), [(0, 1), (1, 0), (-5, 2), (2.5, 1), (4, None)])
def test_frame_rejects_bad_lengths(window: object, hop: object) -> None:
    with pytest.raises(ValueError):
        mf.frame(np.zeros(10), window, hop)


def test_frame_rejects_scalar() -> None:
    with pytest.raises(ValueError, match="dimension"):
        mf.frame(np.float64(3.0), 1, 1)


# --- stft_magnitude ---------------------------------------------------------------------

def test_stft_magnitude_matches_direct_fft_across_chunks(rng: np.random.Generator) -> None:
    # 700 frames: more than two internal chunks, plus a partial one.
    signal = rng.random(400 + 699 * 160 + 37) - 0.5
    spec = mf.stft_magnitude(signal, 512, hop_length=160, window_length=400)
    assert spec.shape == (700, 257)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    for i in (0, 255, 256, 257, 511, 512, 699):
        expected = np.abs(np.fft.rfft(signal[i * 160:i * 160 + 400] * window, 512))
        np.testing.assert_allclose(spec[i], expected, rtol=1e-12, atol=1e-12)


def test_stft_magnitude_is_magnitude_not_power() -> None:
    # A full-scale cosine at an exact bin frequency, unwindowed peak would be N/2; with the
    # periodic Hann window (mean 0.5) the peak bin's magnitude is N/4.
    n = np.arange(512 * 4)
    signal = np.cos(2 * np.pi * 32 * n / 512)
    spec = mf.stft_magnitude(signal, 512, hop_length=512, window_length=512)
    np.testing.assert_allclose(spec[:, 32], 128.0, rtol=1e-9)


def test_stft_magnitude_short_fft_crops_frames(rng: np.random.Generator) -> None:
    signal = rng.random(1000)
    spec = mf.stft_magnitude(signal, 256, hop_length=100, window_length=400)
    window = mf.periodic_hann(400)
    expected = np.abs(np.fft.rfft((signal[100:500] * window)[:256]))
    np.testing.assert_allclose(spec[1], expected, rtol=1e-12, atol=1e-12)


def test_stft_magnitude_defaults_and_short_signal() -> None:
    spec = mf.stft_magnitude(np.ones(1024), 512)  # window = fft length, hop = half
    assert spec.shape == (3, 257)
    assert mf.stft_magnitude(np.ones(100), 512, 160, 400).shape == (0, 257)


def test_stft_magnitude_rejects_2d() -> None:
    with pytest.raises(ValueError, match="1-D"):
        mf.stft_magnitude(np.zeros((1000, 2)), 512, 160, 400)


# --- log_mel_spectrogram ----------------------------------------------------------------

def vggish_log_mel(signal: np.ndarray) -> np.ndarray:
    return mf.log_mel_spectrogram(signal, audio_sample_rate=RATE, log_offset=PARAMS.log_offset,
                                  window_length_secs=PARAMS.stft_window_seconds,
                                  hop_length_secs=PARAMS.stft_hop_seconds, **VGGISH_MEL)


def test_log_mel_matches_textbook_computation(rng: np.random.Generator) -> None:
    signal = rng.random(16000 * 3 + 37) - 0.5  # 298 frames, crosses a chunk boundary
    log_mel = vggish_log_mel(signal)
    assert log_mel.shape == (298, 64)
    assert log_mel.dtype == np.float64
    np.testing.assert_allclose(log_mel, naive_log_mel(signal), rtol=0, atol=1e-12)


def test_log_mel_of_silence_is_log_offset() -> None:
    log_mel = vggish_log_mel(np.zeros(16000))
    np.testing.assert_array_equal(log_mel, np.full((98, 64), math.log(0.01)))


def test_log_mel_short_and_empty_signals_have_zero_frames() -> None:
    assert vggish_log_mel(np.zeros(0)).shape == (0, 64)
    assert vggish_log_mel(np.zeros(399)).shape == (0, 64)
    assert vggish_log_mel(np.zeros(400)).shape == (1, 64)


def test_1khz_sine_peaks_in_the_band_centred_nearest_1khz() -> None:
    # Band i is centred on edge i+1 of 66 edges equally spaced in mel over 125–7500 Hz.
    lo, hi = mf.hertz_to_mel(125.0), mf.hertz_to_mel(7500.0)
    centres = [lo + (hi - lo) * (i + 1) / (BANDS + 1) for i in range(BANDS)]
    target = 1127.0 * math.log(1 + 1000.0 / 700.0)
    expected_band = min(range(BANDS), key=lambda i: abs(centres[i] - target))
    assert expected_band == 19
    t = np.arange(3 * RATE) / RATE
    log_mel = vggish_log_mel(0.5 * np.sin(2 * np.pi * 1000.0 * t))
    per_frame_peak = log_mel.argmax(axis=1)
    assert np.all(per_frame_peak == expected_band)
    # The two bands whose triangles contain 1 kHz come first; with the Hann main lobe
    # (±2 bins) their neighbours get the rest: four bands hold 98 % (the rest: side lobes).
    energy = np.exp(log_mel).mean(axis=0) - PARAMS.log_offset
    assert set(np.argsort(energy)[-2:]) == {19, 20}
    assert energy[18:22].sum() > 0.98 * energy.sum()


def test_log_mel_reference_default_arguments(rng: np.random.Generator) -> None:
    # The reference's defaults: 8 kHz, 25 ms/10 ms (200/80 samples, FFT 256), 20 bands,
    # 125–3800 Hz, log offset 0.
    signal = rng.random(8000) - 0.5
    log_mel = mf.log_mel_spectrogram(signal)
    assert log_mel.shape == (1 + (8000 - 200) // 80, 20)
    window = mf.periodic_hann(200)
    spectrum = np.abs(np.fft.rfft(signal[80:280] * window, 256))
    expected = np.log(spectrum @ np.array(mf.spectrogram_to_mel_matrix()))
    np.testing.assert_allclose(log_mel[1], expected, rtol=0, atol=1e-12)


def test_log_mel_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="audio_sample_rate"):
        mf.log_mel_spectrogram(np.zeros(1000), audio_sample_rate=float("nan"))
    with pytest.raises(ValueError, match="at least one sample"):
        mf.log_mel_spectrogram(np.zeros(1000), audio_sample_rate=16000, hop_length_secs=1e-6)
    with pytest.raises(ValueError, match="Nyquist"):
        mf.log_mel_spectrogram(np.zeros(1000), audio_sample_rate=8000, upper_edge_hertz=7500)
    with pytest.raises(ValueError, match="real numbers"):
        mf.log_mel_spectrogram(np.zeros(1000, dtype=complex))
    with pytest.raises(TypeError):
        mf.log_mel_spectrogram(np.zeros(1000), num_spectrogram_bins=3)

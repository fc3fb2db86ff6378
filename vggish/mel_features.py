"""Log-mel spectrogram front end of VGGish, in pure numpy (no TensorFlow).

The functions and their signatures and defaults are those of Google's reference
(tensorflow/models ``research/audioset/vggish/mel_features.py``), and so are the
numerics (see ``docs/numerics.md`` of the shared documentation): float64 throughout,
a *periodic* Hann window, the *magnitude* (not power) of a zero-padded real FFT, an HTK
mel filterbank with a zeroed DC row and no area normalisation, and ``ln(mel + offset)``.
VGGish was trained on exactly these features, so any deviation, however plausible
(``np.hanning``, power spectra, Slaney mels, centred frames), shifts the embeddings.

What differs from the reference is only how the work is done, never its result:

* framing is a read-only strided view (no copy, and callers cannot corrupt the signal
  through it);
* the mel matrix is built once per parameter set and cached, read-only;
* the STFT runs in chunks of frames, so one hour of audio needs a few hundred kilobytes
  of scratch memory instead of gigabytes of complex spectra, and each chunk stays in
  the CPU cache while it is windowed, transformed, mapped to mel bands and logged;
* bad arguments raise ``ValueError`` (never ``assert``, which ``python -O`` strips).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np

# HTK mel scale: mel(f) = 1127 · ln(1 + f / 700).
_MEL_BREAK_FREQUENCY_HERTZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0

# Frames per STFT chunk. 256 frames of a 512-point FFT are 1 MiB of float64 input and
# 1 MiB of complex output: small enough to stay in L2 cache, large enough that the
# per-call overhead of numpy is negligible (measured fastest on the project's machine
# between 64 and 512; 4096 is ~40 % slower because the chunk falls out of cache).
_STFT_CHUNK_FRAMES = 256


def _positive_int(name: str, value: object) -> int:
    """``value`` as an int ≥ 1, or a ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _num_frames(num_samples: int, window_length: int, hop_length: int) -> int:
    """Complete frames in ``num_samples``: ``1 + floor((N − W) / H)``, never negative.

    The reference computes the same formula but crashes (negative shape) when the signal
    is more than one hop shorter than a window; here such a signal has zero frames.
    """
    if num_samples < window_length:
        return 0
    return 1 + (num_samples - window_length) // hop_length


def frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """Split an array into successive, possibly overlapping frames along axis 0.

    An array of shape ``(num_samples, ...)`` becomes a read-only view of shape
    ``(num_frames, window_length, ...)`` where frame ``i`` starts at sample
    ``i * hop_length``. There is no padding: a trailing partial frame is dropped, and
    fewer than ``window_length`` samples give zero frames (the reference's behaviour,
    which the frame counts of VGGish depend on).

    The view shares memory with ``data`` (no copy, so framing one hour of audio costs
    nothing); it is read-only because overlapping frames alias the same samples, and a
    write through one frame would silently change its neighbours and ``data``.

    Args:
      data: array of dimension ≥ 1; frames are taken along the first axis.
      window_length: samples per frame (≥ 1).
      hop_length: advance between frame starts, in samples (≥ 1).

    Raises:
      ValueError: if ``data`` is 0-dimensional or the lengths are not positive integers.
    """
    window_length = _positive_int("window_length", window_length)
    hop_length = _positive_int("hop_length", hop_length)
    data = np.asarray(data)
    if data.ndim < 1:
        raise ValueError("frame() needs an array with at least one dimension")
    num_frames = _num_frames(data.shape[0], window_length, hop_length)
    shape = (num_frames, window_length, *data.shape[1:])
    strides = (data.strides[0] * hop_length, *data.strides)
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides,
                                           writeable=False)


def periodic_hann(window_length: int) -> np.ndarray:
    """The "periodic" Hann window ``w[n] = 0.5 − 0.5·cos(2πn/N)``, ``n = 0 … N−1``.

    ``np.hanning`` returns the *symmetric* window (period N − 1, zero at both ends),
    which is just over one cycle of a cosine and so not compactly represented on an
    N-point Fourier basis. The periodic window is one full cycle of period N: it starts
    at 0, peaks at exactly 1 at ``n = N/2`` and stops one sample short of the closing
    zero. VGGish's features use it, so ``np.hanning`` would change them.

    The expression is evaluated in the reference's order of operations so that the
    window is bit-identical to it.
    """
    window_length = _positive_int("window_length", window_length)
    return 0.5 - (0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length)))


def _fft_length_for(window_length: int) -> int:
    """Next power of two ≥ ``window_length`` (512 for 400), computed on integers.

    The reference evaluates ``2 ** ceil(log(W) / log(2))`` in floating point; both agree
    for every window length used in practice, but the integer form cannot be thrown off
    by a rounding error on an exact power of two.
    """
    return 1 << (window_length - 1).bit_length()


def _stft_magnitude_chunks(frames: np.ndarray, window: np.ndarray,
                           fft_length: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_frame, |rfft(frames·window, fft_length)|)`` chunk by chunk.

    Each chunk's windowed frames are written straight into a zero-padded buffer of
    ``fft_length`` columns, so the FFT needs no padding copy of its own; the buffer is
    reused across chunks (its padding stays zero because only the first
    ``window_length`` columns are ever written). The arithmetic (frame × window in
    float64, a real FFT, ``np.abs`` of the complex result) is the reference's.
    """
    num_frames, window_length = frames.shape
    if fft_length >= window_length:
        buffer = np.zeros((min(_STFT_CHUNK_FRAMES, max(num_frames, 1)), fft_length))
        for start in range(0, num_frames, _STFT_CHUNK_FRAMES):
            chunk = frames[start:start + _STFT_CHUNK_FRAMES]
            padded = buffer[:chunk.shape[0]]
            np.multiply(chunk, window, out=padded[:, :window_length])
            yield start, np.abs(np.fft.rfft(padded, axis=-1))
    else:
        # A transform shorter than the window crops each frame, as np.fft.rfft(x, n) does.
        for start in range(0, num_frames, _STFT_CHUNK_FRAMES):
            chunk = frames[start:start + _STFT_CHUNK_FRAMES]
            yield start, np.abs(np.fft.rfft(chunk * window, fft_length))


def _as_float_signal(signal: object, name: str = "signal") -> np.ndarray:
    """A 1-D real float64 signal (what the reference computes on), or ``ValueError``."""
    array = np.asarray(signal)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def stft_magnitude(signal: np.ndarray, fft_length: int, hop_length: int | None = None,
                   window_length: int | None = None) -> np.ndarray:
    """Magnitude of the short-time Fourier transform, one row per frame.

    Frames of ``window_length`` samples every ``hop_length`` samples (no padding, see
    ``frame``) are multiplied by a periodic Hann window and transformed with a real FFT
    of ``fft_length`` points (zero-padded, or cropped if shorter than the window).

    Args:
      signal: 1-D waveform; computed on in float64.
      fft_length: FFT size; the result has ``fft_length // 2 + 1`` columns.
      hop_length: advance between frames. The reference has no usable default (``None``
        crashes there); here it defaults to half the window, the overlap at which
        periodic Hann windows sum to a constant.
      window_length: samples per frame; defaults to ``fft_length``.

    Returns:
      float64 array of shape ``(num_frames, fft_length // 2 + 1)``: ``|X|``, not
      ``|X|²``, because VGGish's mel bands sum magnitudes.
    """
    fft_length = _positive_int("fft_length", fft_length)
    window_length = fft_length if window_length is None else _positive_int(
        "window_length", window_length)
    hop_length = max(1, window_length // 2) if hop_length is None else _positive_int(
        "hop_length", hop_length)
    frames = frame(_as_float_signal(signal), window_length, hop_length)
    window = periodic_hann(window_length)
    result = np.empty((frames.shape[0], fft_length // 2 + 1))
    for start, magnitude in _stft_magnitude_chunks(frames, window, fft_length):
        result[start:start + magnitude.shape[0]] = magnitude
    return result


def hertz_to_mel(frequencies_hertz: float | np.ndarray) -> np.floating | np.ndarray:
    """Frequencies in Hz to the HTK mel scale: ``1127 · ln(1 + f / 700)``.

    HTK's constant 1127 (= 1000 / ln(1 + 1000/700), rounded) makes 1000 Hz map to
    ≈ 1000 mel; VGGish's filterbank is linear on this scale, not Slaney's.
    Accepts a scalar, a sequence or an array; a scalar gives a numpy float64 scalar.
    """
    frequencies = np.asarray(frequencies_hertz, dtype=np.float64)
    return _MEL_HIGH_FREQUENCY_Q * np.log(1.0 + (frequencies / _MEL_BREAK_FREQUENCY_HERTZ))


def _check_mel_args(num_mel_bins: object, num_spectrogram_bins: object,
                    audio_sample_rate: object, lower_edge_hertz: object,
                    upper_edge_hertz: object) -> tuple[int, int, float, float, float]:
    """Validate and normalise the filterbank's arguments (also makes them hashable)."""
    num_mel_bins = _positive_int("num_mel_bins", num_mel_bins)
    num_spectrogram_bins = _positive_int("num_spectrogram_bins", num_spectrogram_bins)
    if num_spectrogram_bins < 2:
        raise ValueError(f"num_spectrogram_bins must be at least 2 (DC and Nyquist), "
                         f"got {num_spectrogram_bins}")
    try:
        rate, lower, upper = (float(audio_sample_rate), float(lower_edge_hertz),
                              float(upper_edge_hertz))
    except (TypeError, ValueError):
        raise ValueError(
            f"audio_sample_rate, lower_edge_hertz and upper_edge_hertz must be numbers, got "
            f"{audio_sample_rate!r}, {lower_edge_hertz!r}, {upper_edge_hertz!r}") from None
    # Written as positive conditions so that NaN fails them too.
    if not (math.isfinite(rate) and rate > 0.0):
        raise ValueError(f"audio_sample_rate must be a positive number, got {audio_sample_rate!r}")
    nyquist_hertz = rate / 2.0
    if not lower >= 0.0:
        raise ValueError(f"lower_edge_hertz {lower_edge_hertz!r} must be >= 0")
    if not lower < upper:
        raise ValueError(f"lower_edge_hertz {lower_edge_hertz!r} must be below "
                         f"upper_edge_hertz {upper_edge_hertz!r}")
    if not upper <= nyquist_hertz:
        raise ValueError(f"upper_edge_hertz {upper_edge_hertz!r} is above the Nyquist "
                         f"frequency {nyquist_hertz!r} of a {rate!r} Hz signal")
    return num_mel_bins, num_spectrogram_bins, rate, lower, upper


@functools.lru_cache(maxsize=32)
def _mel_matrix_cached(num_mel_bins: int, num_spectrogram_bins: int, audio_sample_rate: float,
                       lower_edge_hertz: float, upper_edge_hertz: float
                       ) -> tuple[np.ndarray, int, int, np.ndarray]:
    """The filterbank for one parameter set, plus its band of non-zero rows.

    Returns ``(matrix, first, stop, band)`` where rows outside ``first:stop`` are all
    zero and ``band`` is a contiguous copy of ``matrix[first:stop]``: multiplying only
    those spectrogram bins skips the bins below the lowest and above the highest mel
    edge (about 8 % of a 257-bin spectrum for VGGish), which contribute exact zeros.
    Everything returned is read-only, so the cache cannot be corrupted by a caller.
    """
    nyquist_hertz = audio_sample_rate / 2.0
    spectrogram_bins_mel = hertz_to_mel(np.linspace(0.0, nyquist_hertz, num_spectrogram_bins))
    # Band i (0-based) has lower edge edges[i], centre edges[i+1], upper edge edges[i+2]:
    # num_mel_bins + 2 edges equally spaced in mel between the two edge frequencies.
    band_edges_mel = np.linspace(hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz),
                                 num_mel_bins + 2)
    lower_mel = band_edges_mel[:-2]
    center_mel = band_edges_mel[1:-1]
    upper_mel = band_edges_mel[2:]
    # Triangles are linear in mel, not Hz. Same element-wise operations as the reference's
    # per-band loop, broadcast over all bands at once, hence bit-identical weights.
    bins = spectrogram_bins_mel[:, np.newaxis]
    lower_slope = (bins - lower_mel) / (center_mel - lower_mel)
    upper_slope = (upper_mel - bins) / (upper_mel - center_mel)
    matrix = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    # HTK excludes the DC bin: it gets weight zero in every band, whatever the edges.
    matrix[0, :] = 0.0
    nonzero_rows = np.flatnonzero(matrix.any(axis=1))
    if nonzero_rows.size:
        first, stop = int(nonzero_rows[0]), int(nonzero_rows[-1]) + 1
    else:  # Bands narrower than one FFT bin can miss every bin centre.
        first, stop = 0, 0
    band = np.ascontiguousarray(matrix[first:stop])
    matrix.setflags(write=False)
    band.setflags(write=False)
    return matrix, first, stop, band


def spectrogram_to_mel_matrix(num_mel_bins: int = 20, num_spectrogram_bins: int = 129,
                              audio_sample_rate: float = 8000,
                              lower_edge_hertz: float = 125.0,
                              upper_edge_hertz: float = 3800.0) -> np.ndarray:
    """Matrix ``A`` that maps spectrogram rows to mel bands: ``mel = S @ A``.

    ``S`` is (frames × ``num_spectrogram_bins``) magnitudes of the non-redundant FFT bins
    (``fft_length/2 + 1``, spanning 0 … Nyquist). Column ``i`` is a triangle in the HTK
    mel domain rising from edge ``i`` to a peak of 1 at edge ``i+1`` and falling to zero
    at edge ``i+2``, the ``num_mel_bins + 2`` edges being equally spaced in mel between
    ``lower_edge_hertz`` and ``upper_edge_hertz``. There is no area normalisation
    (wider high bands weigh more, as in the reference), and the DC row is zero.

    The defaults are the reference's (an 8 kHz configuration); VGGish calls it with
    64 bands, 257 bins, 16 kHz and 125–7500 Hz.

    The matrix is computed once per distinct set of arguments and cached; the returned
    array is shared and therefore read-only (copy it to modify it).

    Raises:
      ValueError: if a count is not a positive integer, the sample rate is not positive,
        ``lower_edge_hertz < 0``, ``lower_edge_hertz >= upper_edge_hertz``, or
        ``upper_edge_hertz`` exceeds the Nyquist frequency.

    Returns:
      float64 array of shape ``(num_spectrogram_bins, num_mel_bins)``.
    """
    args = _check_mel_args(num_mel_bins, num_spectrogram_bins, audio_sample_rate,
                           lower_edge_hertz, upper_edge_hertz)
    return _mel_matrix_cached(*args)[0]


def _log_mel_into(data: np.ndarray, out: np.ndarray, audio_sample_rate: float,
                  log_offset: float, window_length_secs: float, hop_length_secs: float,
                  **kwargs: float) -> None:
    """Write the first ``len(out)`` log-mel frames of ``data`` into ``out``, chunk by chunk.

    ``out`` may be float32 (what the network is fed): each chunk is computed in float64
    and only rounded when stored, exactly as computing everything in float64 and then
    casting, but without ever holding a full-length float64 spectrogram.
    """
    window_length, hop_length, fft_length = _stft_geometry(
        audio_sample_rate, window_length_secs, hop_length_secs)
    frames = frame(data, window_length, hop_length)[:out.shape[0]]
    if frames.shape[0] != out.shape[0]:
        raise ValueError(f"signal has {frames.shape[0]} frames, {out.shape[0]} requested")
    args = _check_mel_args(kwargs.pop("num_mel_bins", 20), fft_length // 2 + 1,
                           audio_sample_rate, kwargs.pop("lower_edge_hertz", 125.0),
                           kwargs.pop("upper_edge_hertz", 3800.0))
    if kwargs:
        raise TypeError(f"unexpected keyword arguments for spectrogram_to_mel_matrix: "
                        f"{sorted(kwargs)}")
    _, first, stop, band = _mel_matrix_cached(*args)
    if out.shape[1:] != (args[0],):
        raise ValueError(f"out has shape {out.shape}, expected (frames, {args[0]})")
    window = periodic_hann(window_length)
    mel = np.empty((min(_STFT_CHUNK_FRAMES, out.shape[0]), args[0]))
    for start, magnitude in _stft_magnitude_chunks(frames, window, fft_length):
        chunk_mel = mel[:magnitude.shape[0]]
        np.dot(magnitude[:, first:stop], band, out=chunk_mel)
        chunk_mel += log_offset
        np.log(chunk_mel, out=chunk_mel)
        out[start:start + chunk_mel.shape[0]] = chunk_mel


def _stft_geometry(audio_sample_rate: float, window_length_secs: float,
                   hop_length_secs: float) -> tuple[int, int, int]:
    """Window, hop and FFT lengths in samples, rounded as the reference rounds them."""
    try:
        rate = float(audio_sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"audio_sample_rate must be a number, got {audio_sample_rate!r}") from None
    if not (math.isfinite(rate) and rate > 0.0):
        raise ValueError(f"audio_sample_rate must be a positive number, got {audio_sample_rate!r}")
    window_length = round(rate * float(window_length_secs))
    hop_length = round(rate * float(hop_length_secs))
    if window_length < 1 or hop_length < 1:
        raise ValueError(f"window ({window_length_secs!r} s) and hop ({hop_length_secs!r} s) "
                         f"must each be at least one sample at {audio_sample_rate!r} Hz")
    return window_length, hop_length, _fft_length_for(window_length)


def log_mel_spectrogram(data: np.ndarray, audio_sample_rate: float = 8000,
                        log_offset: float = 0.0, window_length_secs: float = 0.025,
                        hop_length_secs: float = 0.010, **kwargs: float) -> np.ndarray:
    """Waveform → ``ln(mel magnitude spectrogram + log_offset)``, one row per frame.

    Window and hop are rounded to whole samples, the FFT length is the next power of two
    at or above the window (400 → 512 at 16 kHz), and the mel matrix comes from
    ``spectrogram_to_mel_matrix(num_spectrogram_bins=fft_length // 2 + 1,
    audio_sample_rate=audio_sample_rate, **kwargs)``. ``log_offset`` keeps silence finite
    (VGGish uses 0.01; the reference's default 0.0 gives ``-inf`` on digital silence).

    The work is done in chunks of frames, so memory beyond the input and the
    (frames × bands) result stays constant whatever the signal's length.

    Args:
      data: 1-D waveform (computed on in float64).
      audio_sample_rate: its sampling rate in Hz.
      log_offset: added before the logarithm.
      window_length_secs: analysis window duration.
      hop_length_secs: advance between windows.
      **kwargs: ``num_mel_bins``, ``lower_edge_hertz``, ``upper_edge_hertz`` for
        ``spectrogram_to_mel_matrix``.

    Returns:
      float64 array of shape ``(num_frames, num_mel_bins)``; zero rows when the signal is
      shorter than one window.
    """
    signal = _as_float_signal(data, "data")
    window_length, hop_length, _ = _stft_geometry(audio_sample_rate, window_length_secs,
                                                  hop_length_secs)
    num_frames = _num_frames(signal.shape[0], window_length, hop_length)
    num_mel_bins = _positive_int("num_mel_bins", kwargs.get("num_mel_bins", 20))
    out = np.empty((num_frames, num_mel_bins))
    _log_mel_into(signal, out, audio_sample_rate, log_offset, window_length_secs,
                  hop_length_secs, **kwargs)
    return out

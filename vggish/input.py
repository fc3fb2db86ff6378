"""Waveforms → VGGish input examples: (K, 96, 64) float32 log-mel patches (pure numpy).

Mirrors Google's reference ``vggish_input.py``: mix down to mono by averaging the
channels, resample to 16 kHz with resampy's default filter, compute the log-mel
spectrogram of ``vggish.mel_features`` in float64, and cut it into non-overlapping
0.96 s patches of 96 frames. The result is cast to float32 because that is what the
network is fed (the cast is the only rounding: ≤ 5e-7 on VGGish's value range).

Deliberate differences from the reference, none of which changes a result it returns:

* a signal too short for one example gives an array of shape (0, 96, 64) instead of an
  exception (the reference crashes for anything shorter than about 0.015 s);
* NaN or infinite samples raise ``ValueError`` (the reference silently returns NaN
  features, which would then propagate into every embedding of the clip);
* only the frames that end up in an example are computed, straight into the float32
  result, so memory stays at input + output whatever the duration.

resampy (which pulls in numba, a slow import) is imported only when resampling is
actually needed, so 16 kHz callers and ``--help`` stay fast.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from vggish import mel_features
from vggish.errors import BadAudioError
from vggish.params import PARAMS, VGGishParams

logger = logging.getLogger(__name__)

INT16_FULL_SCALE = 32768.0
"""int16 PCM → float: divide by 2¹⁵, so that full scale maps to [−1, +1)."""


_MAX_CHANNELS = 64
"""More channels than this (and than frames) means a transposed array, not real audio."""


class WavFormatError(BadAudioError, ValueError):
    """The file is not a readable WAV file with signed 16-bit PCM samples."""


def _mono_float64(data: object) -> np.ndarray:
    """1-D float64 mono signal from a 1-D or (frames, channels) real array.

    The channel mean is taken before resampling (the reference's order) and in float64,
    whatever the input dtype. Integer input is converted, not scaled: like the
    reference, ``waveform_to_examples`` expects samples in about [−1, +1] and leaves
    scaling of PCM integers to the caller (``wavfile_to_examples`` does it for int16).
    """
    array = np.asarray(data)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"audio samples must be real numbers, got dtype {array.dtype}")
    if array.ndim == 1:
        return array.astype(np.float64, copy=False)
    if array.ndim == 2:
        if array.shape[1] == 0:
            raise ValueError(f"audio of shape {array.shape} has no channels")
        if array.shape[1] > _MAX_CHANNELS and array.shape[1] > array.shape[0]:
            # Averaging 48000 "channels" of 2 "frames" would silently give no example.
            raise ValueError(f"audio of shape {array.shape} looks like (channels, frames); "
                             f"expected (frames, channels): transpose it")
        return array.mean(axis=1, dtype=np.float64)
    raise ValueError(f"audio must be 1-D (mono) or 2-D (frames, channels), got shape "
                     f"{array.shape}")


def _check_finite(signal: np.ndarray) -> None:
    """Reject NaN/inf with the position of the first bad sample (to help find its origin)."""
    finite = np.isfinite(signal)
    if not finite.all():
        first = int(np.argmin(finite))
        raise ValueError(f"audio contains NaN or infinite samples (first at sample {first} "
                         f"of {signal.shape[0]}, value {signal[first]})")


def _check_sample_rate(sample_rate: object) -> float:
    """The rate as a float; bools, strings and non-positive or non-finite values are errors."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number)):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    rate = float(sample_rate)
    if not (math.isfinite(rate) and rate > 0.0):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    return rate


def num_examples(num_samples: int, params: VGGishParams = PARAMS) -> int:
    """Examples K that ``num_samples`` samples at ``params.sample_rate`` yield.

    F = 1 + ⌊(N − 400) / 160⌋ log-mel frames (0 if N < 400), then
    K = 1 + ⌊(F − 96) / 96⌋ examples (0 if F < 96): 3.0 s → F = 298, K = 3.
    """
    frames = mel_features._num_frames(num_samples, params.stft_window_length_samples,
                                      params.stft_hop_length_samples)
    return mel_features._num_frames(frames, params.num_frames, params.example_hop_frames)


def _empty_examples(params: VGGishParams) -> np.ndarray:
    return np.zeros((0, params.num_frames, params.num_bands), dtype=np.float32)


def waveform_to_examples(data: np.ndarray, sample_rate: float,
                         params: VGGishParams = PARAMS) -> np.ndarray:
    """Convert a waveform into VGGish's input examples.

    Args:
      data: 1-D (mono) or 2-D ``(frames, channels)`` array of samples, generally in
        [−1.0, +1.0] (not required). Channels are averaged. Integer arrays are used as
        they are (not divided by 32768); use ``wavfile_to_examples`` for int16 files.
      sample_rate: sampling rate of ``data`` in Hz; anything other than
        ``params.sample_rate`` is resampled with ``resampy.resample``.
      params: VGGish constants (the defaults are the released model's).

    Returns:
      float32 array of shape ``(K, params.num_frames, params.num_bands)`` =
      ``(K, 96, 64)``: K non-overlapping 0.96 s log-mel patches; K = 0 when the input is
      empty or too short for a single patch (a trailing partial patch is dropped).

    Raises:
      ValueError: on NaN/inf samples, a non-positive sample rate, or a bad shape/dtype.
    """
    rate = _check_sample_rate(sample_rate)
    signal = _mono_float64(data)
    _check_finite(signal)
    target_rate = params.sample_rate
    if signal.shape[0] == 0:
        return _empty_examples(params)
    if rate != target_rate:
        # resampy refuses to produce an empty signal; that input yields no example anyway.
        if int(signal.shape[0] * float(target_rate) / rate) < 1:
            return _empty_examples(params)
        import resampy  # Lazy: pulls in numba (seconds of import time).

        signal = resampy.resample(signal, rate, target_rate)
    count = num_examples(signal.shape[0], params)
    if count == 0:
        logger.debug("%d samples at %d Hz: too short for one example", signal.shape[0],
                     target_rate)
        return _empty_examples(params)
    hop_frames, window_frames = params.example_hop_frames, params.num_frames
    needed_frames = (count - 1) * hop_frames + window_frames
    log_mel = np.empty((needed_frames, params.num_bands), dtype=np.float32)
    mel_features._log_mel_into(
        signal, log_mel,
        audio_sample_rate=target_rate,
        log_offset=params.log_offset,
        window_length_secs=params.stft_window_seconds,
        hop_length_secs=params.stft_hop_seconds,
        num_mel_bins=params.num_mel_bins,
        lower_edge_hertz=params.mel_min_hz,
        upper_edge_hertz=params.mel_max_hz)
    if hop_frames == window_frames:
        # Non-overlapping patches (VGGish's setting) are a plain reshape: no copy.
        return log_mel.reshape(count, window_frames, params.num_bands)
    return np.array(mel_features.frame(log_mel, window_frames, hop_frames))


def read_wav_int16(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a signed 16-bit PCM WAV file: ``(int16 samples (frames[, channels]), rate)``.

    Uses ``scipy.io.wavfile`` (imported lazily), which also understands the
    WAVE_FORMAT_EXTENSIBLE header that many tools write and the standard library's
    ``wave`` module of Python 3.11 rejects. Any other sample format (8-bit, 24/32-bit,
    float) is refused with a message naming it: VGGish's reference scales by 2¹⁵, which
    is only right for int16. (The application has its own general reader.)

    Raises:
      WavFormatError: if the file is missing, not a WAV file, or not 16-bit PCM.
    """
    from scipy.io import wavfile  # Lazy: only file readers need it.

    path = Path(path)
    try:
        rate, samples = wavfile.read(path)
    except FileNotFoundError:
        raise WavFormatError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise WavFormatError(f"{path}: not a readable WAV file ({exc})") from None
    if samples.dtype != np.int16:
        raise WavFormatError(f"{path}: samples are {samples.dtype}, expected signed 16-bit "
                             f"PCM (int16)")
    return samples, int(rate)


def wavfile_to_examples(path: str | os.PathLike[str],
                        params: VGGishParams = PARAMS) -> np.ndarray:
    """Examples of a 16-bit PCM WAV file: samples / 32768.0, then ``waveform_to_examples``.

    Raises:
      WavFormatError: if the file is not a readable 16-bit PCM WAV file.
    """
    samples, rate = read_wav_int16(path)
    return waveform_to_examples(samples / INT16_FULL_SCALE, rate, params)

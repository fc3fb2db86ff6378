"""The constants of VGGish, in one frozen dataclass.

Values are those of Google's reference (tensorflow/models research/audioset/vggish,
``vggish_params.py``); derived values are properties so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VGGishParams:
    # Waveform and STFT.
    sample_rate: int = 16000
    stft_window_seconds: float = 0.025
    stft_hop_seconds: float = 0.010
    # Log-mel spectrogram.
    num_mel_bins: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.01
    # Examples fed to the network.
    example_window_seconds: float = 0.96
    example_hop_seconds: float = 0.96
    # Network output and post-processing.
    embedding_size: int = 128
    quantize_min_val: float = -2.0
    quantize_max_val: float = 2.0
    quantize_bits: int = 8

    @property
    def stft_window_length_samples(self) -> int:
        return round(self.sample_rate * self.stft_window_seconds)

    @property
    def stft_hop_length_samples(self) -> int:
        return round(self.sample_rate * self.stft_hop_seconds)

    @property
    def fft_length(self) -> int:
        """Next power of two at or above the window length (512 for 400 samples)."""
        return 2 ** np_ceil_log2(self.stft_window_length_samples)

    @property
    def features_sample_rate(self) -> float:
        """Log-mel frames per second (100)."""
        return 1.0 / self.stft_hop_seconds

    @property
    def num_frames(self) -> int:
        """Log-mel frames per example (96)."""
        return round(self.example_window_seconds * self.features_sample_rate)

    @property
    def example_hop_frames(self) -> int:
        return round(self.example_hop_seconds * self.features_sample_rate)

    @property
    def num_bands(self) -> int:
        return self.num_mel_bins

    @property
    def quantize_levels(self) -> int:
        return 2**self.quantize_bits


def np_ceil_log2(n: int) -> int:
    """ceil(log2(n)) for a positive integer, without floating point."""
    return (n - 1).bit_length()


PARAMS = VGGishParams()

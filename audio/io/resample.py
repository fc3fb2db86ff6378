"""Sample-rate conversion of a stream, block by block, equal to converting it whole.

Kept apart from ``audio.io`` (file reading) because the microphone, the pipeline's
in-memory waveforms and custom-class training resample too, without any file.
"""

from __future__ import annotations

import math

import numpy as np


class StreamResampler:
    """resampy's resampling applied block by block, equal to resampling the whole signal.

    Each block is resampled together with ``context`` input samples on both sides
    (kept from the previous block, and held back from the current one), and only the
    part of the output that belongs to the block is kept. Blocks are cut at multiples of
    ``rate_in / gcd(rate_in, rate_out)`` input samples so that they map to a whole number
    of output samples, keeping the output grid aligned with the whole-signal one. The
    context (≥ 50 ms) exceeds the support of resampy's default filter, so the result
    equals whole-signal resampling up to floating-point rounding.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in < 1 or rate_out < 1:
            raise ValueError("sample rates must be positive")
        common = math.gcd(int(rate_in), int(rate_out))
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self._in_unit = self.rate_in // common
        self._out_unit = self.rate_out // common
        units = math.ceil(max(0.05 * rate_in, 256) / self._in_unit)
        self._context = units * self._in_unit
        self._history = np.zeros(0, dtype=np.float64)
        self._pending = np.zeros(0, dtype=np.float64)

    def _out_len(self, n_in: int) -> int:
        return n_in * self.rate_out // self.rate_in

    def _resample(self, x: np.ndarray) -> np.ndarray:
        import resampy  # Lazy: numba makes it a slow import.

        if self._out_len(x.shape[0]) < 1:
            return np.zeros(0, dtype=np.float64)
        return resampy.resample(x, self.rate_in, self.rate_out)

    def process(self, block: np.ndarray, final: bool = False) -> np.ndarray:
        """Feed 1-D float samples; returns the output samples that are now complete."""
        if self.rate_in == self.rate_out:
            return np.asarray(block, dtype=np.float64)
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float64)])
        if final:
            usable = self._pending.shape[0]
            padded = np.concatenate([self._history, self._pending])
        else:
            usable = ((self._pending.shape[0] - self._context) // self._in_unit) * self._in_unit
            if usable <= 0:
                return np.zeros(0, dtype=np.float64)
            padded = np.concatenate([self._history, self._pending[:usable + self._context]])
        if usable == 0:
            return np.zeros(0, dtype=np.float64)
        skip = self._out_len(self._history.shape[0])
        out = self._resample(padded)[skip:skip + self._out_len(usable)]
        consumed = self._pending[:usable]
        self._history = np.concatenate([self._history, consumed])[-self._context:]
        self._pending = self._pending[usable:]
        return out

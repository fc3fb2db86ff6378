"""What every source shares: the target rate and the errors a source raises."""

from __future__ import annotations

from audio.errors import AudioAnalysisError, UsageError

TARGET_RATE = 16000
"""Every source yields 16 kHz mono float32 windows."""


class SourceError(AudioAnalysisError, RuntimeError):
    """A source cannot start or cannot go on (device missing, no readable files)."""


class DeviceNotFoundError(SourceError, UsageError):
    """``--device`` names no input device, or several."""


class NoInputDeviceError(SourceError):
    """No default input device: no sound card, or no sound server PortAudio can reach."""

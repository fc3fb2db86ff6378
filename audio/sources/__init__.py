"""Where the loop's audio comes from: a microphone, a file, a stream of files.

Every source yields ``audio.loop.AudioWindow``s of 16 kHz mono float32 audio on the
loop's source thread (see ``audio.loop.Source`` for the protocol):
``microphone.MicrophoneSource`` (PyAudio), ``files.FileStreamSource`` and
``files.FileSource`` (files and folders, for headless machines and tests).
"""

from audio.sources.base import (
    TARGET_RATE,
    DeviceNotFoundError,
    NoInputDeviceError,
    SourceError,
)
from audio.sources.files import (
    FileSource,
    FileStreamSource,
    expand_audio_paths,
    require_readable_audio,
    skipped_summary,
)
from audio.sources.microphone import (
    MicrophoneSource,
    check_input_device,
    list_input_devices,
)

__all__ = [
    "TARGET_RATE", "DeviceNotFoundError", "FileSource", "FileStreamSource",
    "MicrophoneSource", "NoInputDeviceError", "SourceError", "check_input_device",
    "expand_audio_paths", "list_input_devices", "require_readable_audio", "skipped_summary",
]

"""The sink that saves every classified window as a wav file (``capture.py --save_path``)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from audio.errors import UsageError
from audio.events import Event, SoundEvent
from audio.io import write_wav

# The name the logger had before the sinks became a package: log lines (and filters on
# "audio.sinks") stay as they were.
logger = logging.getLogger("audio.sinks")


class SaveDirectoryError(UsageError, ValueError):
    """The directory given to save recordings in does not exist or is not a directory."""


def check_save_directory(path: str | os.PathLike[str]) -> Path:
    """The path as a directory that exists, or ``SaveDirectoryError`` (the original's checks)."""
    directory = Path(path).expanduser()
    if not directory.exists():
        raise SaveDirectoryError(f"save path {directory} does not exist")
    if not directory.is_dir():
        raise SaveDirectoryError(f"save path {directory} is not a directory")
    return directory


def save_unique(directory: Path, stem: str, audio: np.ndarray, rate: int) -> Path:
    """Write ``<stem>.wav`` (``<stem>_1.wav``, ... when taken) and return its path.

    On ``OSError`` (disk full, directory removed, permissions changed) the partial file
    is removed before the error goes up: never a truncated recording left behind.
    """
    path = directory / f"{stem}.wav"
    suffix = 0
    while path.exists():
        suffix += 1
        path = directory / f"{stem}_{suffix}.wav"
    try:
        write_wav(path, audio, rate)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        exc.filename = str(path)
        raise
    return path


class WavSaverSink:
    """Saves each window's audio as ``record_<unix time>.wav`` (16-bit PCM) in a directory.

    The name uses the window's end time, whole seconds, as the original; when two windows
    end within the same second a ``_1``, ``_2``... suffix keeps both.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = check_save_directory(directory)
        self.saved: list[Path] = []
        self.failed = 0

    def handle(self, event: Event) -> None:
        if event.audio is None:
            logger.debug("event %d carries no audio; nothing to save", event.id)
            return
        try:
            path = save_unique(self.directory, f"record_{event.timestamp:.0f}", event.audio,
                               event.sample_rate)
        except OSError as exc:
            self.failed += 1
            logger.error("cannot save %s: %s (the window was still classified)", exc.filename,
                         (exc.strerror or str(exc)).lower())
            return
        self.saved.append(path)
        logger.info('"%s" saved.', path)

    def handle_sound(self, record: SoundEvent) -> None:
        """Nothing: this sink saves windows; ``EventAudioSink`` saves the sound events."""

    def close(self) -> None:
        pass

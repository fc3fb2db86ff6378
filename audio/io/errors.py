"""The errors of audio input: one class per way a file can be unusable, one mapping from
what the operating system, libsndfile and numpy raise to those classes.

Every message is one line that starts with the file name, so the entry scripts print it
as it is (``error: a.flac: permission denied``) and go on with the next input.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from audio.errors import BadAudioError


class AudioFileError(BadAudioError, ValueError):
    """A file cannot be used as audio input. The message is one line naming the file."""


class AudioFileNotFoundError(AudioFileError):
    """No file at that path."""


class NotAFileError(AudioFileError):
    """The path is a directory (or another non-regular file)."""


class UnreadableFileError(AudioFileError):
    """The operating system refused or failed to read the file (permission, symlink loop,
    I/O error)."""


class NotAudioError(AudioFileError):
    """The file is not in an audio format that can be decoded."""


class UnsupportedFormatError(NotAudioError):
    """Audio (or video) in a container or codec that cannot be decoded yet (m4a/AAC,
    WebM/Opus, MP4 video): the message names it and the FFmpeg command converting it."""


class CorruptAudioError(AudioFileError):
    """The file looks like audio but is truncated or its headers are inconsistent."""


class AudioLimitError(AudioFileError):
    """The file declares more than the limits (rate, channels) or needs more memory."""


class EmptyAudioError(AudioFileError):
    """The file holds no samples."""


class InvalidSamplesError(AudioFileError):
    """The file holds NaN, infinite or out-of-range samples."""


class AudioTooShortError(AudioFileError):
    """The audio is shorter than the shortest input the model can classify."""


def os_error(path: Path, exc: OSError) -> AudioFileError:
    """The one-line error for an ``OSError`` met while opening or reading ``path``."""
    code = exc.errno
    if code == errno.ENOENT:
        if os.path.islink(path):
            return AudioFileNotFoundError(f"{path}: broken symlink (its target does not "
                                          f"exist)")
        return AudioFileNotFoundError(f"{path}: no such file")
    if code == errno.ENOTDIR:
        return AudioFileNotFoundError(f"{path}: no such file (a parent is not a directory)")
    if code == errno.ELOOP:
        return UnreadableFileError(f"{path}: symlink loop")
    if code in (errno.EACCES, errno.EPERM):
        return UnreadableFileError(f"{path}: permission denied")
    if code == errno.EISDIR:
        return NotAFileError(f"{path}: is a directory, not an audio file")
    reason = (exc.strerror or str(exc) or type(exc).__name__).strip().splitlines()[0]
    return UnreadableFileError(f"{path}: cannot read ({reason.lower()})")


def input_error(path: Path, exc: BaseException, seconds: float | None = None,
                container: str = "audio") -> AudioFileError:
    """Any failure met while opening, reading or decoding ``path`` as ``AudioFileError``.

    ``seconds``: where in the audio it happened, when known (named in the message).
    """
    if isinstance(exc, AudioFileError):
        return exc
    if isinstance(exc, OSError):
        return os_error(path, exc)
    if isinstance(exc, MemoryError):
        return AudioLimitError(f"{path}: not enough memory to decode it")
    where = f" at {seconds:.3f} s" if seconds is not None else ""
    reason = " ".join(str(exc).split()).removeprefix("Error : ") or type(exc).__name__
    return CorruptAudioError(f"{path}: corrupt {container} stream{where} ({reason})")


INPUT_FAILURES = (OSError, MemoryError, RuntimeError, ValueError, EOFError)
"""What reading and decoding raise on a bad input: the operating system's errors,
libsndfile's (``soundfile.LibsndfileError`` is a ``RuntimeError``), allocation failures,
numpy's on inconsistent sizes."""

"""Reading audio files of any common PCM encoding, by blocks; writing int16 wav.

WAV files are parsed by ``audio.io.wavformat``, chunk by chunk, rather than with
``scipy.io.wavfile`` or the standard library's ``wave``: those load whole files (a
one-hour file would not fit the memory budget), reject 24-bit or float data, or silently
accept truncated files. The parser supports:

* PCM (format tag 1): 8-bit unsigned, 16/24/32-bit signed integer;
* IEEE float (format tag 3): 32/64-bit;
* WAVE_FORMAT_EXTENSIBLE (0xFFFE) whose sub-format is one of the two above;
* up to ``MAX_CHANNELS`` channels at up to ``MAX_SAMPLE_RATE`` Hz.

Samples become float32 in [−1, 1]: unsigned 8-bit as ``(x − 128) / 128``, signed
integers divided by 2^(bits−1) (int16 / 32768, as the reference). Float data is passed
through as it is (it may exceed ±1; the front end does not care), but NaN, infinity and
float64 values beyond float32's range are refused.

Other files (FLAC, MP3, Ogg Vorbis/Opus, AIFF, CAF, RF64, WAV encodings such as µ-law or
ADPCM) are decoded with ``soundfile`` (libsndfile). A file it refuses whose magic bytes
show audio in another container (m4a/AAC, WebM, MP4 video, WMA...) is an
``UnsupportedFormatError`` naming that format and the FFmpeg command converting it
(``audio.io.formats``).

Memory is bounded in bytes, not by what a header declares: blocks hold at most
``BLOCK_BYTES`` of decoded samples whatever the rate and channel count, and are mixed
down to mono one at a time (``block_frames_for``, ``mono_blocks``).

Every failure to open, read, decode or resample an input (the operating system's
``OSError``s, libsndfile's errors, allocation failures) is a subclass of
``AudioFileError`` with a one-line message that starts with the file name, so the entry
scripts print it as it is and go on with the next input.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from audio.io.errors import (
    INPUT_FAILURES,
    AudioFileError,
    AudioFileNotFoundError,
    AudioLimitError,
    AudioTooShortError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAFileError,
    NotAudioError,
    UnreadableFileError,
    UnsupportedFormatError,
    input_error,
    os_error,
)
from audio.io.formats import audio_extensions, read_head_and_tail, unsupported_format
from audio.io.resample import StreamResampler
from audio.io.wavformat import (
    WAVE_FORMAT_IEEE_FLOAT,
    UnsupportedWavEncoding,
    WavLayout,
    decode_pcm,
    parse_wav_header,
    to_int16,
    write_wav,
)

__all__ = [
    "BLOCK_BYTES", "MAX_CHANNELS", "MAX_SAMPLE_RATE", "AudioFileError",
    "AudioFileNotFoundError", "AudioLimitError", "AudioReader", "AudioTooShortError",
    "CorruptAudioError", "EmptyAudioError", "InvalidSamplesError", "NotAFileError",
    "NotAudioError", "StreamResampler", "UnreadableFileError", "UnsupportedFormatError",
    "WavLayout", "audio_extensions", "block_frames_for", "decode_pcm", "mono_blocks", "open_audio", "parse_wav_header",
    "read_audio", "to_int16", "write_wav",
]

# The input limits, in one place. They keep a header from deciding how much memory a run
# takes: 384 kHz is the highest rate of studio converters, 64 channels more than any
# microphone array or surround format a sound classifier is fed.
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 64
BLOCK_BYTES = 32 * 2**20
"""Decoded float32 samples held per block, whatever the rate and channel count."""
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_path(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        raise os_error(path, exc) from None
    if stat.S_ISDIR(info.st_mode):
        raise NotAFileError(f"{path}: is a directory, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        raise NotAFileError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise EmptyAudioError(f"{path}: empty file (0 bytes)")


class AudioReader:
    """An open audio file, read by blocks of frames. Use ``open_audio`` to make one.

    Blocks are float32 arrays of shape (frames, channels). Float data is checked for NaN,
    infinity and values beyond float32 as it is read (``InvalidSamplesError``). Any
    failure while reading is an ``AudioFileError`` naming the file and the position.
    """

    container = "audio"
    """The stream's format in messages (``corrupt FLAC stream at 12.000 s``)."""

    def __init__(self, path: Path, sample_rate: int, channels: int, frames: int,
                 description: str) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames = frames
        self.description = description

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def blocks(self, block_frames: int, start: int = 0, stop: int | None = None
               ) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``block_frames`` frames of frames [start, stop)
        (default: the whole file); a shard of a long file is read without decoding what
        comes before it (``audio.batch``)."""
        if block_frames < 1:
            raise ValueError("block_frames must be positive")
        if not 0 <= start <= (self.frames if stop is None else min(stop, self.frames)):
            raise ValueError(f"frames [{start}, {stop}) are not within the file")
        done = start
        decoded = self._decode(block_frames, start, stop)
        while True:
            try:
                block = next(decoded)
            except StopIteration:
                return
            except INPUT_FAILURES as exc:
                raise input_error(self.path, exc, done / self.sample_rate,
                                  self.container) from None
            done += block.shape[0]
            yield block
            del block  # not kept alive while the next block is decoded

    def _decode(self, block_frames: int, start: int, stop: int | None
                ) -> Iterator[np.ndarray]:
        """Blocks of frames [start, stop); ``stop`` None: to the end of the stream."""
        raise NotImplementedError

    def read_all(self) -> np.ndarray:
        parts = list(self.blocks(max(self.frames, 1)))
        if not parts:
            return np.zeros((0, self.channels), dtype=np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def close(self) -> None:
        pass

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _checked(self, samples: np.ndarray, first_frame: int) -> np.ndarray:
        """``samples`` as float32, refusing NaN, infinity and values float32 cannot hold
        (a float64 1e300 would otherwise turn into infinity and be misreported)."""
        flat = samples.reshape(-1)
        bad = ~np.isfinite(flat)
        problem = "NaN or infinite sample"
        if not bad.any() and flat.dtype.itemsize > 4:
            bad = np.abs(flat) > FLOAT32_MAX
            problem = "sample beyond the float32 range"
        if bad.any():
            index = int(np.argmax(bad))
            seconds = (first_frame + index // self.channels) / self.sample_rate
            detail = "" if problem.startswith("NaN") else f" ({flat[index]:.3g})"
            raise InvalidSamplesError(f"{self.path}: {problem}{detail} at {seconds:.3f} s")
        if samples.dtype == np.float32 and samples.flags.writeable:
            return samples  # libsndfile's own float32 block: nothing to convert
        return samples.astype(np.float32)  # a writable copy (WAV bytes are read-only)


class _WavReader(AudioReader):
    container = "WAV"

    def __init__(self, path: Path, stream: BinaryIO, layout: WavLayout) -> None:
        super().__init__(path, layout.sample_rate, layout.channels, layout.frames,
                         layout.description)
        self._stream = stream
        self._layout = layout

    def _decode(self, block_frames: int, start: int, stop: int | None
                ) -> Iterator[np.ndarray]:
        layout = self._layout
        self._stream.seek(layout.data_offset + start * layout.block_align)
        stop = self.frames if stop is None else min(stop, self.frames)
        done = start
        while done < stop:
            count = min(block_frames, stop - done)
            raw = self._stream.read(count * layout.block_align)
            got = len(raw) // layout.block_align
            if got < count:
                raise CorruptAudioError(f"{self.path}: file ended early (truncated while "
                                        f"being read?)")
            if layout.format_tag == WAVE_FORMAT_IEEE_FLOAT:  # checked and converted once
                floats = np.frombuffer(raw, dtype=f"<f{layout.bits // 8}")
                yield self._checked(floats.reshape(-1, layout.channels), done)
            else:
                yield decode_pcm(raw, layout)
            done += count

    def close(self) -> None:
        self._stream.close()


class _SoundFileReader(AudioReader):
    def __init__(self, path: Path, handle: object) -> None:
        info = handle  # soundfile.SoundFile
        frames = int(info.frames)  # type: ignore[attr-defined]
        super().__init__(path, int(info.samplerate), int(info.channels),  # type: ignore[attr-defined]
                         frames, f"{info.format} {info.subtype}")  # type: ignore[attr-defined]
        self.container = str(info.format)  # type: ignore[attr-defined]
        # Doubles are read as such, so that values beyond float32 are refused, not inf.
        self._dtype = "float64" if info.subtype == "DOUBLE" else "float32"  # type: ignore[attr-defined]
        self._handle = handle

    def _decode(self, block_frames: int, start: int, stop: int | None
                ) -> Iterator[np.ndarray]:
        """Blocks of ``block_frames``, read from libsndfile a second at a time so that a
        decoding error names its position to within a second. Without ``stop``, to the
        end of the stream, whatever the header said."""
        handle = self._handle
        handle.seek(start)  # type: ignore[attr-defined]
        step = max(1, min(block_frames, self.sample_rate))
        done = start
        while stop is None or done < stop:
            parts, got = [], 0
            want = block_frames if stop is None else min(block_frames, stop - done)
            while got < want:
                try:
                    part = handle.read(min(step, want - got),  # type: ignore[attr-defined]
                                       dtype=self._dtype, always_2d=True)
                except INPUT_FAILURES as exc:
                    raise input_error(self.path, exc, (done + got) / self.sample_rate,
                                      self.container) from None
                if part.shape[0] == 0:
                    break
                parts.append(self._checked(part, done + got))
                got += part.shape[0]
            if parts:
                yield np.concatenate(parts) if len(parts) > 1 else parts[0]
            done += got
            if got < want:
                return

    def close(self) -> None:
        self._handle.close()  # type: ignore[attr-defined]


def _open_soundfile(path: Path, reason: str) -> AudioReader:
    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile is in requirements.txt
        raise NotAudioError(f"{path}: {reason} (install 'soundfile' for FLAC/OGG)") from None
    try:
        handle = soundfile.SoundFile(str(path))
    except (RuntimeError, TypeError, ValueError):
        raise _refused(path, reason) from None
    return _SoundFileReader(path, handle)


def _refused(path: Path, reason: str) -> NotAudioError:
    """libsndfile could not open ``path``: the format its bytes show, when known."""
    with open(path, "rb") as stream:
        found = unsupported_format(*read_head_and_tail(stream, os.fstat(stream.fileno()).st_size))
    if found is None:
        return NotAudioError(f"{path}: {reason}")
    return UnsupportedFormatError(found.message(path))


def _open_reader(path: Path) -> AudioReader:
    """A WAV file by our parser, anything else (or a WAV encoding it lacks) by libsndfile."""
    stream = open(path, "rb")  # the reader owns it; closed on failure
    try:
        magic = stream.read(12)
        stream.seek(0)
        if magic[:4] == b"RIFF" and magic[8:12] == b"WAVE":
            try:
                return _WavReader(path, stream, parse_wav_header(
                    stream, path, os.fstat(stream.fileno()).st_size))
            except UnsupportedWavEncoding as exc:
                reason = str(exc)
        elif magic[:4] == b"RIFF":
            raise NotAudioError(f"{path}: RIFF file but not WAVE audio")
        else:
            reason = "not an audio file (unrecognised format)"
    except BaseException:
        stream.close()
        raise
    stream.close()
    return _open_soundfile(path, reason)


def _check_reader(reader: AudioReader, min_seconds: float) -> None:
    path = reader.path
    if reader.sample_rate > MAX_SAMPLE_RATE:
        raise AudioLimitError(f"{path}: sample rate {reader.sample_rate} Hz is above the "
                              f"supported maximum of {MAX_SAMPLE_RATE} Hz")
    if reader.channels > MAX_CHANNELS:
        raise AudioLimitError(f"{path}: {reader.channels} channels are more than the "
                              f"supported maximum of {MAX_CHANNELS}")
    if reader.frames == 0:
        raise EmptyAudioError(f"{path}: no audio samples (zero length)")
    if reader.duration < min_seconds:
        raise AudioTooShortError(f"{path}: {reader.duration:.3f} s of audio is shorter than "
                                 f"the {min_seconds:g} s needed for one classification")


def open_audio(path: str | os.PathLike[str], min_seconds: float = 0.0) -> AudioReader:
    """Open an audio file for block reading; validates it up front.

    Args:
      path: a WAV file (any PCM encoding above) or anything libsndfile decodes.
      min_seconds: reject shorter audio with ``AudioTooShortError`` (the scripts use
        0.975 s, the shortest input that yields one VGGish example).

    Raises:
      AudioFileError (a subclass naming the problem), for every failure.
    """
    path = Path(path)
    _check_path(path)
    try:
        reader = _open_reader(path)
    except INPUT_FAILURES as exc:
        raise input_error(path, exc) from None
    try:
        _check_reader(reader, min_seconds)
    except BaseException:
        reader.close()
        raise
    return reader


def read_audio(path: str | os.PathLike[str],
               min_seconds: float = 0.0) -> tuple[np.ndarray, int]:
    """The whole file: ``(float32 samples, rate)``; 1-D when mono, else (frames, channels).

    For long files prefer ``open_audio(...).blocks(n)``, which bounds memory.
    """
    with open_audio(path, min_seconds) as reader:
        data = reader.read_all()
        rate = reader.sample_rate
    return (data[:, 0] if data.shape[1] == 1 else data), rate


def block_frames_for(reader: AudioReader, block_seconds: float) -> int:
    """Frames per block: ``block_seconds`` of audio, but never more than ``BLOCK_BYTES``
    of decoded float32 samples (a 64-channel 384 kHz file gets blocks of 0.34 s)."""
    by_time = int(block_seconds * reader.sample_rate)
    by_bytes = BLOCK_BYTES // (4 * reader.channels)
    return max(1, min(by_time, by_bytes))


def mono_blocks(reader: AudioReader, rate_out: int, block_seconds: float = 30.0,
                start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """The file as consecutive 1-D float32 blocks at ``rate_out``: channels averaged, then
    resampled (the reference front end's order), with memory bounded by the block size
    (``block_frames_for``) whatever the file's rate and channel count.

    ``start``/``stop`` (input frames) resample only that part, as if it were the whole
    signal: its first and last outputs feel the cut like a file's ends do."""
    resampler = StreamResampler(reader.sample_rate, rate_out)
    resample = _guarded_resampler(reader, resampler)
    for block in reader.blocks(block_frames_for(reader, block_seconds), start, stop):
        mono = block.mean(axis=1, dtype=np.float64) if block.shape[1] > 1 else block[:, 0]
        del block  # at most one block of all channels is alive at a time
        out = resample(mono, False)
        if out.shape[0]:
            yield out.astype(np.float32)
    tail = resample(np.zeros(0), True)
    if tail.shape[0]:
        yield tail.astype(np.float32)


def _guarded_resampler(reader: AudioReader, resampler: StreamResampler
                       ) -> Callable[[np.ndarray, bool], np.ndarray]:
    """``resampler.process`` whose failures on this input become ``AudioFileError``."""
    def process(block: np.ndarray, final: bool) -> np.ndarray:
        try:
            return resampler.process(block, final=final)
        except ImportError:
            raise
        except Exception as exc:  # resampy/numba: the input's rate or length is unusable
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise AudioLimitError(f"{reader.path}: cannot resample {reader.sample_rate} Hz "
                                  f"to {resampler.rate_out} Hz ({reason})") from None
    return process



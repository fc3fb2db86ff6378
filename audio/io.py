"""Reading audio files of any common PCM encoding, by blocks; writing int16 wav.

WAV files are parsed here, chunk by chunk, rather than with ``scipy.io.wavfile`` or the
standard library's ``wave``: those load whole files (a one-hour file would not fit the
memory budget), reject 24-bit or float data, or silently accept truncated files. The
parser supports:

* PCM (format tag 1): 8-bit unsigned, 16/24/32-bit signed integer;
* IEEE float (format tag 3): 32/64-bit;
* WAVE_FORMAT_EXTENSIBLE (0xFFFE) whose sub-format is one of the two above;
* any number of channels and any sample rate.

Samples become float32 in [−1, 1]: unsigned 8-bit as ``(x − 128) / 128``, signed
integers divided by 2^(bits−1) (int16 / 32768, as the reference). Float data is passed
through as it is (it may exceed ±1; the front end does not care).

Other files (FLAC, OGG/Vorbis, AIFF, RF64, WAV encodings such as µ-law or ADPCM) are
decoded with ``soundfile`` (libsndfile) when it is installed.

Every failure is a subclass of ``AudioFileError`` with a one-line message that starts
with the file name, so the entry scripts print it as it is.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
UNKNOWN_DATA_SIZE = 0xFFFFFFFF
"""Written by streaming encoders that could not seek back: the data runs to the end."""


class AudioFileError(ValueError):
    """A file cannot be used as audio input. The message is one line naming the file."""


class AudioFileNotFoundError(AudioFileError):
    """No file at that path."""


class NotAFileError(AudioFileError):
    """The path is a directory (or another non-regular file)."""


class NotAudioError(AudioFileError):
    """The file is not in an audio format that can be decoded."""


class CorruptAudioError(AudioFileError):
    """The file looks like audio but is truncated or its headers are inconsistent."""


class EmptyAudioError(AudioFileError):
    """The file holds no samples."""


class InvalidSamplesError(AudioFileError):
    """The file holds NaN or infinite samples."""


class AudioTooShortError(AudioFileError):
    """The audio is shorter than the shortest input the model can classify."""


@dataclass(frozen=True)
class WavLayout:
    """Where the samples of a WAV file are and how they are encoded."""

    format_tag: int
    channels: int
    sample_rate: int
    bits: int
    block_align: int
    data_offset: int
    data_size: int

    @property
    def frames(self) -> int:
        return self.data_size // self.block_align

    @property
    def description(self) -> str:
        kind = "float" if self.format_tag == WAVE_FORMAT_IEEE_FLOAT else (
            "unsigned int" if self.bits == 8 else "int")
        return f"WAV {self.bits}-bit {kind}"


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioFileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise NotAFileError(f"{path}: is a directory, not an audio file")
    if not path.is_file():
        raise NotAFileError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path}: empty file (0 bytes)")


class _UnsupportedWavEncoding(Exception):
    """A well-formed WAV whose encoding this parser does not decode (libsndfile may)."""


def parse_wav_header(stream: BinaryIO, path: Path, file_size: int) -> WavLayout:
    """Walk the RIFF chunks up to ``data``; raises on anything inconsistent."""
    head = stream.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise NotAudioError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int, int] | None = None
    while True:
        header = stream.read(8)
        if len(header) == 0:
            raise CorruptAudioError(f"{path}: no data chunk (truncated or corrupt WAV)")
        if len(header) < 8:
            raise CorruptAudioError(f"{path}: truncated chunk header")
        chunk_id, size = struct.unpack("<4sI", header)
        start = stream.tell()
        if chunk_id == b"fmt ":
            if size < 16:
                raise CorruptAudioError(f"{path}: fmt chunk of {size} bytes is too short")
            body = stream.read(size)
            if len(body) < size:
                raise CorruptAudioError(f"{path}: truncated fmt chunk")
            tag, channels, rate, _byte_rate, block_align, bits = struct.unpack(
                "<HHIIHH", body[:16])
            if tag == WAVE_FORMAT_EXTENSIBLE:
                if size < 40:
                    raise CorruptAudioError(f"{path}: WAVE_FORMAT_EXTENSIBLE fmt chunk of "
                                            f"{size} bytes is too short")
                tag = struct.unpack("<H", body[24:26])[0]  # First field of the GUID.
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise CorruptAudioError(f"{path}: data chunk before the fmt chunk")
            tag, channels, rate, block_align, bits = fmt
            available = file_size - start
            if size == UNKNOWN_DATA_SIZE:
                size = available
            elif size > available:
                raise CorruptAudioError(
                    f"{path}: truncated WAV: header announces {size} bytes of samples, "
                    f"the file holds {available}")
            if channels < 1 or rate < 1:
                raise CorruptAudioError(f"{path}: invalid fmt chunk ({channels} channels, "
                                        f"{rate} Hz)")
            supported = ((tag == WAVE_FORMAT_PCM and bits in (8, 16, 24, 32))
                         or (tag == WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64)))
            if not supported:
                raise _UnsupportedWavEncoding(f"{path}: unsupported WAV encoding (format "
                                              f"tag {tag:#06x}, {bits} bits)")
            if block_align != channels * bits // 8:
                raise CorruptAudioError(f"{path}: block align {block_align} does not match "
                                        f"{channels} channels × {bits} bits")
            if size % block_align:
                logger.warning("%s: data chunk ends with a partial frame; ignored", path)
            return WavLayout(tag, channels, rate, bits, block_align, start, size)
        # Skip any other chunk (LIST, fact, cue, ...); chunks are padded to even sizes.
        stream.seek(start + size + (size & 1))
        if stream.tell() > file_size:
            raise CorruptAudioError(f"{path}: truncated {chunk_id!r} chunk")


def decode_pcm(raw: bytes, layout: WavLayout) -> np.ndarray:
    """Bytes of whole frames → float32 (frames, channels) in [−1, 1]."""
    channels = layout.channels
    if layout.format_tag == WAVE_FORMAT_IEEE_FLOAT:
        dtype = "<f4" if layout.bits == 32 else "<f8"
        samples = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    elif layout.bits == 8:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif layout.bits == 16:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(2**15)
    elif layout.bits == 24:
        triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        widened = np.zeros((triplets.shape[0], 4), dtype=np.uint8)
        widened[:, 1:] = triplets  # Little endian: the 24 bits become the high bytes.
        samples = (widened.view("<i4").reshape(-1).astype(np.float64)
                   / 2.0**31).astype(np.float32)
    else:  # 32-bit int
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64)
                   / 2.0**31).astype(np.float32)
    return samples.reshape(-1, channels)


class AudioReader:
    """An open audio file, read by blocks of frames. Use ``open_audio`` to make one.

    Blocks are float32 arrays of shape (frames, channels). Float data is checked for NaN
    and infinity as it is read (``InvalidSamplesError``).
    """

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

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
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

    def _checked(self, block: np.ndarray, first_frame: int) -> np.ndarray:
        finite = np.isfinite(block)
        if not finite.all():
            bad = int(np.argmin(finite.all(axis=1)))
            seconds = (first_frame + bad) / self.sample_rate
            raise InvalidSamplesError(f"{self.path}: NaN or infinite sample at "
                                      f"{seconds:.3f} s")
        return block


class _WavReader(AudioReader):
    def __init__(self, path: Path, stream: BinaryIO, layout: WavLayout) -> None:
        super().__init__(path, layout.sample_rate, layout.channels, layout.frames,
                         layout.description)
        self._stream = stream
        self._layout = layout

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        if block_frames < 1:
            raise ValueError("block_frames must be positive")
        layout = self._layout
        self._stream.seek(layout.data_offset)
        done = 0
        while done < self.frames:
            count = min(block_frames, self.frames - done)
            raw = self._stream.read(count * layout.block_align)
            got = len(raw) // layout.block_align
            if got < count:
                raise CorruptAudioError(f"{self.path}: file ended early (truncated while "
                                        f"being read?)")
            block = decode_pcm(raw, layout)
            if layout.format_tag == WAVE_FORMAT_IEEE_FLOAT:
                block = self._checked(block, done)
            yield block
            done += count

    def close(self) -> None:
        self._stream.close()


class _SoundFileReader(AudioReader):
    def __init__(self, path: Path, handle: object) -> None:
        info = handle  # soundfile.SoundFile
        frames = int(info.frames)  # type: ignore[attr-defined]
        super().__init__(path, int(info.samplerate), int(info.channels),  # type: ignore[attr-defined]
                         frames, f"{info.format} {info.subtype}")  # type: ignore[attr-defined]
        self._handle = handle

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        import soundfile

        handle = self._handle
        handle.seek(0)  # type: ignore[attr-defined]
        done = 0
        while True:
            try:
                block = handle.read(block_frames, dtype="float32",  # type: ignore[attr-defined]
                                    always_2d=True)
            except (RuntimeError, soundfile.LibsndfileError) as exc:
                raise CorruptAudioError(f"{self.path}: cannot decode ({exc})") from None
            if block.shape[0] == 0:
                break
            yield self._checked(block, done)
            done += block.shape[0]

    def close(self) -> None:
        self._handle.close()  # type: ignore[attr-defined]


def _open_soundfile(path: Path, reason: str) -> AudioReader:
    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile is in requirements.txt
        raise NotAudioError(f"{path}: {reason} (install 'soundfile' for FLAC/OGG)") from None
    try:
        handle = soundfile.SoundFile(str(path))
    except (RuntimeError, soundfile.LibsndfileError, TypeError):
        raise NotAudioError(f"{path}: {reason}") from None
    return _SoundFileReader(path, handle)


def open_audio(path: str | os.PathLike[str], min_seconds: float = 0.0) -> AudioReader:
    """Open an audio file for block reading; validates it up front.

    Args:
      path: a WAV file (any PCM encoding above) or anything libsndfile decodes.
      min_seconds: reject shorter audio with ``AudioTooShortError`` (the scripts use
        0.975 s, the shortest input that yields one VGGish example).

    Raises:
      AudioFileError (a subclass naming the problem).
    """
    path = Path(path)
    _check_path(path)
    stream = open(path, "rb")
    reader: AudioReader | None = None
    try:
        magic = stream.read(12)
        stream.seek(0)
        if magic[:4] == b"RIFF" and magic[8:12] == b"WAVE":
            try:
                reader = _WavReader(path, stream, parse_wav_header(
                    stream, path, path.stat().st_size))
            except _UnsupportedWavEncoding as exc:
                reader = _open_soundfile(path, str(exc))
        elif magic[:4] == b"RIFF":
            raise NotAudioError(f"{path}: RIFF file but not WAVE audio")
        else:
            reader = _open_soundfile(path, "not an audio file (unrecognised format)")
    finally:
        if not isinstance(reader, _WavReader):
            stream.close()
    if reader.frames == 0:
        reader.close()
        raise EmptyAudioError(f"{path}: no audio samples (zero length)")
    if reader.duration < min_seconds:
        reader.close()
        raise AudioTooShortError(f"{path}: {reader.duration:.3f} s of audio is shorter than "
                                 f"the {min_seconds:g} s needed for one classification")
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


def mono_blocks(reader: AudioReader, rate_out: int, block_seconds: float = 30.0
                ) -> Iterator[np.ndarray]:
    """The file as consecutive 1-D float32 blocks at ``rate_out``: channels averaged, then
    resampled (the reference front end's order), with memory bounded by the block size."""
    resampler = StreamResampler(reader.sample_rate, rate_out)
    block_frames = max(1, int(block_seconds * reader.sample_rate))
    for block in reader.blocks(block_frames):
        mono = block.mean(axis=1, dtype=np.float64) if block.shape[1] > 1 else block[:, 0]
        out = resampler.process(mono)
        if out.shape[0]:
            yield out.astype(np.float32)
    tail = resampler.process(np.zeros(0), final=True)
    if tail.shape[0]:
        yield tail.astype(np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float [−1, 1] → int16 by ×32768 and rounding (clipped): the exact inverse of /32768."""
    scaled = np.round(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2")


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> Path:
    """Write float [−1, 1] (or int16) samples, 1-D or (frames, channels), as int16 PCM WAV."""
    path = Path(path)
    data = np.asarray(samples)
    pcm = data.astype("<i2") if data.dtype == np.int16 else to_int16(data)
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(pcm.tobytes())
    return path

"""The WAV format: walking a RIFF/WAVE header to its samples, decoding PCM and IEEE float
frames, writing int16 PCM files.

Parsed here rather than with ``scipy.io.wavfile`` or the standard library's ``wave``:
those load whole files, reject 24-bit or float data, or silently accept truncated files.
``audio.io`` reads the samples block by block with what ``parse_wav_header`` finds.
"""

from __future__ import annotations

import logging
import os
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from audio.errors import BadAudioError
from audio.io.errors import CorruptAudioError, NotAudioError

logger = logging.getLogger(__name__)

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
UNKNOWN_DATA_SIZE = 0xFFFFFFFF
"""Written by streaming encoders that could not seek back: the data runs to the end."""


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


class UnsupportedWavEncoding(BadAudioError):
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
                raise UnsupportedWavEncoding(f"{path}: unsupported WAV encoding (format "
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
    """Bytes of whole frames → float32 (frames, channels) in [−1, 1].

    Scaling is done in place: a block then needs one float32 copy of its samples (two
    float64 ones for 24/32-bit integers), which is what ``audio.io.BLOCK_BYTES`` budgets.
    """
    channels = layout.channels
    if layout.format_tag == WAVE_FORMAT_IEEE_FLOAT:
        dtype = "<f4" if layout.bits == 32 else "<f8"
        samples = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    elif layout.bits in (8, 16):
        kind, offset, scale = ((np.uint8, 128.0, 128.0) if layout.bits == 8
                               else ("<i2", 0.0, 2.0**15))
        samples = np.frombuffer(raw, dtype=kind).astype(np.float32)
        if offset:
            samples -= np.float32(offset)
        samples /= np.float32(scale)
    else:
        if layout.bits == 24:
            triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
            widened = np.zeros((triplets.shape[0], 4), dtype=np.uint8)
            widened[:, 1:] = triplets  # Little endian: the 24 bits become the high bytes.
            integers = widened.view("<i4").reshape(-1)
        else:  # 32-bit int
            integers = np.frombuffer(raw, dtype="<i4")
        wide = integers.astype(np.float64)
        wide /= 2.0**31
        samples = wide.astype(np.float32)
    return samples.reshape(-1, channels)


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
    # The file is opened first: when that fails, no half-made Wave_write is left to
    # complain from its finaliser.
    with path.open("wb") as stream, wave.open(stream, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(pcm.tobytes())
    return path

"""Files in containers libsndfile cannot read (m4a, WebM, MP4 video), byte by byte.

Written by hand rather than with FFmpeg, so that the tests need no extra tool: each file
has the container's real header layout (an ISO base media ``ftyp`` box and a ``moov`` box
with its track's handler and sample description; an EBML header with its DocType and a
track's CodecID), followed by bytes that stand for the compressed stream.
"""

from __future__ import annotations

import struct
from pathlib import Path


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, body: bytes) -> bytes:
    return _box(kind, bytes(4) + body)  # version 0, flags 0


def _track(handler: bytes, codec: bytes) -> bytes:
    hdlr = _full_box(b"hdlr", bytes(4) + handler + bytes(12) + b"\0")
    entry = _box(codec, bytes(6) + struct.pack(">H", 1) + bytes(20))
    stsd = _full_box(b"stsd", struct.pack(">I", 1) + entry)
    return _box(b"trak", _box(b"mdia", hdlr + _box(b"minf", _box(b"stbl", stsd))))


def mp4_bytes(brand: bytes, tracks: list[tuple[bytes, bytes]], payload: int = 4000) -> bytes:
    """``ftyp``, ``mdat`` (the stream), then ``moov`` at the end, as FFmpeg writes it
    without ``-movflags +faststart``."""
    ftyp = _box(b"ftyp", brand + struct.pack(">I", 512) + brand + b"isomiso2")
    mdat = _box(b"mdat", bytes(range(256)) * (payload // 256))
    moov = _box(b"moov", _full_box(b"mvhd", bytes(96))
                + b"".join(_track(h, c) for h, c in tracks))
    return ftyp + mdat + moov


def write_m4a(path: Path) -> Path:
    path.write_bytes(mp4_bytes(b"M4A ", [(b"soun", b"mp4a")]))
    return path


def write_mp4_video(path: Path) -> Path:
    path.write_bytes(mp4_bytes(b"isom", [(b"vide", b"avc1"), (b"soun", b"mp4a")]))
    return path


def _element(element_id: bytes, body: bytes) -> bytes:
    return element_id + bytes([0x80 | len(body)]) + body  # one-byte size (< 127)


def write_webm_opus(path: Path) -> Path:
    """An EBML header (DocType ``webm``), then a Segment of unknown size whose Tracks
    name one ``A_OPUS`` track, then cluster bytes."""
    header = _element(b"\x1a\x45\xdf\xa3", _element(b"\x42\x86", b"\x01")
                      + _element(b"\x42\x82", b"webm") + _element(b"\x42\x87", b"\x04"))
    entry = _element(b"\xae", _element(b"\xd7", b"\x01") + _element(b"\x86", b"A_OPUS"))
    tracks = _element(b"\x16\x54\xae\x6b", entry)
    segment = b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff" + tracks
    path.write_bytes(header + segment + bytes(range(256)) * 16)
    return path

"""Which files are audio this project decodes, and what the others are.

* :func:`audio_extensions`: the file name endings a folder argument takes, derived from
  the formats the installed libsndfile reads (``soundfile.available_formats()``) plus
  WAV, which ``audio.io`` parses itself. MP3 is among them (libsndfile ≥ 1.1).
* :func:`unsupported_format`: for a file libsndfile refused, the container and codec
  its first and last bytes show (m4a/AAC, WebM/Opus, MP4 video...), so that the message
  says "format not supported (m4a/AAC)" and how to convert it, rather than calling a
  recording "not an audio file". Until FFmpeg decoding lands these are refused.

Only magic bytes are read: no demuxer, nothing that could be made to run long on a
hostile file (a bounded head and tail of the file, searched for a few byte strings).
"""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SNIFF_HEAD = 64 * 1024
"""Bytes read from the start: headers, and the track list of a WebM or faststart MP4."""
SNIFF_TAIL = 1024 * 1024
"""Bytes read from the end: where an MP4 written without faststart keeps its ``moov``."""

_ALWAYS = (".wav", ".wave")
# libsndfile format name -> its usual file name endings. RAW is left out (headerless: it
# cannot be decoded without being told its rate and encoding) and so are MAT4/MAT5
# (``.mat`` files are MATLAB data far more often than libsndfile's audio layout).
_SNDFILE_EXTENSIONS = {
    "WAV": (".wav", ".wave"), "WAVEX": (".wav",), "AIFF": (".aiff", ".aif", ".aifc"),
    "AU": (".au", ".snd"), "AVR": (".avr",), "CAF": (".caf",), "FLAC": (".flac",),
    "HTK": (".htk",), "IRCAM": (".sf",), "MP3": (".mp3",), "MPC2K": (".mpc2k",),
    "NIST": (".nist", ".sph"), "OGG": (".ogg", ".oga", ".opus"), "PAF": (".paf",),
    "PVF": (".pvf",), "RF64": (".rf64",), "SD2": (".sd2",), "SDS": (".sds",),
    "SVX": (".svx", ".8svx"), "VOC": (".voc",), "W64": (".w64",), "WVE": (".wve",),
    "XI": (".xi",),
}


@functools.cache
def audio_extensions() -> tuple[str, ...]:
    """Lower-case endings (``.wav``, ``.mp3``, ...) of every format that can be read."""
    try:
        import soundfile

        formats = soundfile.available_formats()
    except (ImportError, OSError):  # pragma: no cover - soundfile is in requirements.txt
        formats = {}
    found = list(_ALWAYS)
    for name in sorted(formats):
        found += [e for e in _SNDFILE_EXTENSIONS.get(name.upper(), ()) if e not in found]
    return tuple(found)


@dataclass(frozen=True)
class UnsupportedFormat:
    """A container (and codec) that was recognised but cannot be decoded."""

    name: str
    """As the message shows it: ``m4a/AAC``, ``WebM/Opus``, ``MP4 video, H.264 ...``."""
    video: bool = False

    def message(self, path: Path) -> str:
        """``PATH: format not supported (m4a/AAC): convert it, e.g. `ffmpeg -i ...```."""
        target = path.with_suffix(".flac")
        if target == path:
            target = path.with_name(f"{path.stem}-converted.flac")
        drop_video = " -vn" if self.video else ""
        return (f"{path}: format not supported ({self.name}): convert it, e.g. "
                f"`ffmpeg -i {shlex.quote(str(path))}{drop_video} "
                f"{shlex.quote(str(target))}`")


def read_head_and_tail(stream: BinaryIO, size: int) -> tuple[bytes, bytes]:
    stream.seek(0)
    head = stream.read(SNIFF_HEAD)
    tail = b""
    if size > SNIFF_HEAD:
        stream.seek(max(SNIFF_HEAD, size - SNIFF_TAIL))
        tail = stream.read(SNIFF_TAIL)
    return head, tail


# ISO base media (MP4, m4a, MOV, 3GP): the sample entry types of a track's codec.
_MP4_CODECS = {
    b"mp4a": "AAC", b"alac": "ALAC", b"Opus": "Opus", b"fLaC": "FLAC", b"ac-3": "AC-3",
    b"ec-3": "E-AC-3", b".mp3": "MP3", b"avc1": "H.264", b"avc3": "H.264",
    b"hvc1": "H.265", b"hev1": "H.265", b"vp09": "VP9", b"av01": "AV1", b"mp4v": "MPEG-4",
}
_MATROSKA_CODECS = {
    b"A_OPUS": "Opus", b"A_VORBIS": "Vorbis", b"A_AAC": "AAC", b"A_FLAC": "FLAC",
    b"A_MPEG/L3": "MP3", b"A_AC3": "AC-3", b"A_PCM": "PCM", b"V_VP8": "VP8",
    b"V_VP9": "VP9", b"V_AV1": "AV1", b"V_MPEG4/ISO/AVC": "H.264",
    b"V_MPEGH/ISO/HEVC": "H.265",
}
_SIMPLE_MAGIC = (  # (offset, bytes, name)
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "WMA/ASF"),
    (0, b"#!AMR", "AMR"),
    (0, b"MAC ", "Monkey's Audio/APE"),
    (0, b"wvpk", "WavPack"),
    (0, b"MPCK", "Musepack"),
    (0, b"MP+", "Musepack"),
    (0, b"DSD ", "DSF/DSD"),
    (0, b"FRM8", "DFF/DSD"),
    (0, b"TTA1", "TTA"),
    (0, b"\x0b\x77", "AC-3"),
    (0, b"MThd", "MIDI, notes rather than sound"),
)


def _mp4_tracks(data: bytes) -> list[tuple[bytes, str | None]]:
    """(handler type, codec name) of each ``hdlr`` box found, in order."""
    tracks = []
    at = data.find(b"hdlr")
    while at != -1 and at + 16 <= len(data):
        handler = data[at + 12:at + 16]
        following = data[at:at + 4096]
        stsd = following.find(b"stsd")
        codec = None
        if stsd != -1:
            codec = _MP4_CODECS.get(following[stsd + 16:stsd + 20])
        tracks.append((handler, codec))
        at = data.find(b"hdlr", at + 4)
    return tracks


def _iso_media(head: bytes, tail: bytes) -> UnsupportedFormat:
    brand = head[8:12]
    tracks = _mp4_tracks(head + tail)
    video = [c or "video" for h, c in tracks if h == b"vide"]
    audio = [c or "audio" for h, c in tracks if h == b"soun"]
    kind = ("MOV" if brand == b"qt  " else "3GP" if brand.startswith(b"3g")
            else "m4a" if brand in (b"M4A ", b"M4B ", b"M4P ") or (audio and not video)
            else "MP4")
    if video:
        detail = f", {video[0]}" + (f" with {audio[0]} audio" if audio else "")
        return UnsupportedFormat(f"{kind} video{detail}", video=True)
    codec = audio[0] if audio else ("AAC" if kind == "m4a" else None)
    return UnsupportedFormat(f"{kind}/{codec}" if codec else kind)


def _matroska(head: bytes) -> UnsupportedFormat:
    kind = "WebM" if b"webm" in head[:64] else "Matroska"
    codecs = [(head.find(k), v, k.startswith(b"V_")) for k, v in _MATROSKA_CODECS.items()
              if k in head]
    video = [name for _, name, is_video in sorted(codecs) if is_video]
    audio = [name for _, name, is_video in sorted(codecs) if not is_video]
    if video:
        detail = f", {video[0]}" + (f" with {audio[0]} audio" if audio else "")
        return UnsupportedFormat(f"{kind} video{detail}", video=True)
    return UnsupportedFormat(f"{kind}/{audio[0]}" if audio else kind)


def unsupported_format(head: bytes, tail: bytes = b"") -> UnsupportedFormat | None:
    """The audio or video format these bytes begin (and end) with, when it is one that
    cannot be decoded; None for anything unrecognised."""
    if head[4:8] == b"ftyp":
        return _iso_media(head, tail)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _matroska(head)
    if head[:4] == b"OggS":  # Vorbis, Opus and FLAC in Ogg are read: not these
        if b"Speex" in head[:512]:
            return UnsupportedFormat("Ogg/Speex")
        if b"\x80theora" in head[:512]:
            return UnsupportedFormat("Ogg video, Theora", video=True)
        return None
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return UnsupportedFormat("AAC, ADTS stream")
    for offset, magic, name in _SIMPLE_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return UnsupportedFormat(name)
    return None

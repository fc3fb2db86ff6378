"""Audio files as a source: one file, or files and folders played as a stream of windows
(``daemon.py --source``), with unreadable files logged once per change and skipped."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from audio.blocks import AudioWindow
from audio.io import (
    AudioFileError,
    AudioTooShortError,
    audio_extensions,
    mono_blocks,
    open_audio,
)
from audio.settings import DEFAULT_MIN_TIME, MIN_AUDIO_SECONDS
from audio.sources.base import TARGET_RATE, SourceError

logger = logging.getLogger(__name__)

SKIPPED_EXTENSIONS_SHOWN = 5
"""At most this many distinct endings are named in the summary of skipped files."""


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # unreadable: open_audio will say why when it is tried as a file
        return False


def expand_audio_paths(paths: Iterable[str | Path],
                       on_error: Callable[[OSError], None] | None = None,
                       recursive: bool = True,
                       on_skipped: Callable[[Path], None] | None = None) -> list[Path]:
    """Files as given; directories expanded to their audio files (sorted), with their
    subfolders' unless ``recursive`` is False (``parse_file.py DIR`` without
    ``--recursive``; a watched folder of the daemon is always walked whole).

    Files are chosen by extension without being opened (every format the decoder reads:
    ``audio.io.audio_extensions``), so an unreadable one is still listed (and reported
    when it is read); every other file of a directory is passed to ``on_skipped``
    (hidden files such as ``.DS_Store`` are not), for :func:`skipped_summary`. A
    directory that cannot be listed is passed to ``on_error`` and skipped. Symbolic
    links to directories are not followed (no loops).
    """
    extensions = audio_extensions()
    out: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if not _is_dir(path):
            out.append(path)
            continue
        found = []
        for root, dirs, files in os.walk(path, onerror=on_error):
            if not recursive:
                dirs.clear()
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(extensions):
                    found.append(Path(root) / name)
                elif on_skipped is not None and not name.startswith("."):
                    on_skipped(Path(root) / name)
        out.extend(sorted(found))
    return out


def skipped_summary(skipped: Sequence[Path]) -> str | None:
    """``skipped 3 files: unsupported format (.m4a)``: one line for the files a folder
    held but no decoder reads, their endings most frequent first; None for none."""
    if not skipped:
        return None
    counts = Counter(p.suffix.lower() or "no extension" for p in skipped)
    names = [name for name, _ in counts.most_common(SKIPPED_EXTENSIONS_SHOWN)]
    more = ", ..." if len(counts) > len(names) else ""
    files = "file" if len(skipped) == 1 else "files"
    return f"skipped {len(skipped)} {files}: unsupported format ({', '.join(names)}{more})"


def require_readable_audio(paths: Sequence[Path]) -> None:
    """Raise ``SourceError`` in one line unless some file of ``paths`` (folders
    expanded) opens as audio: checked before ``daemon.py --source`` starts anything,
    since a stream of nothing would only fail once the web page is up."""
    unlistable: list[OSError] = []
    skipped: list[Path] = []
    failures: list[str] = []
    for path in expand_audio_paths(paths, on_error=unlistable.append,
                                   on_skipped=skipped.append):
        try:
            with open_audio(path):
                return
        except AudioFileError as exc:
            failures.append(str(exc))
    reasons = [f"cannot list {e.filename}: {(e.strerror or str(e)).lower()}"
               for e in unlistable[:1]]
    if failures:
        others = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
        reasons.append(f"{failures[0]}{others}")
    summary = skipped_summary(skipped)
    if summary:
        reasons.append(summary)
    names = ", ".join(str(p) for p in paths)
    raise SourceError(f"no readable audio in {names}"
                      + (f" ({'; '.join(reasons)})" if reasons else " (no files)"))


def _signature(path: Path) -> tuple[object, ...]:
    """What changes when a file is replaced, rewritten or has its permissions changed."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return ("unreadable", exc.errno)
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class FileStreamSource:
    """Files (or directories of files) played as a stream of fixed-length windows.

    Args:
      paths: files and/or directories (expanded anew on every pass, so files added to a
        watched directory are picked up when ``loop`` is True).
      loop: start again from the first file after the last, forever.
      realtime: release windows at the pace of the audio (as a microphone would), using
        ``Event.wait`` so that ``stop`` interrupts the wait at once.
      window_seconds: window length (see below for a file's last window).
      block_seconds: hand each window over in blocks of at most this length (the last
        block of a window marked ``ends_window``), for sound events (``audio.loop``).

    A file's end: a file shorter than one window is one window, whatever its length (a
    knock in a watched folder is classified: the pipeline pads what is shorter than a
    frame); in a longer file, a last piece of at least ``MIN_AUDIO_SECONDS`` (0.975 s,
    one VGGish example) is a window of its own, and a shorter one is added to the window
    before it (which is then up to 0.975 s longer than ``window_seconds``), so that no
    audio is left out and no window is classified mostly on padding.

    Unreadable files (and files without a sample) are logged and skipped. Window times
    are seconds from the start of their file; ``AudioWindow.source`` is the file's path.
    """

    def __init__(self, paths: Iterable[str | Path] | str | Path, loop: bool = False,
                 realtime: bool = False, window_seconds: float = DEFAULT_MIN_TIME,
                 name: str | None = None, block_seconds: float | None = None) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("FileStreamSource needs at least one path")
        if window_seconds < MIN_AUDIO_SECONDS:
            raise ValueError(f"window_seconds must be ≥ {MIN_AUDIO_SECONDS}")
        self.loop = loop
        self.realtime = realtime
        self.window_seconds = float(window_seconds)
        if block_seconds is not None and not 0 < block_seconds <= window_seconds:
            raise ValueError(f"block_seconds must be in (0, window_seconds], got "
                             f"{block_seconds}")
        self.block_seconds = block_seconds
        self.name = name or ", ".join(str(p) for p in self.paths)
        self._closed = threading.Event()
        self.files_failed = 0
        self._reported: dict[Path, tuple[object, ...]] = {}

    def _report(self, path: Path, message: str) -> None:
        """Log an unusable file or directory once, and again only after it changed, so a
        bad file in a watched folder gives one line, not one per pass."""
        signature = _signature(path)
        if self._reported.get(path) != signature:
            self._reported[path] = signature
            logger.warning("skipping %s", message)

    def _forget_removed(self) -> None:
        """Drop what was reported about paths that are gone: a daemon watching a folder
        for months must not keep a record of every bad file ever dropped into it."""
        for path in [p for p in self._reported if not os.path.lexists(p)]:
            del self._reported[path]

    def _unlistable(self, exc: OSError) -> None:
        path = Path(exc.filename or self.name)
        self._report(path, f"{path}: cannot list the directory "
                           f"({(exc.strerror or str(exc)).lower()})")

    def request_window(self) -> None:
        """Files are always ready: nothing to do."""

    def close(self) -> None:
        self._closed.set()

    def _stopped(self, stop: threading.Event) -> bool:
        return stop.is_set() or self._closed.is_set()

    def _file_windows(self, path: Path, stop: threading.Event) -> Iterator[AudioWindow]:
        """The file's windows (see the class docstring for its last one)."""
        size = round(self.window_seconds * TARGET_RATE)
        minimum = int(np.ceil(MIN_AUDIO_SECONDS * TARGET_RATE))
        with open_audio(path) as reader:
            pending = np.zeros(0, dtype=np.float32)
            position = 0
            try:
                for block in mono_blocks(reader, TARGET_RATE, block_seconds=self.window_seconds):
                    pending = np.concatenate([pending, block])
                    # A window goes once what follows it is known not to be a short tail.
                    while pending.shape[0] >= size + minimum:
                        yield self._window(pending[:size], position, path)
                        position += size
                        pending = pending[size:]
                    if self._stopped(stop):
                        return
            except AudioFileError:  # damaged further on: its whole windows before that
                while pending.shape[0] >= size:
                    yield self._window(pending[:size], position, path)
                    position += size
                    pending = pending[size:]
                raise
            if pending.shape[0]:
                yield self._window(pending, position, path)
            elif position == 0:
                raise AudioTooShortError(f"{path}: no audio sample at 16 kHz")

    def _window(self, audio: np.ndarray, position: int, path: Path) -> AudioWindow:
        return AudioWindow(audio=np.ascontiguousarray(audio), sample_rate=TARGET_RATE,
                           start=position / TARGET_RATE,
                           end=(position + audio.shape[0]) / TARGET_RATE,
                           timestamp=time.time(), source=str(path))

    def _pieces(self, window: AudioWindow) -> Iterator[AudioWindow]:
        """The window, or its blocks in block mode (the last one ends the window)."""
        if self.block_seconds is None:
            yield window
            return
        size = max(1, round(self.block_seconds * TARGET_RATE))
        first = round(window.start * TARGET_RATE)
        total = window.audio.shape[0]
        for offset in range(0, total, size):
            audio = window.audio[offset:offset + size]
            yield AudioWindow(audio=audio, sample_rate=TARGET_RATE,
                              start=(first + offset) / TARGET_RATE,
                              end=(first + offset + audio.shape[0]) / TARGET_RATE,
                              timestamp=window.timestamp, source=window.source,
                              ends_window=offset + size >= total)

    def _paced(self, pieces: Iterator[AudioWindow], stop: threading.Event,
               clock: list[float]) -> Iterator[AudioWindow]:
        """In real time, each piece when its last sample would have been recorded;
        ``clock`` is [monotonic start, seconds released so far]."""
        for piece in pieces:
            if self.realtime:
                clock[1] += piece.end - piece.start
                delay = clock[0] + clock[1] - time.monotonic()
                if delay > 0 and (stop.wait(delay) or self._closed.is_set()):
                    return
                piece = dataclasses.replace(piece, timestamp=time.time())
            yield piece

    def windows(self, stop: threading.Event) -> Iterator[AudioWindow]:
        clock = [time.monotonic(), 0.0]
        while not self._stopped(stop):
            files = expand_audio_paths(self.paths, on_error=self._unlistable)
            self._forget_removed()
            delivered = 0
            for path in files:
                try:
                    windows = self._file_windows(path, stop)
                    for piece in self._paced((p for w in windows for p in self._pieces(w)),
                                             stop, clock):
                        delivered += 1
                        yield piece
                        if self._stopped(stop):
                            return
                except AudioFileError as exc:
                    self.files_failed += 1
                    self._report(path, str(exc))
                else:
                    self._reported.pop(path, None)
                if self._stopped(stop):
                    return
            if not self.loop:
                return
            if delivered == 0:
                raise SourceError(f"no readable audio in {self.name}")


class FileSource(FileStreamSource):
    """One file as a stream of windows (``FileStreamSource`` of a single path)."""

    def __init__(self, path: str | Path, loop: bool = False, realtime: bool = False,
                 window_seconds: float = DEFAULT_MIN_TIME) -> None:
        super().__init__([path], loop=loop, realtime=realtime, window_seconds=window_seconds,
                         name=str(path))

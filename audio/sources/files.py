"""Audio files as a source: one file, or files and folders played as a stream of windows
(``daemon.py --source``), with unreadable files logged once per change and skipped."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from audio.io import AudioFileError, mono_blocks, open_audio
from audio.loop import AudioWindow
from audio.settings import DEFAULT_MIN_TIME, MIN_AUDIO_SECONDS
from audio.sources.base import TARGET_RATE, SourceError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".aiff", ".aif")

def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # unreadable: open_audio will say why when it is tried as a file
        return False


def expand_audio_paths(paths: Iterable[str | Path],
                       on_error: Callable[[OSError], None] | None = None,
                       recursive: bool = True) -> list[Path]:
    """Files as given; directories expanded to their audio files (sorted), with their
    subfolders' unless ``recursive`` is False (``parse_file.py DIR`` without
    ``--recursive``; a watched folder of the daemon is always walked whole).

    Files are chosen by extension without being opened, so an unreadable one is still
    listed (and reported when it is read); a directory that cannot be listed is passed to
    ``on_error`` and skipped. Symbolic links to directories are not followed (no loops).
    """
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
            found.extend(Path(root) / name for name in files
                         if name.lower().endswith(AUDIO_EXTENSIONS))
        out.extend(sorted(found))
    return out


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
      window_seconds: window length; a file's last window may be shorter (dropped when
        under 0.975 s, the shortest classifiable input).

    Unreadable files are logged and skipped. Window times are seconds from the start of
    their file; ``AudioWindow.source`` is the file's path.
    """

    def __init__(self, paths: Iterable[str | Path] | str | Path, loop: bool = False,
                 realtime: bool = False, window_seconds: float = DEFAULT_MIN_TIME,
                 name: str | None = None) -> None:
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
        size = round(self.window_seconds * TARGET_RATE)
        minimum = int(np.ceil(MIN_AUDIO_SECONDS * TARGET_RATE))
        with open_audio(path, min_seconds=MIN_AUDIO_SECONDS) as reader:
            pending = np.zeros(0, dtype=np.float32)
            position = 0
            for block in mono_blocks(reader, TARGET_RATE, block_seconds=self.window_seconds):
                pending = np.concatenate([pending, block])
                while pending.shape[0] >= size:
                    yield self._window(pending[:size], position, path)
                    position += size
                    pending = pending[size:]
                if self._stopped(stop):
                    return
            if pending.shape[0] >= minimum:
                yield self._window(pending, position, path)

    def _window(self, audio: np.ndarray, position: int, path: Path) -> AudioWindow:
        return AudioWindow(audio=np.ascontiguousarray(audio), sample_rate=TARGET_RATE,
                           start=position / TARGET_RATE,
                           end=(position + audio.shape[0]) / TARGET_RATE,
                           timestamp=time.time(), source=str(path))

    def windows(self, stop: threading.Event) -> Iterator[AudioWindow]:
        clock_start = time.monotonic()
        played = 0.0  # seconds of audio released so far (for real-time pacing)
        while not self._stopped(stop):
            files = expand_audio_paths(self.paths, on_error=self._unlistable)
            self._forget_removed()
            delivered = 0
            for path in files:
                try:
                    for window in self._file_windows(path, stop):
                        if self.realtime:
                            played += window.end - window.start
                            delay = clock_start + played - time.monotonic()
                            if delay > 0 and (stop.wait(delay) or self._closed.is_set()):
                                return
                            window = AudioWindow(window.audio, window.sample_rate,
                                                 window.start, window.end, time.time(),
                                                 window.source)
                        delivered += 1
                        yield window
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

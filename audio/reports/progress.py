"""A progress bar on the terminal for long inputs: ``parse_file.py`` on a two-hour file
reads for minutes before it has anything to print.

Drawn only when the stream is a terminal and the input lasts more than
``PROGRESS_MIN_SECONDS``: piped or redirected, stderr holds only the lines that mean
something (errors, the skipped-files summary), and a short file is done before a bar
would tell anything. One line, redrawn in place with a carriage return at most every
``REDRAW_SECONDS``, erased when the file is done so that its result line is not left
behind a half bar::

    long.wav [##########..............]  42%  50:24/2:00:00 of audio, 2:01 left

Hand-written rather than ``tqdm`` (present only as a dependency of LiteRT, so not ours
to rely on), in seconds of audio rather than the bytes ``audio.downloads`` counts.
"""

from __future__ import annotations

import time
from typing import TextIO

PROGRESS_MIN_SECONDS = 300.0
"""Inputs longer than this (five minutes of audio) get a bar."""
REDRAW_SECONDS = 0.25
LABEL_CHARS = 32


def clock(seconds: float) -> str:
    """``2:05`` or ``1:02:05``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class AudioProgress:
    """The bar of one input; call it with ``(seconds_done, duration)`` as the audio is
    read (``WavProcessor.analyze_file(progress=...)``), then ``close()``.

    Does nothing at all when ``stream`` is not a terminal or the input is short.
    """

    WIDTH = 24

    def __init__(self, label: str, stream: TextIO) -> None:
        if len(label) > LABEL_CHARS:
            label = "…" + label[-(LABEL_CHARS - 1):]
        self._label = label
        self._stream = stream
        self._terminal = _is_terminal(stream)
        self._shown = False
        self._started = time.monotonic()
        self._last_draw = float("-inf")

    def __call__(self, done: float, duration: float) -> None:
        if not self._terminal or duration <= PROGRESS_MIN_SECONDS:
            return
        now = time.monotonic()
        if now - self._last_draw < REDRAW_SECONDS and done < duration:
            return
        self._last_draw = now
        fraction = min(max(done / duration, 0.0), 1.0)
        filled = int(fraction * self.WIDTH)
        left = ""
        elapsed = now - self._started
        if done > 0 and elapsed > 1:
            left = f", {clock(elapsed * (duration - done) / done)} left"
        self._write(f"\r{self._label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                    f"{fraction * 100:3.0f}%  {clock(done)}/{clock(duration)} of audio"
                    f"{left}\x1b[K")
        self._shown = True

    def close(self) -> None:
        """Erase the bar (the cursor back at the start of an empty line)."""
        if self._shown:
            self._write("\r\x1b[K")
            self._shown = False

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: the run goes on
            self._terminal = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False

"""Short blocks of audio joined back into the windows the per-window predictions use.

When the loop follows sound events, a source hands it short blocks (a tenth of a second
to half a second) so that each goes to the event detector at once: an event's start
leaves the loop a fraction of a second after the frame that holds it is complete,
instead of after a whole 5-7 s window. The per-window predictions keep their windows:
the source still decides where a window ends (``AudioWindow.ends_window`` on the block
that completes one: the microphone's ``min_time``..``max_time`` rule, the file source's
fixed windows) and :class:`WindowAssembler` joins the blocks of each window, so the
windows classified, logged and saved are the ones a window source would have handed over.

A block that does not continue the previous one (the loop dropped blocks because it fell
behind, or the source moved on to another file) ends the window being assembled; so does
the end of the stream. Such a cut window is classified when it holds at least
``MIN_AUDIO_SECONDS`` (one VGGish example), otherwise it is dropped (counted by the loop as ``windows_cut_short``):
a window that short would be classified mostly on padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audio.settings import MIN_AUDIO_SECONDS

DEFAULT_BLOCK_SECONDS = 0.1
"""Block length of the scripts' sources when they follow sound events: one PortAudio chunk,
so a block waits for no other chunk (``bench/event_latency.py`` measures the choice)."""
CONTINUITY_TOLERANCE = 0.002
"""Seconds a block may start away from the previous block's end and still continue it
(blocks are cut on whole samples; resampled devices round)."""


@dataclass(frozen=True)
class AudioWindow:
    """A window (or, from a source in block mode, a block) of audio handed to the loop.

    ``audio`` is mono float32 in [−1, 1] at ``sample_rate``; ``start``/``end`` are
    seconds from the start of the source; ``timestamp`` is the wall-clock time (unix s)
    at which the last sample was available (for latency measurements). ``ends_window``
    is False for a block that the window it belongs to continues past.
    """

    audio: np.ndarray = field(repr=False)
    sample_rate: int
    start: float
    end: float
    timestamp: float
    source: str = ""
    ends_window: bool = True


def _continues(before: AudioWindow, after: AudioWindow) -> bool:
    return after.source == before.source and \
        abs(after.start - before.end) <= CONTINUITY_TOLERANCE


class WindowAssembler:
    """Joins consecutive blocks into windows; whole windows pass through unchanged."""

    def __init__(self, min_seconds: float = MIN_AUDIO_SECONDS) -> None:
        self._parts: list[AudioWindow] = []
        self._min_seconds = min_seconds
        self.cut_dropped = 0
        """Windows cut short (gap, end of stream) and dropped for being too short."""

    def add(self, piece: AudioWindow) -> list[AudioWindow]:
        """The windows complete once ``piece`` is added (none, one, or two after a gap)."""
        out = []
        if self._parts and not _continues(self._parts[-1], piece):
            out += self.flush()
        if piece.ends_window and not self._parts:
            return [*out, piece]  # a whole window: the same object, untouched
        self._parts.append(piece)
        if piece.ends_window:
            out.append(self._join())
        return out

    def flush(self) -> list[AudioWindow]:
        """The window being assembled, cut here (a gap or the end of the stream)."""
        if not self._parts:
            return []
        window = self._join()
        if window.end - window.start < self._min_seconds - 1e-9:
            self.cut_dropped += 1
            return []
        return [window]

    def _join(self) -> AudioWindow:
        parts, self._parts = self._parts, []
        first, last = parts[0], parts[-1]
        audio = parts[0].audio if len(parts) == 1 else \
            np.concatenate([p.audio for p in parts])
        return AudioWindow(audio=audio, sample_rate=first.sample_rate, start=first.start,
                           end=last.end, timestamp=last.timestamp, source=first.source)

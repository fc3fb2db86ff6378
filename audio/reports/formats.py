"""One sound event in each output format: a text line, a JSON object, CSV, Audacity and
Raven rows.

Pure functions of ``audio.detect.SoundEvent`` s (their final ``end`` records), so that
each format is written and tested in one place and the writers only choose where lines
go. Times are seconds from the start of the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from audio.detect import SoundEvent

CSV_FIELDS: tuple[str, ...] = ("file", "scope", "start", "end", "rank", "label", "score",
                               "error")
"""The CSV columns of the ranking and timeline rows (unchanged since before events)."""
EVENT_CSV_FIELDS: tuple[str, ...] = ("id", "classes", "mean_score", "peak_dbfs", "mean_dbfs")
"""Columns appended when events are reported; an event row has scope ``event``, its
sound in ``label`` and its peak score in ``score``. Without events the CSV keeps exactly
:data:`CSV_FIELDS`."""
CLASS_SEPARATOR = ";"
"""Between the classes that fired, in one CSV cell (AudioSet names hold commas, no ``;``)."""

RAVEN_FIELDS: tuple[str, ...] = (
    "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
    "High Freq (Hz)", "Sound", "Peak Score", "Mean Score", "Peak dBFS", "Mean dBFS")
"""Raven Pro's selection-table columns (the first seven are the ones Raven needs to draw a
box), then the event's sound and figures as annotation columns."""
RAVEN_VIEW = "Spectrogram 1"
RAVEN_CHANNEL = 1
RAVEN_LOW_HZ = 0.0
RAVEN_HIGH_HZ = 8000.0
"""The box spans every frequency the models hear: 0 Hz to the Nyquist of 16 kHz audio."""

TIME_DECIMALS = 3
SCORE_DECIMALS = 6
DBFS_DECIMALS = 2


def ordered(events: Iterable[SoundEvent]) -> list[SoundEvent]:
    """Events by start (then id): the detector hands them over in the order they end."""
    return sorted(events, key=lambda e: (e.start, e.id))


def _signed(value: float) -> str:
    """A level as people write it: a true minus sign (U+2212), no decimals."""
    text = f"{value:.0f}"
    return text.replace("-", "\u2212") if text != "-0" else "0"


def event_text(event: SoundEvent) -> str:
    """``dog 12.40–15.10 s peak 0.83 −18 dBFS``: the sound, its span, its peak score and
    its peak level (the loudest frame's RMS)."""
    return (f"{event.sound} {event.start:.2f}\u2013{event.end:.2f} s "
            f"peak {event.peak_score:.2f} {_signed(event.peak_dbfs)} dBFS")


def event_dict(event: SoundEvent) -> dict[str, object]:
    """``SoundEvent.as_dict()`` less ``kind`` (a file's events are all final), with times,
    scores and levels rounded as the rest of the JSON output is."""
    out = event.as_dict()
    del out["kind"]
    for key in ("start", "end", "start_time", "end_time"):
        if out[key] is not None:
            out[key] = round(float(out[key]), TIME_DECIMALS)  # type: ignore[arg-type]
    for key, digits in (("peak_score", SCORE_DECIMALS), ("mean_score", SCORE_DECIMALS),
                        ("peak_dbfs", DBFS_DECIMALS), ("mean_dbfs", DBFS_DECIMALS)):
        out[key] = round(float(out[key]), digits)  # type: ignore[arg-type]
    return out


def event_csv_row(path: str, event: SoundEvent) -> list[object]:
    """One CSV row of :data:`CSV_FIELDS` + :data:`EVENT_CSV_FIELDS`."""
    return [path, "event", f"{event.start:.3f}", f"{event.end:.3f}", "", event.sound,
            f"{event.peak_score:.6f}", "", event.id, CLASS_SEPARATOR.join(event.classes),
            f"{event.mean_score:.6f}", f"{event.peak_dbfs:.2f}", f"{event.mean_dbfs:.2f}"]


def audacity_lines(events: Sequence[SoundEvent]) -> list[str]:
    """An Audacity label track: ``start<TAB>end<TAB>label``, seconds with six decimals as
    Audacity writes them (File > Import > Labels reads it back)."""
    return [f"{e.start:.6f}\t{e.end:.6f}\t{e.sound}" for e in ordered(events)]


def raven_rows(events: Sequence[SoundEvent]) -> list[list[str]]:
    """A Raven Pro selection table's rows under :data:`RAVEN_FIELDS` (without the header);
    selections are numbered from 1 in order of start."""
    return [[str(n), RAVEN_VIEW, str(RAVEN_CHANNEL), f"{e.start:.6f}", f"{e.end:.6f}",
             f"{RAVEN_LOW_HZ:.1f}", f"{RAVEN_HIGH_HZ:.1f}", e.sound, f"{e.peak_score:.4f}",
             f"{e.mean_score:.4f}", f"{e.peak_dbfs:.2f}", f"{e.mean_dbfs:.2f}"]
            for n, e in enumerate(ordered(events), 1)]

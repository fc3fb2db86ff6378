"""Writes each classified file's report to a stream, in one of ``audio.reports.FORMATS``.

One :class:`ReportWriter` per destination: standard output for the whole run, or one per
output file with ``--output_dir``. Results are written, and flushed, as each file is
done, so a long run shows progress and a pipe gets whole lines.

Text layout (one file; with several, each line but the timeline's starts with
``FILE: ``)::

    Dog: 0.93, Domestic animals, pets: 0.92, Animal: 0.90     ranking (the original's)
          0.00 -     0.96  Silence: 1.00                       --timeline windows
    dog 3.84–8.17 s peak 0.93 −12 dBFS                          --events, by start
    dog: 1 event                                                --count
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from audio.detect import SoundEvent
from audio.reports.formats import (
    CSV_FIELDS,
    EVENT_CSV_FIELDS,
    RAVEN_FIELDS,
    audacity_lines,
    event_csv_row,
    event_dict,
    event_text,
    ordered,
    raven_rows,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Count:
    """``--count``: the counted sound's name and its events."""

    label: str
    events: tuple[SoundEvent, ...]

    def intervals(self) -> list[tuple[float, float]]:
        return [(e.start, e.end) for e in ordered(self.events)]


@dataclass(frozen=True)
class FileReport:
    """What is reported of one file: its analysis (``audio.pipeline.AnalysisResult``), the
    events to show (None: not asked for) and the count (None: no ``--count``)."""

    path: str
    result: Any
    events: tuple[SoundEvent, ...] | None = None
    count: Count | None = None

    def event_rows(self) -> list[SoundEvent]:
        """The events of the per-event formats (CSV, Audacity, Raven): those shown and
        those counted, each once, by start."""
        chosen = {e.id: e for e in (*(self.events or ()),
                                    *(self.count.events if self.count else ()))}
        return ordered(chosen.values())


def no_class(threshold: float | str) -> str:
    shown = threshold if isinstance(threshold, str) else f"{threshold:g}"
    return f"no class scored above the threshold {shown}"


def ranking_line(predictions: Sequence[Any], threshold: float | str) -> str:
    from audio.pipeline import format_predictions

    return format_predictions(predictions) if predictions else no_class(threshold)


class ReportWriter:
    """Writes reports in ``fmt`` to ``out``.

    Args:
      several: the run has several files (text lines then name their file).
      threshold: the ranking threshold (a number, or how it is set), for the "no class
        scored above" line.
      timeline: write the per-window predictions too.
      event_columns: the run reports events (``--events``, ``--count``): CSV gets the
        event columns, and without them keeps exactly its original columns.
    """

    def __init__(self, out: TextIO, fmt: str = "text", *, several: bool = False,
                 threshold: float | str = 0.1, timeline: bool = False,
                 event_columns: bool = False) -> None:
        self.out, self.fmt, self.several = out, fmt, several
        self.threshold, self.timeline = threshold, timeline
        self._columns = len(CSV_FIELDS) + (len(EVENT_CSV_FIELDS) if event_columns else 0)
        # Raven reads tab-separated lines; CSV keeps the csv module's \r\n, as before.
        self._csv = (csv.writer(out, delimiter="\t", lineterminator="\n") if fmt == "raven"
                     else csv.writer(out))
        if fmt == "csv":
            self._csv.writerow((CSV_FIELDS + EVENT_CSV_FIELDS)[:self._columns])
        elif fmt == "raven":
            self._csv.writerow(RAVEN_FIELDS)

    def result(self, report: FileReport) -> None:
        {"json": self._json, "csv": self._csv_rows, "audacity": self._audacity,
         "raven": self._raven}.get(self.fmt, self._text)(report)
        self.out.flush()

    def error(self, path: str, message: str) -> None:
        """The error's record in formats that have one (JSON, CSV); the caller has already
        said it on stderr."""
        if self.fmt == "json":
            print(json.dumps({"file": path, "error": message}), file=self.out)
        elif self.fmt == "csv":
            self._row([path, "error", "", "", "", "", "", message])
        self.out.flush()

    # -- formats ------------------------------------------------------------------------
    def _json(self, report: FileReport) -> None:
        result = report.result
        obj: dict[str, Any] = {"file": report.path, "duration": round(result.duration, 3),
                               "predictions": [p.as_dict() for p in result.predictions]}
        if result.padded:
            obj["padded"] = True
        if self.timeline:
            obj["windows"] = [w.as_dict() for w in result.timeline]
        if report.events is not None:
            obj["events"] = [event_dict(e) for e in ordered(report.events)]
        if report.count is not None:
            intervals = report.count.intervals()
            obj["count"] = {"label": report.count.label, "events": len(intervals),
                            "intervals": [[round(a, 3), round(b, 3)] for a, b in intervals]}
        print(json.dumps(obj), file=self.out)

    def _csv_rows(self, report: FileReport) -> None:
        result = report.result
        self._ranked(report.path, "file", 0.0, result.duration, result.predictions)
        if self.timeline:
            for w in result.timeline:
                self._ranked(report.path, "window", w.start, w.end, w.predictions)
        for event in report.event_rows():
            self._row(event_csv_row(report.path, event))

    def _text(self, report: FileReport) -> None:
        prefix = f"{report.path}: " if self.several else ""
        predictions = report.result.predictions
        if self.several or predictions:
            print(prefix + ranking_line(predictions, self.threshold), file=self.out)
        else:  # the original printed an empty line, which scripts test for
            logger.info("%s: %s", report.path, no_class(self.threshold))
            print(file=self.out)
        if self.timeline:
            for w in report.result.timeline:
                print(f"  {w.start:8.2f} - {w.end:8.2f}  "
                      f"{ranking_line(w.predictions, self.threshold)}", file=self.out)
        if report.events is not None:
            if not report.events:
                logger.info("%s: no sound events", report.path)
            for event in ordered(report.events):
                print(prefix + event_text(event), file=self.out)
        if report.count is not None:
            n = len(report.count.events)
            print(f"{prefix}{report.count.label}: {n} event{'s' if n != 1 else ''}",
                  file=self.out)

    def _audacity(self, report: FileReport) -> None:
        for line in audacity_lines(report.event_rows()):
            print(line, file=self.out)

    def _raven(self, report: FileReport) -> None:
        self._csv.writerows(raven_rows(report.event_rows()))

    # -- rows -----------------------------------------------------------------------------
    def _row(self, row: Sequence[object]) -> None:
        """A CSV row padded (or cut) to this run's columns."""
        cells = list(row)[:self._columns]
        self._csv.writerow(cells + [""] * (self._columns - len(cells)))

    def _ranked(self, path: str, scope: str, start: float, end: float,
                predictions: Sequence[Any]) -> None:
        if not predictions:
            self._row([path, scope, f"{start:.3f}", f"{end:.3f}"])
        for rank, p in enumerate(predictions, 1):
            self._row([path, scope, f"{start:.3f}", f"{end:.3f}", rank, p.label,
                       f"{p.score:.6f}", ""])

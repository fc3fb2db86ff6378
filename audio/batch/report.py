"""One file's outputs, from its re-assembled frames: the same reports as ``parse_file.py``.

The result is computed by ``WavProcessor.analyze_stream`` (the pipeline's own frames →
result step) and written by ``audio.reports`` (``parse_file.py``'s writers), so a file's
line in ``predictions-*.jsonl`` is the line ``parse_file.py --format json`` prints for
it, and its event tables are the files ``parse_file.py --format audacity|raven
--output_dir`` writes. This module only adds what a batch run has beyond them: the
summary row and the AudioSet-format embedding records.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from audio.framestream import concat_frames
from audio.reports import SUFFIXES
from audio.reports.writer import FileReport, ReportWriter
from audio.settings import Settings

SUMMARY_TOP = 3
SUMMARY_FIELDS: tuple[str, ...] = (
    "file", "duration", "padded", "events",
    *(f"{kind}_{rank}" for rank in range(1, SUMMARY_TOP + 1) for kind in ("label", "score")),
    "error")
TABLE_FORMATS: tuple[str, ...] = ("audacity", "raven")
TABLES_DIR = "tables"


@dataclass(frozen=True)
class ReportConfig:
    """What each file's report holds (from the command line)."""

    settings: Settings
    timeline: bool = False
    tables: tuple[str, ...] = ()
    """Event-table formats written per file (when events are asked for)."""
    embeddings: bool = False
    segment_frames: int = 10
    """Frames per embedding record (AudioSet's 10 s segments); 0: one record per file."""


@dataclass(frozen=True)
class FileOutcome:
    """One file's outputs: a prediction line or an error line, its summary row, its event
    tables (format → text) and its embedding records."""

    path: str
    relative: str
    prediction: str | None = None
    error: str | None = None
    summary: str = ""
    tables: dict[str, str] = field(default_factory=dict)
    records: tuple[bytes, ...] = ()


def csv_line(row: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()


def summary_header() -> str:
    return csv_line(SUMMARY_FIELDS)


def failed(path: str, relative: str, message: str) -> FileOutcome:
    """A file that could not be classified: ``parse_file.py``'s JSON error object."""
    row = [path, "", "", "", *([""] * (2 * SUMMARY_TOP)), message]
    return FileOutcome(path, relative, error=json.dumps({"file": path, "error": message}),
                       summary=csv_line(row))


def _text(config: ReportConfig, fmt: str, report: FileReport) -> str:
    buffer = io.StringIO()
    ReportWriter(buffer, fmt, threshold=config.settings.threshold_label,
                 timeline=config.timeline).result(report)
    return buffer.getvalue()


def classified(config: ReportConfig, processor: Any, sounds: Any, parts: Sequence[Any]
               ) -> FileOutcome:
    """The outcome of a file whose shards (``ShardFrames``, in order) all succeeded."""
    first = parts[0].shard
    task = first.file
    frames = concat_frames([p.frames for p in parts])
    result = processor.analyze_stream(
        frames, first.duration, padded=first.count == 1 and parts[0].padded,
        timeline_window=config.settings.window if config.timeline else None,
        sounds=sounds, source=task.path)
    report = FileReport(task.path, result, result.events)
    top = [cell for p in result.predictions[:SUMMARY_TOP]
           for cell in (p.label, f"{p.score:.6f}")]
    row = [task.path, f"{result.duration:.3f}", "1" if result.padded else "",
           "" if result.events is None else len(result.events),
           *top, *([""] * (2 * SUMMARY_TOP - len(top))), ""]
    tables = ({fmt: _text(config, fmt, report) for fmt in config.tables}
              if result.events is not None else {})
    records = _records(config, task, frames) if config.embeddings else ()
    return FileOutcome(task.path, task.relative, prediction=_text(config, "json", report).strip(),
                       summary=csv_line(row), tables=tables, records=records)


def table_name(relative: str, fmt: str) -> str:
    """Where a file's event table goes under the output folder (``parse_file.py``'s names)."""
    stem, dot, _ = relative.rpartition(".")
    return f"{TABLES_DIR}/{(stem if dot else relative)}{SUFFIXES[fmt]}"


def _records(config: ReportConfig, task: Any, frames: Any) -> tuple[bytes, ...]:
    """AudioSet ``SequenceExample`` s of the file's 8-bit embeddings, one per segment of
    ``segment_frames`` frames, timed from the start of the file."""
    from yt8m.records import audioset_example

    n = len(frames)
    step = config.segment_frames or max(1, n)
    out = []
    for first in range(0, n, step):
        stop = min(n, first + step)
        start = float(frames.starts[first])
        end = float(frames.starts[stop - 1] + frames.durations[stop - 1])
        out.append(audioset_example(task.path, frames.features[first:stop], round(start, 3),
                                    round(max(end, start), 3), task.labels))
    return tuple(out)

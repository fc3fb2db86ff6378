#!/usr/bin/env python3
"""Classify the sounds in audio files: ``Speech: 0.75, Music: 0.12, ...`` per file.

    python parse_file.py FILE [FILE...] [--timeline [--window S]] [--count LABEL]
                         [--format text|json|csv] [--top_k N] [--threshold P] [--plot OUT.png]
                         [--model NAME_OR_PATH] [--vggish_checkpoint P] [--pca_params P]

Exit codes: 0 all files classified; 2 a file could not be read (the others are still
processed) or a usage error; 1 the model files are missing or broken (the message says
which and how to get them); 130 Ctrl-C (at any moment, without a traceback). Models are
imported and loaded only once a file needs them, so ``--help`` is instant; what
TensorFlow and LiteRT print while they load is shown only with ``-v``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from audio.errors import EXIT_OK, EXIT_USAGE, AudioAnalysisError, BadAudioError, exit_code
from audio.settings import AGGREGATE_CHOICES, Settings, add_model_arguments

logger = logging.getLogger("parse_file")

CSV_FIELDS = ("file", "scope", "start", "end", "rank", "label", "score", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parse_file.py",
        description="Classify the sounds in audio files (any PCM wav, FLAC, OGG; any rate "
                    "and channel count; any length).")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files to classify")
    parser.add_argument("--format", choices=("text", "json", "csv"), default="text",
                        help="output: text lines (default), JSON Lines (one object per "
                             "file) or CSV")
    parser.add_argument("--timeline", action="store_true",
                        help="also classify consecutive windows and print them with their "
                             "start/end times")
    parser.add_argument("--window", type=float, default=None, metavar="SECONDS",
                        help="timeline window length, rounded to whole 0.96 s frames "
                             "(default 0.96)")
    parser.add_argument("--count", metavar="LABEL", default=None,
                        help="count separate occurrences of a class: consecutive timeline "
                             "windows scoring above the threshold form one event")
    parser.add_argument("--plot", metavar="OUT.png", default=None,
                        help="also draw the log-mel spectrogram with the top classes' scores "
                             "over time beneath it (with several files: OUT-<file>.png)")
    parser.add_argument("--aggregate", choices=AGGREGATE_CHOICES, default=None,
                        help="how window scores of files longer than the classifier's 300 "
                             "frames are combined (default: frame-weighted mean)")
    add_model_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def _no_class(threshold: float) -> str:
    return f"no class scored above the threshold {threshold:g}"


def _line(predictions: Sequence[Any], threshold: float) -> str:
    from audio.pipeline import format_predictions

    return format_predictions(predictions) if predictions else _no_class(threshold)


class _Writer:
    """Prints results in the chosen format as each file is done."""

    def __init__(self, fmt: str, several: bool, threshold: float, timeline: bool,
                 out: TextIO) -> None:
        self.fmt, self.several, self.threshold, self.timeline = fmt, several, threshold, timeline
        self.out = out
        self._csv = csv.writer(out)
        if fmt == "csv":
            self._csv.writerow(CSV_FIELDS)

    def result(self, path: str, result: Any, count: tuple[str, list[tuple[float, float]]] | None
               ) -> None:
        if self.fmt == "json":
            obj: dict[str, Any] = {
                "file": path, "duration": round(result.duration, 3),
                "predictions": [p.as_dict() for p in result.predictions]}
            if self.timeline:
                obj["windows"] = [w.as_dict() for w in result.timeline]
            if count is not None:
                obj["count"] = {"label": count[0], "events": len(count[1]),
                                "intervals": [[round(a, 3), round(b, 3)] for a, b in count[1]]}
            print(json.dumps(obj), file=self.out)
        elif self.fmt == "csv":
            self._rows(path, "file", 0.0, result.duration, result.predictions)
            if self.timeline:
                for w in result.timeline:
                    self._rows(path, "window", w.start, w.end, w.predictions)
            if count is not None:
                for a, b in count[1]:
                    self._csv.writerow([path, "event", f"{a:.3f}", f"{b:.3f}", "", count[0],
                                        "", ""])
        else:
            self._text_line(path, result.predictions)
            if self.timeline:
                for w in result.timeline:
                    print(f"  {w.start:8.2f} - {w.end:8.2f}  {_line(w.predictions, self.threshold)}",
                          file=self.out)
            if count is not None:
                n = len(count[1])
                print(f"{self._prefix(path)}{count[0]}: {n} event{'s' if n != 1 else ''}",
                      file=self.out)
        self.out.flush()

    def _prefix(self, path: str) -> str:
        """Text lines name their file only when there are several."""
        return f"{path}: " if self.several else ""

    def _text_line(self, path: str, predictions: Sequence[Any]) -> None:
        """The original's line. With one file and no class above the threshold it printed
        an empty line, which scripts test for; the reason goes to the log (``-v``)."""
        if self.several or predictions:
            print(self._prefix(path) + _line(predictions, self.threshold), file=self.out)
            return
        logger.info("%s: %s", path, _no_class(self.threshold))
        print(file=self.out)

    def _rows(self, path: str, scope: str, start: float, end: float,
              predictions: Sequence[Any]) -> None:
        if not predictions:
            self._csv.writerow([path, scope, f"{start:.3f}", f"{end:.3f}", "", "", "", ""])
        for rank, p in enumerate(predictions, 1):
            self._csv.writerow([path, scope, f"{start:.3f}", f"{end:.3f}", rank, p.label,
                                f"{p.score:.6f}", ""])

    def error(self, path: str, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        sys.stderr.flush()
        if self.fmt == "json":
            print(json.dumps({"file": path, "error": message}), file=self.out)
        elif self.fmt == "csv":
            self._csv.writerow([path, "error", "", "", "", "", "", message])
        self.out.flush()


def _event_intervals(result: Any, index: int, threshold: float) -> list[tuple[float, float]]:
    """Merge consecutive windows whose score for the class is above the threshold."""
    intervals: list[tuple[float, float]] = []
    current: tuple[float, float] | None = None
    for w in result.timeline:
        if float(w.scores[index]) > threshold:
            current = (current[0], w.end) if current else (w.start, w.end)
        elif current is not None:
            intervals.append(current)
            current = None
    if current is not None:
        intervals.append(current)
    return intervals


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from audio.settings import apply_native_output_defaults

    apply_native_output_defaults(args.verbose)  # native chatter only with -v
    try:
        return _classify_files(args, Settings.from_args(args))
    except AudioAnalysisError as exc:  # settings, model files, an unknown --count class
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)


def _classify_files(args: argparse.Namespace, settings: Settings) -> int:
    """Classify every file; a bad one is reported and skipped (exit 2 at the end), any
    other project error ends the run (``main`` maps it to its exit code)."""
    from audio.pipeline import WavProcessor

    writer = _Writer(args.format, len(args.files) > 1, settings.threshold,
                     args.timeline, sys.stdout)
    need_windows = args.timeline or args.count is not None or args.plot is not None
    status = EXIT_OK
    with WavProcessor(settings) as processor:
        count_index: int | None = None
        for path in args.files:
            try:
                result = processor.analyze_file(
                    path, timeline_window=settings.window if need_windows else None)
            except BadAudioError as exc:
                writer.error(path, str(exc))
                status = EXIT_USAGE
                continue
            count = None
            if args.count is not None:
                if count_index is None:
                    count_index = processor.label_index(args.count)
                count = (processor.labels[count_index],
                         _event_intervals(result, count_index, settings.threshold))
            writer.result(path, result, count)
            if args.plot is not None and not _plot(args.plot, path, result, processor.labels,
                                                   settings.threshold, len(args.files) > 1):
                status = EXIT_USAGE
    return status


def _plot(out: str, path: str, result: Any, labels: Sequence[str], threshold: float,
          several: bool) -> bool:
    from pathlib import Path

    from audio.plot import plot_file

    target = Path(out)
    if several:
        target = target.with_name(f"{target.stem}-{Path(path).stem}{target.suffix or '.png'}")
    try:
        plot_file(target, path, result, labels, threshold)
    except OSError as exc:  # unwritable destination: the classification still stands
        print(f"error: cannot write plot {target}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    from audio.cli import run_script  # Ctrl-C at any moment: exit 130, no traceback

    run_script(main)

"""Classify files and report them: the keyword API behind ``parse_file.py``.

    from audio.reports.batch import classify_files
    status = classify_files(["recordings/"], Settings(backend="yamnet", listen="dog"),
                            fmt="raven", output_dir="tables", recursive=True)

Each file is read once: the ranking, the timeline and the sound events all come from
the same frames (``audio.pipeline.WavProcessor.analyze_file``). A file that cannot be
read is reported on stderr (and in the JSON/CSV output) and skipped; the run goes on and
returns exit status 2 at the end. Usage errors (flags that do not fit together, an
unwritable output folder, an unknown sound, a bad groups file) raise
``audio.errors.UsageError`` before any file is classified; a missing model raises
``ModelFilesError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from audio.errors import EXIT_OK, EXIT_USAGE, BadAudioError, UsageError
from audio.reports import EVENT_FORMATS, FORMATS
from audio.reports.inputs import Input, expand_inputs, output_paths, prepare_output_dir
from audio.reports.progress import AudioProgress
from audio.reports.writer import Count, FileReport, ReportWriter
from audio.settings import Settings
from audio.sounds import Sound, configured_sounds, weak_sound_warnings
from audio.sources.files import skipped_summary

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Options:
    fmt: str
    timeline: bool
    count: str | None
    plot: str | None
    several: bool


def classify_files(inputs: Sequence[str], settings: Settings, *, fmt: str = "text",
                   output_dir: str | Path | None = None, recursive: bool = False,
                   timeline: bool = False, count: str | None = None, plot: str | None = None,
                   out: TextIO | None = None) -> int:
    """Classify every audio file of ``inputs`` (files and folders) and report it.

    Args:
      fmt: one of ``audio.reports.FORMATS``; ``audacity`` and ``raven`` imply events.
      output_dir: write one report file per input there (subfolders mirrored) instead of
        to ``out``; required for ``audacity``/``raven`` with several files.
      recursive: folders include their subfolders' files.
      timeline: also the per-window predictions (``settings.window``).
      count: a sound (class or group) whose events are counted.
      plot: draw each file's spectrogram and scores to this PNG (``OUT-<stem>.png`` each
        with several files).
      out: where reports go without ``output_dir`` (default: standard output).
    Returns the exit status: 0, or 2 when an input could not be classified.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt in EVENT_FORMATS and not settings.wants_events:
        settings = dataclasses.replace(settings, events=True)
    skipped: list[Path] = []
    items = expand_inputs(inputs, recursive, skipped)
    files = [item for item in items if item.error is None]
    targets: list[Path | None] = [None] * len(items)
    if output_dir is not None:
        prepare_output_dir(Path(output_dir))
        targets = output_paths(items, Path(output_dir), fmt)
    elif fmt in EVENT_FORMATS and len(files) > 1:
        what = "label track" if fmt == "audacity" else "selection table"
        raise UsageError(f"--format {fmt} writes one {what} per audio file: give one file, "
                         f"or --output_dir DIR for these {len(files)} files")
    summary = skipped_summary(skipped)
    if summary:  # one line for the run, before the first result; not an error
        print(summary, file=sys.stderr)
    options = _Options(fmt, timeline, count, plot, len(items) > 1)
    return _Run(settings, options, out or sys.stdout, output_dir is None).run(items, targets)


class _Run:
    """One run over the inputs with one processor; sounds are resolved once, on the first
    file (the backend's classes are known only once its model is loaded)."""

    def __init__(self, settings: Settings, options: _Options, out: TextIO,
                 to_stream: bool) -> None:
        self.settings, self.options = settings, options
        self.with_events = settings.wants_events or options.count is not None
        self.stream = self._writer(out, options.several) if to_stream else None
        self._sounds: tuple[Sound, ...] | None = None
        self._shown: set[str] | None = None
        self._counted: str | None = None
        self._resolved = False

    def _writer(self, out: TextIO, several: bool) -> ReportWriter:
        return ReportWriter(out, self.options.fmt, several=several,
                            threshold=self.settings.threshold_label,
                            timeline=self.options.timeline,
                            event_columns=self.with_events)

    def run(self, items: Sequence[Input], targets: Sequence[Path | None]) -> int:
        from audio.pipeline import WavProcessor

        status = EXIT_OK
        with WavProcessor(self.settings) as processor:
            for item, target in zip(items, targets, strict=True):
                if item.error is not None:
                    self._error(item.path, item.error)
                    status = EXIT_USAGE
                elif not self.classify(processor, item.path, target):
                    status = EXIT_USAGE
        return status

    def classify(self, processor: Any, path: str, target: Path | None) -> bool:
        """Classify and report one file; False when it could not be read or reported."""
        options = self.options
        need_windows = options.timeline or options.plot is not None
        bar = AudioProgress(Path(path).name, sys.stderr)  # long inputs, on a terminal
        try:
            result = processor.analyze_file(
                path, timeline_window=self.settings.window if need_windows else None,
                sounds=self._resolve(processor), progress=bar)
        except BadAudioError as exc:
            bar.close()
            self._error(path, str(exc))
            return False
        finally:
            bar.close()
        if result.padded:
            logger.info("%s: %.3f s, shorter than one frame: zero-padded", path,
                        result.duration)
        report = self._report(path, result)
        written = self._write(report, target)
        if options.plot is not None:
            written = _plot(options.plot, path, result, processor.labels,
                            self.settings.threshold, options.several,
                            self._sounds or ()) and written
        return written

    def _resolve(self, processor: Any) -> tuple[Sound, ...] | None:
        """The sounds to detect; without events nothing is asked of the processor, whose
        model is then loaded only by the first readable file."""
        if not self._resolved and self.with_events:
            self._sounds, self._shown, self._counted = _sounds(
                self.settings, self.options.count, processor.labels,
                processor.backend.class_thresholds)
            self._resolved = True
            if self.settings.listen is not None:
                listened = [s for s in self._sounds or () if s.name in (self._shown or ())]
                for line in weak_sound_warnings(
                        listened, getattr(processor.backend, "class_eval_ap", None)):
                    logger.warning("%s", line)
        return self._sounds

    def _report(self, path: str, result: Any) -> FileReport:
        events = result.events or ()
        shown = (tuple(e for e in events if e.sound in self._shown)
                 if self._shown is not None else None)
        count = (Count(self._counted, tuple(e for e in events if e.sound == self._counted))
                 if self._counted is not None else None)
        return FileReport(path, result, shown, count)

    def _write(self, report: FileReport, target: Path | None) -> bool:
        if target is None:  # no output folder: the run's stream (made for that case)
            if self.stream is not None:
                self.stream.result(report)
            return True
        try:
            with _opened(target) as out:
                self._writer(out, several=False).result(report)
        except OSError as exc:
            print(f"error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
            return False
        logger.info("%s: wrote %s", report.path, target)
        return True

    def _error(self, path: str, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        sys.stderr.flush()
        if self.stream is not None:
            self.stream.error(path, message)


@contextlib.contextmanager
def _opened(target: Path) -> Iterator[TextIO]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="") as out:
        yield out


def _sounds(settings: Settings, count: str | None, labels: Sequence[str],
            class_thresholds: Mapping[str, float] | None,
            ) -> tuple[tuple[Sound, ...] | None, set[str] | None, str | None]:
    """The sounds to detect, the names of those to show (None: events not asked for) and
    the name of the counted one; ``UnknownSoundError`` for a name the backend lacks."""
    shown = configured_sounds(settings, labels, class_thresholds)
    sounds = list(shown or ())
    counted = None
    if count is not None:
        found = configured_sounds(dataclasses.replace(settings, listen=count, events=True),
                                  labels, class_thresholds) or ()
        if len(found) != 1:
            raise UsageError(f"--count takes one sound, got {count!r}")
        counted = found[0].name
        if counted not in {s.name for s in sounds}:
            sounds.append(found[0])
    names = {s.name for s in shown} if shown is not None else None
    return (tuple(sounds) if sounds else None), names, counted


def _plot(out: str, path: str, result: Any, labels: Sequence[str], threshold: float,
          several: bool, sounds: Sequence[Sound] = ()) -> bool:
    """The figure of one file: the listened ``sounds`` always drawn, their events shaded."""
    from audio.plot import plot_file

    target = Path(out)
    if several:
        target = target.with_name(f"{target.stem}-{Path(path).stem}{target.suffix or '.png'}")
    try:
        plot_file(target, path, result, labels, threshold, sounds=sounds,
                  events=result.events or ())
    except OSError as exc:  # unwritable destination: the classification still stands
        print(f"error: cannot write plot {target}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True

"""The files of a batch run: paths, folders, glob patterns and ``@manifest`` lists.

* a local file or folder: as ``parse_file.py`` takes them (``audio.reports.inputs``),
  folders always recursive;
* a glob pattern (``*``, ``?``, ``[``; ``**`` crosses folders), local or a URI
  (``gs://bucket/calls/**.flac``), matched through Beam's file systems, so any scheme
  whose Beam extra is installed works;
* a URI of a folder (``gs://bucket/recordings/``): every audio file under it;
* ``@FILE``: a manifest (local or a URI) with one path, URI or pattern per line
  (blank lines and ``#`` comments skipped).

An argument that names no audio file is reported as an error of the run (in
``errors-*.jsonl``), as ``parse_file.py`` reports an empty folder. Each file also gets a
``relative`` name for the per-file outputs (event tables), unique in the run: its path
under the folder or pattern prefix that named it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from audio.batch.shards import FileTask
from audio.errors import UsageError
from audio.io import audio_extensions
from audio.reports.inputs import expand_inputs
from audio.sources.files import skipped_summary

logger = logging.getLogger(__name__)

GLOB_CHARS = "*?["
MANIFEST_PREFIX = "@"


class InputError(UsageError):
    """A manifest or labels file that cannot be read, or a label that is not a class."""


def _is_uri(argument: str) -> bool:
    return "://" in argument and not argument.startswith("file://")


def _read_text(location: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(location) as source:
            return source.read().decode("utf-8")
    except (OSError, ValueError) as exc:  # Beam raises BeamIOError (an IOError) or decode
        raise InputError(f"cannot read {location}: {exc}") from None


def _manifest(argument: str) -> list[str]:
    lines = _read_text(argument[len(MANIFEST_PREFIX):]).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _prefix(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard (``relative`` names start
    after it)."""
    cut = min((pattern.index(c) for c in GLOB_CHARS if c in pattern), default=len(pattern))
    return pattern[:cut].rpartition("/")[0]


def _matched(argument: str, skipped: list[Path]) -> tuple[list[FileTask], str | None]:
    """Files matching a glob pattern or under a URI folder, through Beam's file systems."""
    from apache_beam.io.filesystems import FileSystems

    pattern = argument
    if not any(c in argument for c in GLOB_CHARS):
        pattern = argument.rstrip("/") + "/**"
    try:
        found = sorted(m.path for result in FileSystems.match([pattern])
                       for m in result.metadata_list)
    except (OSError, ValueError) as exc:
        return [], f"{argument}: cannot list: {exc}"
    extensions = audio_extensions()
    others = [Path(p) for p in found
              if not p.lower().endswith(extensions) and not Path(p).name.startswith(".")]
    found = [p for p in found if p.lower().endswith(extensions)]
    if not found:
        summary = skipped_summary(others)
        return [], f"{argument}: no audio files match{f' ({summary})' if summary else ''}"
    skipped.extend(others)
    prefix = _prefix(pattern)
    return [FileTask(p, p, p[len(prefix):].lstrip("/") if prefix else p) for p in found], None


def _local(argument: str, skipped: list[Path]) -> tuple[list[FileTask], list[str]]:
    items = expand_inputs([argument], recursive=True, skipped=skipped)
    tasks = [FileTask(i.path, i.path, i.relative.as_posix()) for i in items if i.error is None]
    return tasks, [f"{i.error}" for i in items if i.error is not None]


def expand(arguments: Sequence[str]) -> tuple[list[FileTask], list[tuple[str, str]]]:
    """The files of ``arguments`` in order (each once), and ``(argument, message)`` for
    each argument that names no audio file. Files of folders and patterns that no
    decoder reads are named in one warning (``skipped 3 files: unsupported format
    (.m4a)``), as ``parse_file.py`` does."""
    tasks: list[FileTask] = []
    errors: list[tuple[str, str]] = []
    skipped: list[Path] = []
    for argument in _flatten(arguments):
        if _is_uri(argument) or any(c in argument for c in GLOB_CHARS):
            found, error = _matched(argument, skipped)
            tasks += found
            errors += [(argument, error)] if error else []
        else:
            found, problems = _local(argument, skipped)
            tasks += found
            errors += [(argument, message) for message in problems]
    summary = skipped_summary(skipped)
    if summary:
        logger.warning("%s", summary)
    unique = list({t.path: t for t in tasks}.values())
    return _distinct_relative(unique), errors


def _flatten(arguments: Iterable[str]) -> Iterable[str]:
    for argument in arguments:
        if argument.startswith(MANIFEST_PREFIX):
            yield from _manifest(argument)
        else:
            yield argument


def _distinct_relative(tasks: list[FileTask]) -> list[FileTask]:
    """Files whose ``relative`` names clash (``a/x.wav`` and ``b/x.wav`` given as two
    arguments) are told apart by a ``-2``, ``-3``... before their extension."""
    seen: dict[str, int] = {}
    out = []
    for task in tasks:
        stem, dot, ext = task.relative.rpartition(".")
        key = os.path.normcase(stem if dot else task.relative)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            relative = f"{stem}-{seen[key]}.{ext}" if dot else f"{task.relative}-{seen[key]}"
            task = FileTask(task.path, task.uri, relative, task.labels)
        out.append(task)
    return out


def read_labels_csv(location: str, class_names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``FILE,LABEL;LABEL`` rows → class indices per file (``--labels_csv``).

    A label is a class index or a class name of the classifier (any case). FILE is
    matched against each input's path as reported, its ``relative`` name or its file
    name (:func:`labelled`).
    """
    index = {name.casefold(): i for i, name in enumerate(class_names)}
    out: dict[str, tuple[int, ...]] = {}
    for line, row in enumerate(csv.reader(io.StringIO(_read_text(location))), 1):
        if not row or not row[0].strip() or row[0].startswith("#"):
            continue
        if len(row) != 2:
            raise InputError(f"{location}:{line}: expected FILE,LABEL;LABEL, got {row}")
        labels = []
        for token in (t.strip() for t in row[1].split(";") if t.strip()):
            if token.isdigit() and int(token) < len(class_names):
                labels.append(int(token))
            elif token.casefold() in index:
                labels.append(index[token.casefold()])
            else:
                raise InputError(f"{location}:{line}: {token!r} is neither a class name nor "
                                 f"an index below {len(class_names)}")
        out[row[0].strip()] = tuple(labels)
    return out


def labelled(tasks: Sequence[FileTask], labels: dict[str, tuple[int, ...]]) -> list[FileTask]:
    """``tasks`` with their labels from :func:`read_labels_csv` (none when not listed)."""
    def find(task: FileTask) -> tuple[int, ...]:
        for key in (task.path, task.relative, Path(task.path).name):
            if key in labels:
                return labels[key]
        return ()

    return [FileTask(t.path, t.uri, t.relative, find(t)) for t in tasks]

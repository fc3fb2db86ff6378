"""Which files a run classifies and where their reports go.

Arguments are files or folders; a folder stands for the audio files in it, in sorted
order (its subfolders' too with ``recursive``). With an output folder every input gets
its own report file, named from the input's path relative to the argument that named
it, so that ``a/x.wav`` and ``b/x.wav`` under one folder argument write ``a/x.json`` and
``b/x.json``; two inputs that would still write the same file (``x.wav`` beside
``x.flac``, or two file arguments named alike) are refused before anything runs, rather
than one report silently replacing the other.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from audio.errors import UsageError
from audio.reports import SUFFIXES
from audio.sources.files import expand_audio_paths, skipped_summary


class OutputDirError(UsageError):
    """The output folder cannot be created or written to, or two reports would collide."""


@dataclass(frozen=True)
class Input:
    """One file to classify, or an argument that names none (``error`` says why).

    ``path`` is what reports show: a file argument as given, a folder's file as the
    folder argument joined with its place in it. ``relative`` is where its report goes
    under the output folder (before the format's suffix).
    """

    path: str
    relative: Path
    error: str | None = None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # unreadable: reading it as a file will say why
        return False


def _folder_inputs(argument: str, folder: Path, recursive: bool,
                   skipped: list[Path]) -> list[Input]:
    errors: list[OSError] = []
    before = len(skipped)
    found = expand_audio_paths([folder], on_error=errors.append, recursive=recursive,
                               on_skipped=skipped.append)
    items = [Input(argument, Path(), f"cannot list {e.filename}: {e.strerror or e}")
             for e in errors]
    if not found and not errors:
        hint = ""
        if not recursive and any(_is_dir(child) for child in folder.iterdir()):
            hint = " (its subfolders are read with --recursive)"
        summary = skipped_summary(skipped[before:])
        items.append(Input(argument, Path(),
                           f"{argument}: no audio files in this folder"
                           f"{f' ({summary})' if summary else ''}{hint}"))
        del skipped[before:]  # said in this error: not again in the run's summary
    return items + [Input(str(Path(argument) / f.relative_to(folder)), f.relative_to(folder))
                    for f in found]


def expand_inputs(arguments: Sequence[str], recursive: bool = False,
                  skipped: list[Path] | None = None) -> list[Input]:
    """The inputs of ``arguments``, in the order given, folders expanded (sorted).

    ``skipped`` receives the files of folders that no decoder reads (``.m4a``, ``.txt``),
    for the run's one summary line (``audio.sources.files.skipped_summary``); a folder
    with nothing else says so in its own error instead.
    """
    skipped = [] if skipped is None else skipped
    items: list[Input] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if _is_dir(path):
            items += _folder_inputs(argument, path, recursive, skipped)
        else:
            items.append(Input(argument, Path(path.name)))
    return items


def prepare_output_dir(folder: Path) -> None:
    """Create the output folder and prove it writable, before any model is loaded."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputDirError(f"cannot write to the output folder {folder}: "
                             f"{exc.strerror or exc}") from exc


def output_paths(items: Sequence[Input], folder: Path, fmt: str) -> list[Path | None]:
    """Each input's report file under ``folder`` (None for an argument without files);
    ``OutputDirError`` when two inputs would write the same file."""
    paths: list[Path | None] = []
    seen: dict[str, str] = {}
    for item in items:
        if item.error is not None:
            paths.append(None)
            continue
        target = folder / item.relative.with_name(item.relative.stem + SUFFIXES[fmt])
        key = os.path.normcase(os.path.abspath(target))
        if key in seen:
            raise OutputDirError(f"{seen[key]} and {item.path} would both be reported in "
                                 f"{target}; classify them in separate runs")
        seen[key] = item.path
        paths.append(target)
    return paths

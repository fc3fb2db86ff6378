#!/usr/bin/env python3
"""Classify the sounds in audio files: ``Speech: 0.75, Music: 0.12, ...`` per file, and
the sound events in them: ``dog 12.40–15.10 s peak 0.83 −18 dBFS``.

    python parse_file.py FILE_OR_DIR [...] [--recursive] [--output_dir DIR]
                         [--format text|json|csv|audacity|raven] [--timeline [--window S]]
                         [--events] [--listen SOUNDS] [--ignore CLASSES] [--count SOUND]
                         [--event_threshold P] [--min_dbfs DBFS] [--top_k N] [--threshold P]
                         [--plot OUT.png] [--backend vggish|yamnet] [--model NAME_OR_PATH]

A thin command line over ``audio.reports.batch.classify_files`` (the formats and their
layout are described in ``audio.reports``). Exit codes: 0 all files classified; 2 a file
could not be read (the others are still processed), a folder holds no audio file, or a
usage error (flags that do not fit together, an unknown sound, a bad groups file, an
unwritable output folder); 1 the model files are missing or broken (the message says
which and how to get them); 130 Ctrl-C (at any moment, without a traceback); 141 the
output pipe was closed (``parse_file.py DIR | head -1``: the run stops at once, quietly,
as a Unix tool stopped by SIGPIPE; ``set -o pipefail`` sees it as such). Models are
imported and loaded only once a file needs them, so ``--help`` is instant; what
TensorFlow and LiteRT print while they load is shown only with ``-v``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from audio.errors import EXIT_BROKEN_PIPE, AudioAnalysisError, exit_code
from audio.reports import EVENT_FORMATS, FORMATS
from audio.settings import (
    AGGREGATE_CHOICES,
    Settings,
    add_event_arguments,
    add_model_arguments,
)

logger = logging.getLogger("parse_file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parse_file.py",
        description="Classify the sounds in audio files (any PCM wav, FLAC, MP3, OGG; any rate "
                    "and channel count; any length), and find when the sounds you listen "
                    "for start and end.")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="audio files, or folders of them (classified in sorted order)")
    parser.add_argument("--recursive", action="store_true",
                        help="folders include the audio files of their subfolders")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="output: text lines (default), JSON Lines (one object per "
                             "file), CSV, an Audacity label track or a Raven Pro selection "
                             f"table ({' and '.join(EVENT_FORMATS)} imply --events)")
    parser.add_argument("--output_dir", metavar="DIR", default=None,
                        help="write one report file per input into DIR (<stem>.json, .csv, "
                             ".txt; .txt for audacity, .selections.txt for raven), "
                             "mirroring the subfolders of a folder argument")
    parser.add_argument("--timeline", action="store_true",
                        help="also classify consecutive windows and print them with their "
                             "start/end times")
    parser.add_argument("--window", type=float, default=None, metavar="SECONDS",
                        help="timeline window length, rounded to whole 0.96 s frames "
                             "(default 0.96)")
    parser.add_argument("--count", metavar="SOUND", default=None,
                        help="count the events of a sound (a class or a group, as --listen "
                             "takes; --event_threshold and the other event flags apply)")
    parser.add_argument("--plot", metavar="OUT.png", default=None,
                        help="also draw the log-mel spectrogram with the top classes' scores "
                             "over time beneath it (with several files: OUT-<file>.png)")
    parser.add_argument("--aggregate", choices=AGGREGATE_CHOICES, default=None,
                        help="how window scores of files longer than the classifier's 300 "
                             "frames are combined (default: frame-weighted mean)")
    add_model_arguments(parser)
    add_event_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from audio.settings import apply_native_output_defaults

    apply_native_output_defaults(args.verbose)  # native chatter only with -v
    if hasattr(sys.stdout, "reconfigure"):  # the event lines' – and −, on any terminal
        sys.stdout.reconfigure(errors="replace")
    try:
        from audio.reports.batch import classify_files

        return classify_files(args.files, Settings.from_args(args), fmt=args.format,
                              output_dir=args.output_dir, recursive=args.recursive,
                              timeline=args.timeline, count=args.count, plot=args.plot)
    except AudioAnalysisError as exc:  # settings, model files, names, the output folder
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:  # the reader is gone (| head): nobody to tell, nothing to do
        _discard_output()
        return EXIT_BROKEN_PIPE


def _discard_output() -> None:
    """Point stdout and stderr at /dev/null, so that the interpreter's last flush of what
    they still buffer does not fail again ("Exception ignored ... BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass  # not a real file (tests' captured streams)
    os.close(devnull)


if __name__ == "__main__":
    from audio.cli import run_script  # Ctrl-C at any moment: exit 130, no traceback

    run_script(main)

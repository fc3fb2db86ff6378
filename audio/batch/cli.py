"""``python -m audio.batch INPUT... --output_dir OUT`` (also ``audio-analysis batch``).

Classifies (and optionally embeds) every audio file of the inputs on Apache Beam and
writes, under OUT: ``predictions-*.jsonl`` (one ``parse_file.py --format json`` object
per file), ``errors-*.jsonl`` (one ``{"file", "error"}`` object per file that could not
be read), ``summary.csv`` (one row per file), ``tables/`` (event tables, with
``--events``/``--listen``) and ``embeddings/*.tfrecord`` (``--embeddings``). Flags this
command does not know are Beam's pipeline options (``--runner``, ``--direct_num_workers``,
``--project``, ``--temp_location``, ...).

Exit codes: 0 the run finished (files that could not be read are counted and listed in
``errors-*.jsonl``); 2 a usage error, or no file at all could be classified; 1 the model
files are missing or the pipeline itself failed; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from audio.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    AudioAnalysisError,
    UsageError,
    exit_code,
)
from audio.settings import AGGREGATE_CHOICES, Settings, add_event_arguments, add_model_arguments

if TYPE_CHECKING:
    from audio.batch.models import ModelSource

logger = logging.getLogger("audio.batch")

DEFAULT_SEGMENT_SECONDS = 10.0
"""Length of an embedding record (AudioSet's segments are 10 s)."""


def build_parser() -> argparse.ArgumentParser:
    from audio.batch.report import TABLE_FORMATS
    from audio.batch.shards import DEFAULT_SHARD_SECONDS

    parser = argparse.ArgumentParser(
        prog="python -m audio.batch",
        description="Classify and embed large audio corpora on Apache Beam (local cores by "
                    "default; Dataflow, Flink or Spark with --runner). Unknown flags are "
                    "Beam pipeline options.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="files, folders (recursive), glob patterns or URIs "
                             "(gs://, s3://, ... with Beam's extras), or @MANIFEST files "
                             "listing one per line")
    parser.add_argument("--output_dir", required=True, metavar="DIR_OR_URI",
                        help="where predictions-*.jsonl, errors-*.jsonl, summary.csv, "
                             "tables/ and embeddings/ are written")
    parser.add_argument("--timeline", action="store_true",
                        help="include each file's timeline windows in its JSON object")
    parser.add_argument("--window", type=float, default=None, metavar="SECONDS",
                        help="timeline window length (default 0.96)")
    parser.add_argument("--aggregate", choices=AGGREGATE_CHOICES, default=None,
                        help="how window scores of long files are combined (default mean)")
    parser.add_argument("--tables", default=",".join(TABLE_FORMATS), metavar="FORMATS",
                        help="event tables written per file with --events/--listen: "
                             "audacity, raven, both (default) or none")
    parser.add_argument("--embeddings", action="store_true",
                        help="also write AudioSet-format TFRecords of the 8-bit VGGish "
                             "embeddings (yt8m.train reads them)")
    parser.add_argument("--labels_csv", metavar="FILE", default=None,
                        help="FILE,LABEL;LABEL rows: the labels of each input in the "
                             "embedding records (class names or indices)")
    parser.add_argument("--segment_seconds", type=float, default=DEFAULT_SEGMENT_SECONDS,
                        help="seconds per embedding record (0: one record per file)")
    parser.add_argument("--shard_seconds", type=float, default=DEFAULT_SHARD_SECONDS,
                        help="long files are cut into shards of about this length, "
                             "processed in parallel")
    parser.add_argument("--min_batch_size", type=int, default=1,
                        help="shards per inference call, at least (Beam's batching)")
    parser.add_argument("--max_batch_size", type=int, default=4,
                        help="shards per inference call, at most")
    add_model_arguments(parser)
    parser.add_argument("--models_dir", metavar="DIR_OR_URI", default=None,
                        help="a folder or URI (gs://, s3://, hdfs://) laid out as models/: "
                             "each worker process copies the model files it needs from it "
                             "once, into --models_cache")
    parser.add_argument("--models_cache", metavar="DIR", default=None,
                        help="the workers' local copy of --models_dir (default: "
                             "TMPDIR/audio-analysis-models)")
    add_event_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def _tables(value: str) -> tuple[str, ...]:
    from audio.batch.report import TABLE_FORMATS

    chosen = value.strip().lower()
    if chosen in ("none", ""):
        return ()
    names = TABLE_FORMATS if chosen == "both" else tuple(v.strip() for v in chosen.split(","))
    unknown = [n for n in names if n not in TABLE_FORMATS]
    if unknown:
        raise BatchUsageError(f"--tables: unknown format {unknown[0]!r} (audacity, raven, "
                              "both or none)")
    return names


class BatchUsageError(UsageError):
    """A flag of this command that does not fit, or flags that do not fit together."""


def _check(args: argparse.Namespace, settings: Settings) -> None:
    if args.embeddings and settings.backend != "vggish":
        raise BatchUsageError("--embeddings writes AudioSet's 128-byte VGGish frames: use "
                              "it with --backend vggish")
    if args.labels_csv and not args.embeddings:
        raise BatchUsageError("--labels_csv labels the embedding records: add --embeddings")
    if not args.shard_seconds > 0 or args.segment_seconds < 0:
        raise BatchUsageError("--shard_seconds must be positive and --segment_seconds "
                              "not negative")
    if not 1 <= args.min_batch_size <= args.max_batch_size:
        raise BatchUsageError("need 1 <= --min_batch_size <= --max_batch_size")


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from audio.settings import apply_native_output_defaults

    apply_native_output_defaults(args.verbose)
    try:
        from audio.batch.models import check_flags

        check_flags(args, args.models_dir)  # before Settings: a URI is no Path
        settings = Settings.from_args(args)
        _check(args, settings)
        return _run(args, settings, beam_args)
    except AudioAnalysisError as exc:  # settings, model files, names, inputs
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)


def _models(args: argparse.Namespace, settings: Settings) -> tuple[Settings, ModelSource | None]:
    """With ``--models_dir``: the files the run needs, checked here (one line naming a
    missing one) and staged for this process's own checks; the workers stage their own."""
    if not args.models_dir:
        return settings, None
    from audio.batch.models import ModelSource, local_settings, plan_models, stage

    files = plan_models(args.models_dir, settings)
    return (local_settings(settings, files, stage(files, args.models_cache)),
            ModelSource.create(files, args.models_cache))


def _run(args: argparse.Namespace, settings: Settings, beam_args: Sequence[str]) -> int:
    from audio.batch import inputs
    from audio.batch.launcher import run_pipeline
    from audio.batch.pipeline import RunConfig
    from audio.batch.report import ReportConfig
    from audio.pipeline import WavProcessor
    from audio.sounds import configured_sounds

    files, problems = inputs.expand(args.inputs)
    local, models = _models(args, settings)
    # Models, sounds and labels are checked here, before any worker starts: a missing
    # model or an unknown --listen name is one line, not a failed pipeline.
    with WavProcessor(local) as processor:
        configured_sounds(settings, processor.labels, processor.backend.class_thresholds)
        if args.labels_csv:
            files = inputs.labelled(files, inputs.read_labels_csv(args.labels_csv,
                                                                  processor.labels))
        frame_hop = processor.backend.frame_hop
    segment = 0 if args.segment_seconds == 0 else max(1, round(args.segment_seconds / frame_hop))
    report = ReportConfig(settings, timeline=args.timeline, tables=_tables(args.tables),
                          embeddings=args.embeddings, segment_frames=segment)
    config = RunConfig(report, args.output_dir.rstrip("/") or "/", args.shard_seconds,
                       args.min_batch_size, args.max_batch_size, models=models)
    for _, message in problems:
        print(f"error: {message}", file=sys.stderr)
    try:
        summary = run_pipeline(files, config, beam_args, problems, verbose=args.verbose)
    except AudioAnalysisError:
        raise
    except Exception as exc:  # the runner's failure: one line, then Beam's own log
        logger.debug("pipeline failed", exc_info=True)
        print(f"error: the pipeline failed: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"audio.batch: {summary.line()}", file=sys.stderr)
    if summary.files_done == 0 and (summary.files_failed or problems):
        return EXIT_USAGE
    return EXIT_OK

"""The Beam pipeline of ``python -m audio.batch``: files → shards → frames → results.

::

    Create(files) ─ Reshuffle ─ Plan ─┬─ shards ─ Reshuffle ─ RunInference(frames) ─┐
                                      └─ unreadable files ─────────────────────┐   │
                        GroupByKey(file) ─ Assemble (results, tables) ─────────┴─ outcomes
    outcomes ─ predictions-*.jsonl, errors-*.jsonl, summary.csv, embeddings/*.tfrecord

* **Plan** opens each file's header (no decoding) and cuts it into shards of whole frames
  (``audio.batch.shards``); a file that cannot be opened is an error outcome there.
* **RunInference** with :class:`audio.batch.handler.FramesModelHandler` reads each
  shard's audio and turns it into the backend's frame features (the costly part: the
  front end and the network), the model loaded once per worker.
* **Assemble** puts a file's frames back in order and computes its result with
  ``WavProcessor.analyze_stream``, the very step ``parse_file.py`` ends with, so the
  result is ``parse_file.py``'s; it writes the file's event tables and makes its
  embedding records.

Every transform is a plain Beam primitive (Create, ParDo, Reshuffle, GroupByKey,
RunInference, file sinks), with no state, timers or DirectRunner-only feature, so the
same graph runs on Dataflow, Flink or Spark (``docs/batch.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.textio import WriteToText
from apache_beam.io.tfrecordio import WriteToTFRecord
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from audio.batch.handler import METRICS_NAMESPACE, FramesModelHandler
from audio.batch.models import ModelSource, worker_settings
from audio.batch.report import (
    FileOutcome,
    ReportConfig,
    classified,
    failed,
    summary_header,
    table_name,
)
from audio.batch.shards import FileTask, Shard, ShardFrames, plan
from audio.errors import BadAudioError

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
ERRORS = "errors"
SUMMARY = "summary.csv"
EMBEDDINGS_DIR = "embeddings"
_FAILED = "failed"


@dataclass(frozen=True)
class RunConfig:
    """Everything the workers need to know, pickled with the transforms."""

    report: ReportConfig
    output_dir: str
    shard_seconds: float
    min_batch_size: int = 1
    max_batch_size: int = 4
    progress_dir: str | None = None
    models: ModelSource | None = None
    """``--models_dir``: the model files each worker process stages (``audio.batch.models``)."""


class PlanFile(beam.DoFn):
    """A file → its shards (main output), or its error outcome (``failed``)."""

    def __init__(self, config: RunConfig) -> None:
        self._config = config
        self._backend: Any = None
        self._failed = Metrics.counter(METRICS_NAMESPACE, "files_failed")

    def setup(self) -> None:
        from audio.backends import create_backend

        # Only the frame geometry is asked of it: the model is not loaded here.
        self._backend = create_backend(self._config.report.settings)

    def process(self, task: FileTask) -> Iterator[Any]:
        try:
            yield from plan(task, self._backend, self._config.shard_seconds)
        except BadAudioError as exc:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(_FAILED, failed(task.path, task.relative, str(exc)))


class AssembleFile(beam.DoFn):
    """A file's shards' frames → its outcome (result lines, tables written, records)."""

    def __init__(self, config: RunConfig) -> None:
        self._config = config
        self._processor: Any = None
        self._sounds: Any = None
        self._staged: Any = None
        self._done = Metrics.counter(METRICS_NAMESPACE, "files_done")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "files_failed")
        self._audio_ms = Metrics.counter(METRICS_NAMESPACE, "audio_ms")

    def setup(self) -> None:
        from audio.pipeline import WavProcessor
        from audio.sounds import configured_sounds

        settings, self._staged = worker_settings(self._config.report.settings,
                                                 self._config.models)
        self._processor = WavProcessor(settings).load()
        self._sounds = configured_sounds(settings, self._processor.labels,
                                         self._processor.backend.class_thresholds)

    def process(self, element: tuple[str, Iterable[ShardFrames]]) -> Iterator[FileOutcome]:
        # A grouped value is an Iterable (Beam 2.78 checks it): it may be read once, lazily.
        _, parts = element
        ordered = sorted(parts, key=lambda p: p.shard.index)
        first: Shard = ordered[0].shard
        errors = [p.error for p in ordered if p.error is not None]
        if [p.shard.index for p in ordered] != list(range(first.count)):
            raise RuntimeError(f"{first.file.path}: shards {[p.shard.index for p in ordered]} "
                               f"of {first.count} arrived")  # a bug, never the input's fault
        if errors:
            self._failed.inc()
            yield failed(first.file.path, first.file.relative, errors[0])
            return
        outcome = classified(self._config.report, self._processor, self._sounds, ordered)
        for fmt, text in outcome.tables.items():
            target = FileSystems.join(self._config.output_dir, table_name(outcome.relative, fmt))
            with FileSystems.create(target) as out:
                out.write(text.encode("utf-8"))
        self._done.inc()
        self._audio_ms.inc(round(first.duration * 1000))
        yield outcome

    def teardown(self) -> None:
        if self._processor is not None:
            self._processor.close()


def _by_file(frames: ShardFrames) -> tuple[str, ShardFrames]:
    return frames.shard.file.path, frames


def _predictions(outcome: FileOutcome) -> list[str]:
    return [outcome.prediction] if outcome.prediction is not None else []


def _errors(outcome: FileOutcome) -> list[str]:
    return [outcome.error] if outcome.error is not None else []


def _records(outcome: FileOutcome) -> tuple[bytes, ...]:
    return outcome.records


def _summary(outcome: FileOutcome) -> str:
    return outcome.summary


def build(pipeline: beam.Pipeline, files: Sequence[FileTask], config: RunConfig,
          problems: Sequence[tuple[str, str]] = ()) -> None:
    """Add the whole graph for ``files`` to ``pipeline``; ``problems`` are the
    ``(argument, message)`` of arguments that named no file (error lines too)."""
    out = config.output_dir
    unusable = pipeline | "Arguments" >> beam.Create(
        [failed(argument, "", message) for argument, message in problems])
    planned = (pipeline
               | "Files" >> beam.Create(list(files))
               | "SpreadFiles" >> beam.Reshuffle()
               | "Plan" >> beam.ParDo(PlanFile(config)).with_outputs(_FAILED, main="shards"))
    handler = FramesModelHandler(config.report.settings, min_batch_size=config.min_batch_size,
                                 max_batch_size=config.max_batch_size,
                                 progress_dir=config.progress_dir, models=config.models)
    assembled = (planned.shards
                 | "SpreadShards" >> beam.Reshuffle()
                 | "Frames" >> RunInference(handler)
                 | "ByFile" >> beam.Map(_by_file)
                 | "GroupShards" >> beam.GroupByKey()
                 | "Assemble" >> beam.ParDo(AssembleFile(config)))
    outcomes = (assembled, planned[_FAILED], unusable) | "Outcomes" >> beam.Flatten()
    _ = (outcomes | "PredictionLines" >> beam.FlatMap(_predictions)
         | "WritePredictions" >> WriteToText(FileSystems.join(out, PREDICTIONS), ".jsonl"))
    _ = (outcomes | "ErrorLines" >> beam.FlatMap(_errors)
         | "WriteErrors" >> WriteToText(FileSystems.join(out, ERRORS), ".jsonl"))
    _ = (outcomes | "SummaryRows" >> beam.Map(_summary)
         | "WriteSummary" >> WriteToText(FileSystems.join(out, SUMMARY), num_shards=1,
                                         shard_name_template="", header=summary_header()))
    if config.report.embeddings:
        _ = (outcomes | "EmbeddingRecords" >> beam.FlatMap(_records)
             | "WriteEmbeddings" >> WriteToTFRecord(
                 FileSystems.join(out, EMBEDDINGS_DIR, "embeddings"),
                 file_name_suffix=".tfrecord"))

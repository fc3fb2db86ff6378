"""Runs the batch pipeline: runner defaults, workers' import path, progress and metrics.

Default runner: Beam's DirectRunner in multi-processing mode with one worker process per
core (``--direct_num_workers``), so a laptop's cores are used without any setup. Any
other runner and its options are passed through (``docs/batch.md``).

The DirectRunner's worker processes are started as ``python -m
apache_beam.runners.worker.sdk_worker_main`` and must import this project: the folder
that holds the ``audio`` package is put first on their ``PYTHONPATH`` for the run (an
installed project is importable anyway). Remote runners get the project through
``--setup_file`` or a container image instead.

While the DirectRunner runs, a thread prints one progress line from the per-worker
files the model handler appends to (``audio.batch.handler``); at the end the counters
are read from Beam's metrics (files done and failed, hours of audio, audio-hours per
wall-minute).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from audio.batch.handler import METRICS_NAMESPACE, PROGRESS_SUFFIX
from audio.batch.pipeline import RunConfig, build
from audio.batch.shards import FileTask

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0
"""Seconds between progress lines."""
DIRECT = "DirectRunner"
LOCAL_RUNNERS = ("direct", "bundlebaseddirect", "fnapi")
"""Runners that take the DirectRunner's options (names as ``_runner_key`` gives them)."""


def _runner_key(runner: object) -> str:
    """A runner's name as Beam matches it: any case, with or without ``Runner``
    (``--runner=direct`` is the DirectRunner)."""
    return str(runner).lower().removesuffix("runner")


def _given(flag: str, beam_args: Sequence[str]) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in beam_args)


@dataclass(frozen=True)
class BatchSummary:
    """What a finished run did, from Beam's metrics."""

    files_done: int
    files_failed: int
    audio_seconds: float
    wall_seconds: float
    tensorflow_batches: int

    @property
    def audio_hours_per_minute(self) -> float:
        return (self.audio_seconds / 3600.0) / max(self.wall_seconds / 60.0, 1e-9)

    def line(self) -> str:
        text = (f"files done {self.files_done}, failed {self.files_failed}; "
                f"{self.audio_seconds / 3600.0:.3f} h of audio in {self.wall_seconds:.1f} s: "
                f"{self.audio_hours_per_minute:.3f} audio-hours per wall-minute")
        if self.tensorflow_batches:  # workers should not need it (audio.batch.handler)
            text += f"; TensorFlow was loaded in workers ({self.tensorflow_batches} batches)"
        return text


def pipeline_options(beam_args: Sequence[str], verbose: bool = False) -> object:
    """Beam's options from the pass-through flags, with the local multi-process default;
    workers log errors only unless ``verbose`` (or the flags say otherwise)."""
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        StandardOptions,
        WorkerOptions,
    )

    options = PipelineOptions(list(beam_args))
    worker = options.view_as(WorkerOptions)
    if not verbose and worker.default_sdk_harness_log_level is None:
        worker.default_sdk_harness_log_level = "ERROR"
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DIRECT
    direct = options.view_as(DirectOptions)
    if _runner_key(standard.runner) in LOCAL_RUNNERS:  # any other: its own options only
        if not _given("--direct_running_mode", beam_args):
            direct.direct_running_mode = "multi_processing"
        if not _given("--direct_num_workers", beam_args):  # Beam's own default is 1
            direct.direct_num_workers = os.cpu_count() or 1
    return options


def is_local_direct(options: object, output_dir: str) -> bool:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner  # type: ignore[attr-defined]
    return _runner_key(runner) == "direct" and "://" not in output_dir


@contextlib.contextmanager
def worker_import_path() -> Iterator[None]:
    """The project's folder first on ``PYTHONPATH`` for the DirectRunner's worker
    processes (restored afterwards)."""
    root = str(Path(__file__).resolve().parents[2])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *([old] if old else [])])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


class Progress:
    """Prints ``progress: 12.3 of 45.6 min of audio (27%), 0.41 audio-h/wall-min`` lines
    while the DirectRunner runs, from the workers' progress files."""

    def __init__(self, folder: str, total_seconds: float, out: TextIO) -> None:
        self.folder, self.total, self.out = folder, total_seconds, out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batch-progress", daemon=True)
        self._started = time.monotonic()

    def done_seconds(self) -> float:
        total = 0.0
        for name in os.listdir(self.folder):
            if name.endswith(PROGRESS_SUFFIX):
                with contextlib.suppress(OSError, ValueError):
                    total += sum(float(x) for x in Path(self.folder, name).read_text().split())
        return total

    def _loop(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY):
            done = self.done_seconds()
            minutes = max(time.monotonic() - self._started, 1e-9) / 60.0
            share = f" ({100 * done / self.total:.0f}%)" if self.total > 0 else ""
            print(f"progress: {done / 60:.1f} min of audio done{share}, "
                  f"{done / 3600 / minutes:.2f} audio-h/wall-min", file=self.out, flush=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _counter(result: object, name: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    query = result.metrics().query(  # type: ignore[attr-defined]
        MetricsFilter().with_namespace(METRICS_NAMESPACE).with_name(name))
    return int(sum(c.committed or 0 for c in query["counters"]))


def run_pipeline(files: Sequence[FileTask], config: RunConfig, beam_args: Sequence[str],
                 problems: Sequence[tuple[str, str]] = (), *, verbose: bool = False,
                 progress_out: TextIO | None = None) -> BatchSummary:
    """Run the pipeline to the end (raises what the runner raises when it fails);
    ``problems`` are arguments that named no file, reported as failures."""
    import apache_beam as beam

    options = pipeline_options(beam_args, verbose)
    local = is_local_direct(options, config.output_dir)
    folder = tempfile.mkdtemp(prefix="audio-batch-progress-") if local else None
    started = time.monotonic()
    try:
        run_config = dataclasses.replace(config, progress_dir=folder)
        pipeline = beam.Pipeline(options=options)
        build(pipeline, files, run_config, problems)
        progress = (Progress(folder, 0.0, progress_out or sys.stderr) if folder
                    else contextlib.nullcontext())
        with worker_import_path() if local else contextlib.nullcontext(), progress:
            result = pipeline.run()
            result.wait_until_finish()
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    return BatchSummary(_counter(result, "files_done"),
                        _counter(result, "files_failed") + len(problems),
                        _counter(result, "audio_ms") / 1000.0, time.monotonic() - started,
                        _counter(result, "batches_with_tensorflow"))

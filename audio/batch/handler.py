"""The project's ``ModelHandler`` for Beam's ``RunInference``: shards → frames.

Beam ships handlers for TensorFlow, PyTorch, ONNX and others, none for LiteRT; this one
runs the project's own backends (``audio.backends``): YAMNet through LiteRT, or VGGish
(its TFLite export when one matches the checkpoint, ``vggish.export``) with the
classifier bundle (its TFLite or numpy runtime, ``yt8m.bundle``). ``load_model`` builds
and loads the backend once per worker process (``RunInference`` keeps it in a shared
handle), so a worker pays the model's start-up once, not per file.

An element is a :class:`audio.batch.shards.Shard` (a reference to frames of a file, not
audio: the worker reads its own samples, so audio never travels between workers); its
prediction is the shard's frame features (``ShardFrames``). A file that cannot be read is
not an exception that would fail the bundle: it becomes a ``ShardFrames`` with the
file's one-line message, reported in ``errors-*.jsonl``.

TensorFlow: on the YAMNet path nothing here or below imports it (``tests/test_batch.py``
checks it in the workers). The VGGish path imports it only when no TFLite export matches
the checkpoint, as ``parse_file.py`` does.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from audio.backends import Backend, create_backend
from audio.batch.models import ModelSource, worker_settings
from audio.batch.shards import Shard, ShardFrames, shard_frames
from audio.errors import BadAudioError
from audio.native import silenced_native_stderr
from audio.settings import Settings

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "audio.batch"
PROGRESS_SUFFIX = ".progress"


def tensorflow_loaded() -> bool:
    """Whether this process has imported TensorFlow (a counter tells the launcher)."""
    return "tensorflow" in sys.modules


class FramesModelHandler(ModelHandler[Shard, ShardFrames, Backend]):
    """Shards of audio files → their frames, with the backend ``settings`` name.

    Args:
      settings: the model settings (backend, model paths) of the run.
      min_batch_size, max_batch_size: shards per ``run_inference`` call (Beam's
        ``BatchElements``); a shard is minutes of audio, so batches are small.
      progress_dir: a local folder where each worker appends the seconds of audio it has
        done (the launcher's progress line on the DirectRunner); None: no progress.
      models: ``--models_dir``'s files, staged once per worker process before loading.
    """

    def __init__(self, settings: Settings, *, min_batch_size: int = 1,
                 max_batch_size: int = 4, progress_dir: str | None = None,
                 models: ModelSource | None = None) -> None:
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self._settings = settings
        self._progress_dir = progress_dir
        self._models = models
        self._staged: object = None
        self._shards = Metrics.counter(METRICS_NAMESPACE, "shards_done")
        self._tensorflow = Metrics.counter(METRICS_NAMESPACE, "batches_with_tensorflow")

    def load_model(self) -> Backend:
        settings, self._staged = worker_settings(self._settings, self._models)
        backend = create_backend(settings)
        with silenced_native_stderr():
            backend.load()
        logger.info("worker %d: %s backend loaded", os.getpid(), backend.name)
        return backend

    def run_inference(self, batch: Sequence[Shard], model: Backend,
                      inference_args: dict[str, Any] | None = None) -> Iterable[ShardFrames]:
        done: list[ShardFrames] = []
        for shard in batch:
            try:
                done.append(shard_frames(shard, model))
            except BadAudioError as exc:
                done.append(ShardFrames(shard, error=str(exc)))
            self._shards.inc()
        if tensorflow_loaded():
            self._tensorflow.inc()
        self._record_progress(done)
        return done

    def get_num_bytes(self, batch: Sequence[Shard]) -> int:
        """Bytes of 16 kHz float32 audio the batch stands for (Beam's throughput metric)."""
        return int(sum((s.end - s.start) * 16000 * 4 for s in batch))

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def _record_progress(self, done: Sequence[ShardFrames]) -> None:
        if self._progress_dir is None:
            return
        path = os.path.join(self._progress_dir, f"{os.getpid()}{PROGRESS_SUFFIX}")
        lines = "".join(f"{f.shard.end - f.shard.start:.3f}\n" for f in done)
        try:
            with open(path, "a", encoding="ascii") as out:
                out.write(lines)
        except OSError as exc:  # progress is a courtesy: never fail the work for it
            logger.debug("progress not recorded in %s: %s", path, exc)

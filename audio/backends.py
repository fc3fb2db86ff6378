"""Backends: the models behind the pipeline, behind one small protocol.

The pipeline (``audio.pipeline``) knows nothing of VGGish, YAMNet or TensorFlow; it
streams 16 kHz mono audio into a backend and ranks the scores that come out. A backend
does two things:

1. ``frame_features(blocks)``: turn consecutive blocks of a 16 kHz mono float32 waveform
   in [−1, 1] into per-frame features, one ``(F_i, D)`` array per block (F_i may be 0).
   Frame ``j`` of the whole stream starts at ``j · frame_hop`` seconds and lasts
   ``frame_seconds``. The backend keeps whatever carry-over its framing needs between
   blocks, so that the frames of a stream cut into blocks equal those of the whole
   signal (the pipeline relies on it to bound memory on long files). A trailing partial
   frame is dropped (VGGish) or padded (YAMNet) as the backend's reference does.
2. ``score_windows(windows)``: classify windows of consecutive frames (each ``(n_i, D)``
   with 1 ≤ n_i ≤ ``max_frames``) into clip-level scores ``(N, len(labels))``.

Attributes: ``name``, ``sample_rate`` (16000), ``frame_hop`` and ``frame_seconds`` (s),
``max_frames`` (longest window ``score_windows`` accepts), ``labels`` (display names, in
score order). ``load()`` loads the model files (idempotent, may raise
``audio.downloads.MissingModelFilesError``); ``close()`` frees them. Model code (TensorFlow,
LiteRT) must be imported inside ``load()``, never at module import.

The VGGish backend reproduces the original application exactly in the 8-bit space the
classifier was trained in: log-mel examples → VGGish → PCA, clip and 8-bit quantisation
(``vggish.postprocess``) → classifier bundle (``yt8m.bundle``), which dequantises
inside per its input contract. Its per-frame features are the uint8 embeddings, one per
0.96 s, and ``max_frames`` is the bundle's (300 frames = 288 s).

To add a backend: implement this protocol, add its name to
``audio.settings.BACKEND_CHOICES`` and a branch to ``create_backend``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from audio.errors import AudioAnalysisError
from vggish.params import PARAMS

if TYPE_CHECKING:
    from audio.settings import Settings

logger = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    name: str
    sample_rate: int
    frame_hop: float
    frame_seconds: float

    @property
    def max_frames(self) -> int: ...

    @property
    def labels(self) -> Sequence[str]: ...

    def load(self) -> None: ...

    def frame_features(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]: ...

    def score_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray: ...

    def close(self) -> None: ...


class BackendNotLoadedError(AudioAnalysisError, RuntimeError):
    """A backend method that needs the models was called before ``load()``."""


class VGGishBackend:
    """VGGish embeddings, 8-bit post-processing and a YouTube-8M-style classifier bundle."""

    name = "vggish"
    sample_rate = PARAMS.sample_rate
    frame_hop = PARAMS.example_hop_seconds
    frame_seconds = PARAMS.example_window_seconds

    def __init__(self, vggish_checkpoint: str | None = None, pca_params: str | None = None,
                 model: str | None = None, batch_size: int = 64) -> None:
        self._checkpoint_override = vggish_checkpoint
        self._pca_override = pca_params
        self._model_name = model
        self._batch_size = batch_size
        self._vggish: Any = None
        self._postprocessor: Any = None
        self._bundle: Any = None
        # Samples per example hop (15360) and the extra samples one example needs beyond
        # its hop (the STFT window minus one STFT hop: 240) at 16 kHz.
        self._hop_samples = PARAMS.stft_hop_length_samples * PARAMS.example_hop_frames
        self._example_samples = (PARAMS.stft_hop_length_samples * (PARAMS.num_frames - 1)
                                 + PARAMS.stft_window_length_samples)

    # -- loading ------------------------------------------------------------------------
    def load(self) -> None:
        if self._bundle is not None:
            return
        from audio.downloads import require_files, resolve_pca_params, resolve_vggish_checkpoint
        from vggish.postprocess import Postprocessor

        checkpoint = resolve_vggish_checkpoint(self._checkpoint_override)
        pca = resolve_pca_params(self._pca_override)
        require_files([checkpoint, pca])
        # The classifier bundle is checked before the slow VGGish build, so that a wrong
        # --model fails in a fraction of a second.
        from yt8m.bundle import BundleError, load_classifier, locate_bundle

        bundle_path = locate_bundle(self._model_name)
        postprocessor = Postprocessor(pca)
        # TensorFlow-free when possible: a custom numpy head or a TFLite export of the
        # bundle, and a TFLite export of this very checkpoint (``python -m audio.export``).
        from vggish.export import load_embedder

        bundle = load_classifier(bundle_path)
        if getattr(bundle, "embedding", "vggish") != "vggish":
            raise BundleError(f"classifier {bundle_path} was trained on "
                              f"{bundle.embedding} embeddings; use it with --backend yamnet")
        self._vggish = load_embedder(checkpoint, batch=self._batch_size)
        self._postprocessor = postprocessor
        self._bundle = bundle
        logger.info("VGGish backend ready: checkpoint %s, PCA %s, classifier %s",
                    checkpoint, pca, bundle.path)

    def _require(self) -> None:
        if self._bundle is None:
            raise BackendNotLoadedError("VGGishBackend.load() has not been called")

    @property
    def max_frames(self) -> int:
        self._require()
        return int(self._bundle.max_frames)

    @property
    def labels(self) -> Sequence[str]:
        self._require()
        return list(self._bundle.labels)

    # -- computing ----------------------------------------------------------------------
    def embed_examples(self, examples: np.ndarray) -> np.ndarray:
        """(K, 96, 64) log-mel examples → (K, 128) uint8 post-processed embeddings."""
        self._require()
        raw = self._vggish(examples)
        return self._postprocessor.postprocess(raw)

    def frame_features(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """uint8 (K_i, 128) per block; equal, concatenated, to whole-signal processing.

        Example k needs samples [k·15360, k·15360 + 15600); after computing the examples a
        buffer holds, the samples from the next example's start on are carried over.
        """
        from vggish.input import num_examples, waveform_to_examples

        self._require()
        carry = np.zeros(0, dtype=np.float32)
        for block in blocks:
            buffer = np.concatenate([carry, np.asarray(block, dtype=np.float32)])
            count = num_examples(buffer.shape[0])
            if count == 0:
                carry = buffer
                yield np.zeros((0, PARAMS.embedding_size), dtype=np.uint8)
                continue
            used = (count - 1) * self._hop_samples + self._example_samples
            examples = waveform_to_examples(buffer[:used], self.sample_rate)
            carry = buffer[count * self._hop_samples:]
            yield self.embed_examples(examples)

    def score_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Classify windows of uint8 embeddings in one batch (zero-padded, ``num_frames``)."""
        self._require()
        if not windows:
            return np.zeros((0, len(self._bundle.labels)), dtype=np.float32)
        lengths = np.array([w.shape[0] for w in windows], dtype=np.int32)
        if lengths.min() < 1 or lengths.max() > self.max_frames:
            raise ValueError(f"windows must hold 1..{self.max_frames} frames, got "
                             f"{lengths.min()}..{lengths.max()}")
        batch = np.zeros((len(windows), int(lengths.max()), PARAMS.embedding_size),
                         dtype=np.uint8)
        for i, window in enumerate(windows):
            batch[i, :window.shape[0]] = window
        return np.asarray(self._bundle.predict(batch, lengths), dtype=np.float32)

    def close(self) -> None:
        self._vggish = None
        self._postprocessor = None
        self._bundle = None


def model_file_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the model files are missing or unusable" (the scripts' exit 1).

    Imported lazily: the modules that define them are light, but only needed on failure.
    """
    from audio.downloads import MissingModelFilesError
    from audio.yamnet import YamnetError, YamnetFilesMissingError
    from vggish.export import ExportError
    from vggish.model import CheckpointError
    from vggish.postprocess import PCAParamsError
    from yt8m.bundle import BundleError, BundleNotFoundError, HeadError

    return (MissingModelFilesError, CheckpointError, PCAParamsError, BundleError,
            BundleNotFoundError, YamnetError, YamnetFilesMissingError, HeadError, ExportError)


def create_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.backend`` (not yet loaded)."""
    if settings.backend == "vggish":
        return VGGishBackend(
            vggish_checkpoint=str(settings.vggish_checkpoint) if settings.vggish_checkpoint
            else None,
            pca_params=str(settings.pca_params) if settings.pca_params else None,
            model=settings.model)
    if settings.backend == "yamnet":
        from audio.yamnet import YamnetBackend

        # --model with this backend names a head trained on YAMNet embeddings
        # (python -m audio.train_custom --embedding yamnet); without it, YAMNet's own
        # 521 AudioSet classes.
        return YamnetBackend(model_path=settings.yamnet_model, head=settings.model)
    raise ValueError(f"unknown backend {settings.backend!r}")

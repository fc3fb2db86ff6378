"""The VGGish backend: VGGish embeddings, 8-bit post-processing and a classifier bundle.

It reproduces the original application exactly in the 8-bit space the classifier was
trained in: log-mel examples → VGGish → PCA, clip and 8-bit quantisation
(``vggish.postprocess``) → classifier bundle (``yt8m.bundle``), which dequantises inside
per its input contract. Its per-frame features are the uint8 embeddings, one per 0.96 s,
and ``max_frames`` is the bundle's (300 frames = 288 s). See ``audio.backends.protocol``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from audio.backends.protocol import BackendNotLoadedError
from vggish.params import PARAMS

logger = logging.getLogger(__name__)


class VGGishBackend:
    """VGGish embeddings, 8-bit post-processing and a YouTube-8M-style classifier bundle."""

    name = "vggish"
    sample_rate = PARAMS.sample_rate
    frame_hop = PARAMS.example_hop_seconds
    frame_seconds = PARAMS.example_window_seconds
    pads_tail = False
    """A partial last example is dropped, as ``vggish_input`` does (a stream shorter than
    one example is still zero-padded to one: ``audio.framestream``)."""
    event_context = 3
    """Frames a frame is scored over for events: the classifiers were trained on clips of
    several 0.96 s frames, and one frame alone is scored on little evidence."""

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
        self.frame_samples = self._example_samples
        self.hop_samples = self._hop_samples

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

        locate_bundle(self._model_name)
        postprocessor = Postprocessor(pca)
        # TensorFlow-free when possible: a custom numpy head or a TFLite export of the
        # bundle, and a TFLite export of this very checkpoint (``python -m audio.export``).
        from vggish.export import load_embedder

        bundle = load_classifier(self._model_name)  # no --model: maybe the edge bundle
        if getattr(bundle, "embedding", "vggish") != "vggish":
            raise BundleError(f"classifier {bundle.path} was trained on "
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

    @property
    def class_thresholds(self) -> dict[str, float] | None:
        """The bundle's per-class thresholds (``config.json``), when it has them."""
        from yt8m.bundle import class_thresholds

        self._require()
        return class_thresholds(getattr(self._bundle, "config", None), self.labels)

    @property
    def class_eval_ap(self) -> dict[str, float] | None:
        """Each class's eval AP from the bundle's ``class_metrics.csv``, when it has one."""
        from yt8m.bundle import class_eval_ap

        self._require()
        path = getattr(self._bundle, "path", None)
        return class_eval_ap(path) if path is not None else None

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

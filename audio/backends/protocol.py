"""The backend protocol: what the pipeline asks of a model, and nothing more.

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

To add a backend: implement this protocol in a module of this package, add its name to
``audio.settings.BACKEND_CHOICES`` and a branch to ``audio.backends.create_backend``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from audio.errors import AudioAnalysisError


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

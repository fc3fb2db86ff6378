"""Backends: the models behind the pipeline, behind one small protocol
(``audio.backends.protocol``): ``vggish`` (VGGish + a classifier bundle) and ``yamnet``
(YAMNet through LiteRT). Model code is imported only when a backend loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audio.backends.protocol import Backend, BackendNotLoadedError
from audio.backends.vggish import VGGishBackend

if TYPE_CHECKING:
    from audio.settings import Settings

__all__ = ["Backend", "BackendNotLoadedError", "VGGishBackend", "create_backend"]


def create_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.backend`` (not yet loaded)."""
    if settings.backend == "vggish":
        return VGGishBackend(
            vggish_checkpoint=str(settings.vggish_checkpoint) if settings.vggish_checkpoint
            else None,
            pca_params=str(settings.pca_params) if settings.pca_params else None,
            model=settings.model)
    if settings.backend == "yamnet":
        from audio.backends.yamnet import YamnetBackend

        # --model with this backend names a head trained on YAMNet embeddings
        # (python -m audio.train_custom --embedding yamnet); without it, YAMNet's own
        # 521 AudioSet classes.
        return YamnetBackend(model_path=settings.yamnet_model, head=settings.model)
    raise ValueError(f"unknown backend {settings.backend!r}")

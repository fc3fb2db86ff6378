"""Turning recordings into per-frame embeddings with the chosen pretrained network.

The only part of custom training that loads a model (VGGish through TensorFlow, or
YAMNet through LiteRT), so it is imported after the data checks have passed and the
network is loaded once for all files. Features are exactly what the entry scripts feed a
head at inference time: VGGish's 8-bit post-processed embedding, dequantised, or
YAMNet's 1024-d embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audio.custom.data import Clip, TrainDataError

VGGISH_MAX_FRAMES = 300


class Embedder:
    """Per-frame features of an audio file with VGGish or YAMNet (loaded once)."""

    def __init__(self, kind: str, vggish_checkpoint: str | None = None,
                 pca_params: str | None = None, yamnet_model: str | None = None) -> None:
        self.kind = kind
        if kind == "vggish":
            from audio.downloads import require_files, resolve_pca_params, resolve_vggish_checkpoint
            from vggish.export import load_embedder
            from vggish.postprocess import Postprocessor

            ckpt = resolve_vggish_checkpoint(vggish_checkpoint)
            pca = resolve_pca_params(pca_params)
            require_files([ckpt, pca])
            self._post = Postprocessor(pca)
            self._net: Any = load_embedder(ckpt)
            self.feature_size = 128
            self.max_frames = VGGISH_MAX_FRAMES
        elif kind == "yamnet":
            from audio.backends.yamnet import YAMNET, YamnetModel, resolve_yamnet_model

            self._net = YamnetModel(resolve_yamnet_model(yamnet_model))
            self.feature_size = YAMNET.embedding_size
            self.max_frames = 2**31 - 1
        else:
            raise TrainDataError(f"unknown embedding {kind!r}")

    def frames(self, path: Path) -> np.ndarray:
        """(F, D) float32 features: dequantised uint8 VGGish embeddings, or YAMNet's."""
        from audio.io import read_audio

        data, rate = read_audio(path)
        if self.kind == "vggish":
            from vggish.input import waveform_to_examples
            from vggish.postprocess import dequantize

            examples = waveform_to_examples(data, rate)
            if examples.shape[0] == 0:
                return np.zeros((0, self.feature_size), np.float32)
            return np.asarray(dequantize(self._post.postprocess(self._net(examples))), np.float32)
        mono = data.mean(axis=1) if data.ndim == 2 else data
        if rate != 16000:
            from audio.io import StreamResampler

            mono = StreamResampler(rate, 16000).process(mono.astype(np.float32), final=True)
        return self._net.embed(np.asarray(mono, np.float32))[0]


def embed_clips(embedder: Embedder, clips: Sequence[Clip]) -> dict[Path, np.ndarray]:
    """Every clip's frames, computed once: training and all evaluations reuse them.

    A file too short for a single frame would silently vanish from its class, so it is an
    error naming the file instead.
    """
    feats: dict[Path, np.ndarray] = {}
    for clip in clips:
        frames = embedder.frames(clip.path)
        if frames.shape[0] == 0:
            raise TrainDataError(f"{clip.path}: too short for one frame (at least 0.975 s)")
        feats[clip.path] = frames
    return feats

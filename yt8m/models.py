"""Frame-level classifiers: a registry of name → spec (hyper-parameters, builder, aliases).

Every model is a Keras model called on ``(frames, num_frames)``: ``frames`` float32
(B, T, 128) already dequantised (and L2-normalised when the input contract says so),
zero beyond ``num_frames``; it returns (B, num_classes) probabilities. Every pooling
masks by ``num_frames``, so T (the padding) never changes the output: a batch padded to
its longest clip and the same batch padded to 300 frames give the same scores.

YouTube-8M models (``google/youtube-8m`` ``frame_level_models.py``), re-implemented:

* ``FrameLevelLogisticModel`` (``Logistic``): mean over frames → sigmoid dense.
* ``DbofModel`` (``Dbof``): 30 frames sampled with replacement (training only; at
  inference every valid frame is used, so scores are deterministic), input BN,
  cluster layer + BN + activation, max-pool, hidden layer + BN + activation, MoE.
* ``LstmModel`` (``Lstm``): stacked LSTMs, final state of the top layer → MoE.
* ``MoeModel``: the mixture-of-experts head (also usable alone on mean-pooled frames).

Beyond them:

* ``AttentionModel`` (``Attention``): per-frame MLP (dense + BN + ReLU + dropout) and
  multi-level attention pooling (Kong et al. 2018, Yu et al. 2018): at each chosen
  level, per class a softmax-over-frames attention weights a per-frame sigmoid
  classifier; the levels' pooled vectors are concatenated into a final sigmoid layer.

A model is registered in one place, its ``ModelSpec`` in ``_SPECS``; ``MODELS`` and
``SHORT_NAMES`` are derived from it. The Keras classes live in ``yt8m.architectures``,
imported only when a model is built, so importing this module never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from vggish.errors import AudioAnalysisError
from yt8m.model_hparams import (
    AttentionHParams,
    DbofHParams,
    LogisticHParams,
    LstmHParams,
    MoeHParams,
)

__all__ = ["MODELS", "ModelSpec", "build_model", "canonical_name", "make_hparams"]


def _architecture(class_name: str) -> Callable[..., Any]:
    """A builder for the Keras class ``class_name`` of ``yt8m.architectures``, imported
    on the first call so that the registry itself stays free of TensorFlow."""

    def build(num_classes: int, hparams: Any, **kw: Any) -> Any:
        from yt8m import architectures

        return getattr(architectures, class_name)(num_classes, hparams, **kw)

    build.__name__ = build.__qualname__ = f"build_{class_name}"
    return build


@dataclass(frozen=True)
class ModelSpec:
    """Everything the registry knows of one model: registering a model is adding one."""

    name: str
    hparams: type
    description: str
    builder: Callable[..., Any]  # (num_classes, hparams, name=...) → unbuilt Keras model
    aliases: tuple[str, ...] = ()  # short names accepted by --model


_SPECS = (
    ModelSpec("FrameLevelLogisticModel", LogisticHParams, "mean over frames → logistic",
              _architecture("FrameLevelLogistic"), ("Logistic",)),
    ModelSpec("MoeModel", MoeHParams, "mean over frames → mixture of experts",
              _architecture("Moe"), ("Moe",)),
    ModelSpec("DbofModel", DbofHParams, "deep bag of frames → MoE",
              _architecture("Dbof"), ("Dbof",)),
    ModelSpec("LstmModel", LstmHParams, "stacked LSTM → MoE", _architecture("Lstm"), ("Lstm",)),
    ModelSpec("AttentionModel", AttentionHParams, "frame MLP + multi-level attention pooling",
              _architecture("Attention"), ("Attention",)),
)
MODELS: MappingProxyType[str, ModelSpec] = MappingProxyType({s.name: s for s in _SPECS})
SHORT_NAMES: MappingProxyType[str, str] = MappingProxyType(
    {alias: s.name for s in _SPECS for alias in s.aliases})


class UnknownModelError(AudioAnalysisError, ValueError):
    """A model name that is not in the registry."""


def canonical_name(name: str) -> str:
    if name in MODELS:
        return name
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    raise UnknownModelError(
        f"unknown model {name!r}; known: {', '.join(list(MODELS) + list(SHORT_NAMES))}")


def make_hparams(name: str, values: dict[str, Any] | None = None):
    """The model's hyper-parameter dataclass from a dict; unknown keys are ignored so one
    flag set (e.g. ``--lstm_cells``) can serve every model."""
    cls = MODELS[canonical_name(name)].hparams
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in (values or {}).items():
        if key in fields and value is not None:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def build_model(name: str, num_classes: int, hparams: Any | None = None,
                feature_size: int = 128, build: bool = True):
    """Instantiate (and build, so weights exist) a registered model."""
    import numpy as np

    spec = MODELS[canonical_name(name)]
    hp = hparams if hparams is not None else spec.hparams()
    model = spec.builder(num_classes, hp, name=spec.name)
    if build:
        model((np.zeros((1, 1, feature_size), np.float32), np.ones((1,), np.int32)))
    return model

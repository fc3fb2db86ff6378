"""Hyper-parameter dataclasses of the frame-level classifiers.

A module of their own because both the registry (``yt8m.models``, which must import
without TensorFlow) and the Keras classes (``yt8m.architectures``, which import it at
the top) need them; here neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AttentionHParams", "DbofHParams", "LogisticHParams", "LstmHParams", "MoeHParams"]


@dataclass(frozen=True)
class LogisticHParams:
    l2_penalty: float = 1e-8


@dataclass(frozen=True)
class MoeHParams:
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8


@dataclass(frozen=True)
class DbofHParams:
    dbof_cluster_size: int = 8192
    dbof_hidden_size: int = 1024
    iterations: int = 30  # frames sampled per clip during training
    dbof_activation: str = "relu6"  # the 2017 code; current YouTube-8M uses sigmoid
    # Batch-norm moving-average momentum. Keras' 0.99 leaves the moving statistics far from
    # the data after the few hundred steps bal_train allows (0.99^78 ≈ 0.46 of the initial
    # values remain after 2 epochs), which wrecks inference; 0.9 converges in ~40 steps.
    bn_momentum: float = 0.9
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8


@dataclass(frozen=True)
class LstmHParams:
    lstm_cells: int = 1024
    lstm_layers: int = 2
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8


@dataclass(frozen=True)
class AttentionHParams:
    hidden_size: int = 512
    hidden_layers: int = 3
    dropout: float = 0.4
    attention_levels: tuple[int, ...] = (2, 3)  # 1-based hidden layers pooled by attention

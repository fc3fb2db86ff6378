"""YAMNet through LiteRT: 521 AudioSet classes without TensorFlow.

The model is Google's YAMNet in the TensorFlow Lite form published for MediaPipe's audio
classifier (``python -m audio.models download yamnet``): a fixed input of 15,600 samples
of 16 kHz mono float audio in [-1, 1] (0.975 s: a 0.96 s patch of 96 log-mel frames plus
the 25 ms STFT window minus one 10 ms hop) and an output of 521 sigmoid scores. The model
computes its own log-mel front end inside the graph, so this module only frames the
waveform, runs the interpreter and names the classes.

Framing follows YAMNet's reference (``features.pad_waveform`` in tensorflow/models
research/audioset/yamnet): frames of 0.975 s every 0.48 s; audio shorter than one frame is
zero-padded to one frame, and the tail is zero-padded so that the last frame is full
(``ceil``, not ``floor``), so no audio at the end of a clip is ignored. Clip scores are
the mean of the per-frame scores, as in YAMNet's inference demo.

The 1024-d embedding (the global average pool feeding the final dense layer) is not an
output of this model variant. It is still computed inside the graph, and LiteRT can keep
intermediate tensors (``experimental_preserve_all_tensors``), so ``embed`` reads it from
there with a second interpreter that runs without the XNNPACK delegate (about 1.5× slower
per frame). ``tests/test_yamnet.py`` checks that sigmoid(dense(embedding)) reproduces the
model's own scores, so a wrong tensor can never go unnoticed.

LiteRT is imported lazily (inside ``YamnetModel``) so that ``--help`` stays instant.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio.errors import ModelFilesError
from vggish.environment import YAMNET_MODEL_ENV, env_value
from yt8m.paths import models_dir

logger = logging.getLogger(__name__)

YAMNET_MODEL_FILE = "yamnet.tflite"
YAMNET_CLASS_MAP_FILE = "yamnet_class_map.csv"
# Name of the global-average-pool tensor (the embedding) in Google's YAMNet graphs.
_EMBEDDING_TENSOR_SUFFIX = "global_average_pooling2d/Mean"


@dataclass(frozen=True)
class YamnetParams:
    """YAMNet's framing constants (``params.py`` of the reference), derived values as properties."""

    sample_rate: int = 16000
    patch_window_seconds: float = 0.96
    patch_hop_seconds: float = 0.48
    stft_window_seconds: float = 0.025
    stft_hop_seconds: float = 0.010
    num_classes: int = 521
    embedding_size: int = 1024

    @property
    def frame_seconds(self) -> float:
        """Audio one model input covers: 0.975 s."""
        return self.patch_window_seconds + self.stft_window_seconds - self.stft_hop_seconds

    @property
    def frame_samples(self) -> int:
        """15,600 samples at 16 kHz."""
        return round(self.frame_seconds * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        """7,680 samples at 16 kHz."""
        return round(self.patch_hop_seconds * self.sample_rate)


YAMNET = YamnetParams()


class YamnetError(ModelFilesError, ValueError):
    """The YAMNet model or class map is not what this module expects."""


class YamnetFilesMissingError(ModelFilesError, FileNotFoundError):
    """The YAMNet ``.tflite`` or its class map is not where it was looked for."""


def num_frames(num_samples: int, params: YamnetParams = YAMNET) -> int:
    """Frames YAMNet produces for ``num_samples`` samples (0 for empty input).

    One frame for anything up to 0.975 s, then one more per started 0.48 s hop.
    """
    if num_samples <= 0:
        return 0
    extra = max(0, num_samples - params.frame_samples)
    return 1 + -(-extra // params.hop_samples)


def frame_waveform(waveform: np.ndarray, params: YamnetParams = YAMNET) -> np.ndarray:
    """(N, 15600) float32 frames of a 16 kHz mono waveform, zero-padded as YAMNet does.

    Uses a strided view over the padded signal, so framing costs one copy of the audio.
    """
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise YamnetError(f"expected a 1-D waveform, got shape {x.shape}")
    n = num_frames(x.shape[0], params)
    if n == 0:
        return np.zeros((0, params.frame_samples), dtype=np.float32)
    total = params.frame_samples + (n - 1) * params.hop_samples
    padded = np.zeros(total, dtype=np.float32)
    padded[: x.shape[0]] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, params.frame_samples)
    return np.ascontiguousarray(windows[:: params.hop_samples][:n])


def frame_times(n: int, params: YamnetParams = YAMNET) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of each of ``n`` frames from the start of the audio."""
    starts = np.arange(n, dtype=np.float64) * params.patch_hop_seconds
    return starts, starts + params.frame_seconds


def read_class_map(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Display names from ``yamnet_class_map.csv`` (columns index, mid, display_name).

    Rows must be numbered 0..N-1 in order: the model's output index is the row index.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise YamnetFilesMissingError(f"cannot read YAMNet class map {path}: {exc}") from exc
    if not rows or [c.strip() for c in rows[0][:3]] != ["index", "mid", "display_name"]:
        raise YamnetError(f"{path}: not a YAMNet class map (header index,mid,display_name)")
    names: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 3 or not row[0].strip().isdigit() or int(row[0]) != len(names):
            raise YamnetError(f"{path}:{line}: expected row {len(names)} as index,mid,name")
        names.append(row[2])
    return tuple(names)


def resolve_yamnet_model(override: str | os.PathLike[str] | None = None) -> Path:
    """The YAMNet ``.tflite`` to use: ``override``, ``$AUDIO_ANALYSIS_YAMNET_MODEL``, ``models/``."""
    if override:
        path = Path(override).expanduser()
    elif env_value(YAMNET_MODEL_ENV):
        path = Path(env_value(YAMNET_MODEL_ENV) or "").expanduser()
    else:
        path = models_dir() / YAMNET_MODEL_FILE
    if not path.is_file():
        raise YamnetFilesMissingError(
            f"YAMNet model not found: {path} "
            "(get it with `python -m audio.models download yamnet`, or pass --yamnet_model)"
        )
    return path


def resolve_class_map(model_path: Path) -> Path:
    """The class map beside the model, else the one in ``models/``."""
    for candidate in (model_path.parent / YAMNET_CLASS_MAP_FILE, models_dir() / YAMNET_CLASS_MAP_FILE):
        if candidate.is_file():
            return candidate
    raise YamnetFilesMissingError(
        f"YAMNet class map {YAMNET_CLASS_MAP_FILE} not found beside {model_path} nor in "
        f"{models_dir()} (get it with `python -m audio.models download yamnet`)"
    )


def _new_interpreter(path: Path, num_threads: int | None, preserve: bool) -> Any:
    from ai_edge_litert.interpreter import Interpreter  # lazy: keeps --help instant

    kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": num_threads}
    if preserve:
        # Intermediate tensors are only readable when kept; XNNPACK would hide them.
        kwargs["experimental_preserve_all_tensors"] = True
    try:
        with warnings.catch_warnings():
            # LiteRT warns that keeping every tensor is meant for debugging: we keep them
            # on purpose (one 1-frame graph, a few MB) to read the embedding.
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            interpreter = Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise YamnetError(f"{path}: not a loadable TensorFlow Lite model ({exc})") from exc
    return interpreter


class YamnetModel:
    """YAMNet's ``.tflite`` loaded once; frames → per-frame scores (and embeddings).

    The published model has a fixed batch of one (its XNNPACK graph cannot be resized),
    so frames go through one at a time; at ~1 ms per 0.975 s frame that is ~1000× real
    time on one core, and the per-call overhead is negligible beside it.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        class_map_path: str | os.PathLike[str] | None = None,
        *,
        num_threads: int | None = None,
        params: YamnetParams = YAMNET,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise YamnetFilesMissingError(f"YAMNet model not found: {self.model_path}")
        self.params = params
        self._num_threads = num_threads
        cmap = Path(class_map_path) if class_map_path else resolve_class_map(self.model_path)
        self.class_map_path = cmap
        self.labels: tuple[str, ...] = read_class_map(cmap)
        self._interpreter = _new_interpreter(self.model_path, num_threads, preserve=False)
        self._embedder: Any = None
        self._input_index, self._scores_index = self._check_signature(self._interpreter)
        if len(self.labels) != params.num_classes:
            raise YamnetError(
                f"{cmap}: {len(self.labels)} classes, but the model outputs {params.num_classes}"
            )

    def _check_signature(self, interpreter: Any) -> tuple[int, int]:
        inputs = interpreter.get_input_details()
        expected_in = [1, self.params.frame_samples]
        if len(inputs) != 1 or list(inputs[0]["shape"]) != expected_in or inputs[0]["dtype"] != np.float32:
            got = [(list(d["shape"]), np.dtype(d["dtype"]).name) for d in inputs]
            raise YamnetError(
                f"{self.model_path}: expected one float32 input of shape {expected_in} "
                f"(the MediaPipe/TF-Hub classification YAMNet), got {got}"
            )
        for out in interpreter.get_output_details():
            if list(out["shape"]) == [1, self.params.num_classes]:
                return int(inputs[0]["index"]), int(out["index"])
        raise YamnetError(f"{self.model_path}: no output of shape [1, {self.params.num_classes}]")

    # -- inference ---------------------------------------------------------------------

    def frame_scores(self, waveform: np.ndarray) -> np.ndarray:
        """(N, 521) float32 scores of each frame of a 16 kHz mono waveform."""
        return self.scores_of_frames(frame_waveform(waveform, self.params))

    def scores_of_frames(self, frames: np.ndarray) -> np.ndarray:
        """(N, 521) scores for (N, 15600) frames from ``frame_waveform``."""
        frames = np.asarray(frames, dtype=np.float32)
        out = np.empty((frames.shape[0], self.params.num_classes), dtype=np.float32)
        it = self._interpreter
        for i in range(frames.shape[0]):
            it.set_tensor(self._input_index, frames[i : i + 1])
            it.invoke()
            out[i] = it.get_tensor(self._scores_index)[0]
        return out

    def embed(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1024) embeddings and (N, 521) scores of each frame.

        Reads the global-average-pool tensor that feeds the classifier layer (see the
        module docstring); the scores come from the same run, so they are consistent.
        """
        return self.embed_frames(frame_waveform(waveform, self.params))

    def embed_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1024) embeddings and (N, 521) scores of (N, 15600) frames."""
        frames = np.asarray(frames, dtype=np.float32)
        it = self._embedding_interpreter()
        emb_index, in_index, out_index = self._embedder_indices
        emb = np.empty((frames.shape[0], self.params.embedding_size), dtype=np.float32)
        scores = np.empty((frames.shape[0], self.params.num_classes), dtype=np.float32)
        for i in range(frames.shape[0]):
            it.set_tensor(in_index, frames[i : i + 1])
            it.invoke()
            emb[i] = it.get_tensor(emb_index).reshape(-1)
            scores[i] = it.get_tensor(out_index)[0]
        return emb, scores

    def _embedding_interpreter(self) -> Any:
        if self._embedder is None:
            it = _new_interpreter(self.model_path, self._num_threads, preserve=True)
            in_index, out_index = self._check_signature(it)
            matches = [
                d
                for d in it.get_tensor_details()
                if d["name"].endswith(_EMBEDDING_TENSOR_SUFFIX)
                and list(d["shape"]) == [1, self.params.embedding_size]
            ]
            if len(matches) != 1:
                raise YamnetError(
                    f"{self.model_path}: no unique {self.params.embedding_size}-d "
                    f"'{_EMBEDDING_TENSOR_SUFFIX}' tensor to read embeddings from"
                )
            self._embedder_indices = (int(matches[0]["index"]), in_index, out_index)
            self._embedder = it
        return self._embedder

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Drop the interpreters (their memory is freed with them)."""
        self._interpreter = None
        self._embedder = None

    def __enter__(self) -> YamnetModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def top_k(scores: np.ndarray, labels: tuple[str, ...], k: int) -> list[tuple[str, float]]:
    """The ``k`` best ``(label, score)`` pairs of a 1-D score vector, best first."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[:k]
    return [(labels[i], float(scores[i])) for i in order]


class YamnetBackend:
    """``audio.backends.Backend`` over YAMNet: per-frame scores, windows average them.

    Per-frame features are YAMNet's 521 scores of each 0.975 s frame (0.48 s hop); a
    window's score is the mean of its frames' scores, as YAMNet's own clip-level
    prediction. Nothing limits a window's length, so ``max_frames`` is unbounded in
    practice and a whole file is one window (the exact mean over every frame).

    With ``head`` (a custom classifier trained on YAMNet embeddings by
    ``audio.train_custom``), features are the 1024-d embeddings instead and windows are
    scored by the head: the mean of its per-frame probabilities.
    """

    name = "yamnet"
    sample_rate = YAMNET.sample_rate
    frame_hop = YAMNET.patch_hop_seconds
    frame_seconds = YAMNET.frame_seconds
    frame_samples = YAMNET.frame_samples
    hop_samples = YAMNET.hop_samples
    pads_tail = True
    event_context = 1
    """Each YAMNet frame carries its own scores: events follow them frame by frame."""
    UNBOUNDED_FRAMES = 2**31 - 1

    def __init__(self, model_path: str | os.PathLike[str] | None = None,
                 head: Any = None, num_threads: int | None = None) -> None:
        self._override = model_path
        self._head_ref = head
        self._head: Any = None
        self._num_threads = num_threads
        self._model: YamnetModel | None = None

    def load(self) -> None:
        if self._model is not None:
            return
        path = resolve_yamnet_model(self._override)
        head = self._head_ref
        if isinstance(head, (str, os.PathLike)):
            from yt8m.bundle import load_head

            head = load_head(head)
            if head.embedding != "yamnet":
                raise YamnetError(f"classifier {head.path} was trained on {head.embedding} "
                                  "embeddings; use it with --backend vggish")
        self._model = YamnetModel(path, num_threads=self._num_threads)
        self._head = head
        logger.info("YAMNet backend ready: %s (%s)", path,
                    f"head {head.path}" if head is not None else "AudioSet classes")

    def _require(self) -> YamnetModel:
        if self._model is None:
            raise RuntimeError("YamnetBackend.load() has not been called")
        return self._model

    @property
    def max_frames(self) -> int:
        return self.UNBOUNDED_FRAMES

    @property
    def labels(self) -> list[str]:
        model = self._require()
        return list(self._head.labels) if self._head is not None else list(model.labels)

    @property
    def class_thresholds(self) -> dict[str, float] | None:
        """A custom head's per-class thresholds, when it has them (YAMNet has none)."""
        if self._head is None:
            return None
        from yt8m.bundle import class_thresholds

        return class_thresholds(getattr(self._head, "config", None), self.labels)

    def _features(self, frames: np.ndarray) -> np.ndarray:
        model = self._require()
        if self._head is None:
            return model.scores_of_frames(frames)
        return model.embed_frames(frames)[0]

    def frame_features(self, blocks: Any) -> Any:
        """(F_i, 521) scores (or (F_i, 1024) embeddings) per block, streaming.

        Frames that lie wholly inside the audio seen so far are computed as blocks arrive;
        when the stream ends, the remaining frames are zero-padded as ``frame_waveform``
        pads a whole signal, so the result equals whole-signal processing.
        """
        p = YAMNET
        carry = np.zeros(0, dtype=np.float32)
        total = 0  # samples seen
        emitted = 0  # frames produced
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            total += block.shape[0]
            carry = np.concatenate([carry, block])
            complete = 0 if carry.shape[0] < p.frame_samples else (
                1 + (carry.shape[0] - p.frame_samples) // p.hop_samples)
            if complete == 0:
                yield self._features(np.zeros((0, p.frame_samples), np.float32))
                continue
            frames = np.lib.stride_tricks.sliding_window_view(carry, p.frame_samples)
            frames = np.ascontiguousarray(frames[:: p.hop_samples][:complete])
            carry = carry[complete * p.hop_samples:]
            emitted += complete
            yield self._features(frames)
        remaining = num_frames(total) - emitted
        if remaining > 0:
            yield self._features(frame_waveform(carry)[:remaining])

    def score_windows(self, windows: Any) -> np.ndarray:
        """Mean of the per-frame scores (or head probabilities) of each window."""
        n_out = len(self.labels)
        if len(windows) == 0:
            return np.zeros((0, n_out), dtype=np.float32)
        out = np.empty((len(windows), n_out), dtype=np.float32)
        for i, window in enumerate(windows):
            w = np.asarray(window, dtype=np.float32)
            if w.ndim != 2 or w.shape[0] < 1:
                raise ValueError(f"windows must be (n >= 1, D) arrays, got {w.shape}")
            scores = w if self._head is None else self._head.frame_probabilities(w)
            out[i] = scores.mean(axis=0)
        return out

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
        self._model = None
        self._head = None

"""Train a classifier for your own sounds from a folder of recordings (transfer learning).

    python -m audio.train_custom DATA_DIR [--negative DIR] [--embedding vggish|yamnet]
                                 [--head logistic|mlp] [--target CLASS] [--name NAME]

``DATA_DIR`` holds one sub-folder of audio files per class (any format ``parse_file.py``
reads). Each file is cut into frames (VGGish: 0.96 s; YAMNet: 0.975 s every 0.48 s), each
frame embedded by the chosen pretrained network (VGGish's 8-bit post-processed embedding,
dequantised, as the shipped classifier sees it; or YAMNet's 1024-d embedding), and a
small head — multinomial logistic regression or a one-hidden-layer MLP, in numpy — is
trained to classify frames, every frame labelled with its file's class. A clip's score is
the mean of its frames' probabilities, at training time and in the entry scripts.

Files, not frames, are split into train / validation / held-out test sets (stratified per
class), so no recording contributes frames to both sides. The held-out test set gets a
per-class precision / recall / F1 report and a confusion matrix, at clip level.

``--negative DIR``: recordings of "anything else" (background, other sounds). In
multi-class mode they form an extra class named by ``--negative_label`` (default
``other``); in detector mode they are negatives.

``--target CLASS``: a binary detector for one class (the Capuchin-bird recipe): the head
has one sigmoid output; positives are the target's files, negatives every other file. The
decision threshold is tuned on the validation files to maximise frame-level F1 and stored
in the bundle, where the entry scripts use it when ``--threshold`` is not given, so
``parse_file.py --model NAME --timeline --count CLASS long.wav`` counts calls with it.

The result is a bundle directory ``models/<name>/`` (``config.json``, ``labels.csv``,
``head.npz``, ``metrics.json``) that ``--model NAME`` accepts in ``parse_file.py``,
``capture.py`` and ``daemon.py`` (with ``--backend yamnet`` for YAMNet heads). Inference
with it needs no TensorFlow (YAMNet always; VGGish once exported with
``python -m audio.export``).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio.errors import UsageError

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff")
VGGISH_MAX_FRAMES = 300


class TrainDataError(UsageError, ValueError):
    """The data folder cannot be used for training (one-line message)."""


@dataclass(frozen=True)
class Clip:
    path: Path
    label: int


# --- data -------------------------------------------------------------------------------


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def scan_dataset(data_dir: Path, negative: Path | None, target: str | None,
                 negative_label: str) -> tuple[list[str], list[Clip]]:
    """Class names and labelled clips. Detector mode: labels are 1 (target) / 0."""
    if not data_dir.is_dir():
        raise TrainDataError(f"{data_dir}: not a directory")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = {f.name: _audio_files(f) for f in folders}
    per_class = {k: v for k, v in per_class.items() if v}
    negatives = _audio_files(negative) if negative else []
    if negative is not None and not negatives:
        raise TrainDataError(f"{negative}: no audio files for --negative")
    if target is not None:
        if target not in per_class:
            raise TrainDataError(f"--target {target!r} is not a sub-folder of {data_dir} with "
                                 f"audio files (found: {', '.join(per_class) or 'none'})")
        clips = [Clip(p, 1) for p in per_class[target]]
        clips += [Clip(p, 0) for name, files in per_class.items() if name != target for p in files]
        clips += [Clip(p, 0) for p in negatives]
        if not any(c.label == 0 for c in clips):
            raise TrainDataError("a detector needs negatives: other class folders or --negative")
        return [target], clips
    names = list(per_class)
    if negatives:
        if negative_label in per_class:
            raise TrainDataError(f"--negative_label {negative_label!r} is also a class folder")
        names.append(negative_label)
        per_class[negative_label] = negatives
    if len(names) < 2:
        raise TrainDataError(f"{data_dir}: need at least two class sub-folders with audio files "
                             f"(or one and --negative), found {len(names)}")
    clips = [Clip(p, i) for i, name in enumerate(names) for p in per_class[name]]
    return names, clips


def split_clips(clips: Sequence[Clip], test_fraction: float, val_fraction: float,
                seed: int) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """Stratified split by file: train, validation, test (each label in each part if it can)."""
    rng = np.random.default_rng(seed)
    train: list[Clip] = []
    val: list[Clip] = []
    test: list[Clip] = []
    for label in sorted({c.label for c in clips}):
        group = [c for c in clips if c.label == label]
        order = rng.permutation(len(group))
        group = [group[i] for i in order]
        if len(group) < 3:
            raise TrainDataError(f"class {label}: need at least 3 files (train, validation, "
                                 f"test), found {len(group)}")
        n_test = max(1, round(test_fraction * len(group)))
        n_val = max(1, round(val_fraction * len(group)))
        n_val = min(n_val, len(group) - n_test - 1)
        test += group[:n_test]
        val += group[n_test:n_test + n_val]
        train += group[n_test + n_val:]
    return train, val, test


# --- embeddings -------------------------------------------------------------------------


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
            from audio.yamnet import YAMNET, YamnetModel, resolve_yamnet_model

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


# --- the head ---------------------------------------------------------------------------


def _init_layers(sizes: Sequence[int], rng: np.random.Generator) -> list[list[np.ndarray]]:
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
        layers.append([rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)])
    return layers


def _forward(layers: Sequence[Sequence[np.ndarray]], x: np.ndarray) -> tuple[np.ndarray, list]:
    acts = [x]
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return h, acts


def _probs(z: np.ndarray, binary: bool) -> np.ndarray:
    if binary:
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_head(x: np.ndarray, y: np.ndarray, num_outputs: int, binary: bool, hidden: int,
               l2: float, epochs: int, lr: float, seed: int) -> list[list[np.ndarray]]:
    """Full-batch Adam on class-balanced cross-entropy (+ L2 on weights).

    ``x`` is already standardised. Full batch is fine: a few thousand frames at most for
    the recordings people collect for a custom class, and it makes training deterministic.
    """
    rng = np.random.default_rng(seed)
    sizes = [x.shape[1], *([hidden] if hidden else []), num_outputs]
    layers = _init_layers(sizes, rng)
    if binary:
        pos = max(1, int(y.sum()))
        neg = max(1, len(y) - pos)
        weights = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * neg))
        target = y.reshape(-1, 1).astype(np.float64)
    else:
        counts = np.bincount(y, minlength=num_outputs).astype(np.float64)
        weights = len(y) / (num_outputs * np.maximum(counts, 1))[y]
        target = np.eye(num_outputs)[y]
    weights = weights / weights.sum()
    m = [[np.zeros_like(p) for p in layer] for layer in layers]
    v = [[np.zeros_like(p) for p in layer] for layer in layers]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, epochs + 1):
        z, acts = _forward(layers, x)
        grad = (_probs(z, binary) - target) * weights[:, None]  # d loss / d logits
        for i in range(len(layers) - 1, -1, -1):
            w, _ = layers[i]
            gw = acts[i].T @ grad + l2 * w
            gb = grad.sum(axis=0)
            if i > 0:
                grad = (grad @ w.T) * (acts[i] > 0)
            for j, g in enumerate((gw, gb)):
                m[i][j] = beta1 * m[i][j] + (1 - beta1) * g
                v[i][j] = beta2 * v[i][j] + (1 - beta2) * g * g
                mhat = m[i][j] / (1 - beta1**step)
                vhat = v[i][j] / (1 - beta2**step)
                layers[i][j] = layers[i][j] - lr * mhat / (np.sqrt(vhat) + eps)
    return layers


# --- evaluation -------------------------------------------------------------------------


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t, p] += 1
    return cm


def prf(cm: np.ndarray) -> list[tuple[float, float, float, int]]:
    """Per-class (precision, recall, F1, support) from a confusion matrix (rows: truth)."""
    out = []
    for k in range(cm.shape[0]):
        tp = cm[k, k]
        p = tp / cm[:, k].sum() if cm[:, k].sum() else 0.0
        r = tp / cm[k].sum() if cm[k].sum() else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out.append((float(p), float(r), float(f), int(cm[k].sum())))
    return out


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising F1 of ``score > t``: midway between adjacent scores."""
    order = np.unique(scores)
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2])
    best, best_t = -1.0, 0.5
    for t in candidates:
        pred = scores > t
        tp = np.sum(pred & (labels == 1))
        fp = np.sum(pred & (labels == 0))
        fn = np.sum(~pred & (labels == 1))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best:
            best, best_t = f1, float(t)
    return float(np.clip(best_t, 1e-4, 1 - 1e-4))


def format_report(names: Sequence[str], cm: np.ndarray) -> str:
    width = max(12, *(len(n) for n in names)) + 2
    lines = [f"{'class':<{width}}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>9}"]
    stats = prf(cm)
    for name, (p, r, f, s) in zip(names, stats, strict=True):
        lines.append(f"{name:<{width}}{p:>10.3f}{r:>10.3f}{f:>10.3f}{s:>9d}")
    macro = np.mean([s[2] for s in stats])
    acc = np.trace(cm) / max(1, cm.sum())
    lines.append(f"{'accuracy':<{width}}{acc:>30.3f}{int(cm.sum()):>9d}")
    lines.append(f"{'macro F1':<{width}}{macro:>30.3f}")
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    short = [n[:10] for n in names]
    lines.append(" " * width + "".join(f"{s:>11}" for s in short))
    for name, row in zip(names, cm, strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>11d}" for v in row))
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m audio.train_custom",
        description="Train a small classifier for your own sound classes on VGGish or YAMNet "
                    "embeddings; export a bundle that --model accepts in every entry script.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR",
                   help="one sub-folder of audio files per class")
    p.add_argument("--negative", type=Path, default=None, metavar="DIR",
                   help="recordings of anything else (background / other sounds)")
    p.add_argument("--negative_label", default="other",
                   help="class name of --negative files in multi-class mode (default: other)")
    p.add_argument("--embedding", choices=("vggish", "yamnet"), default="vggish",
                   help="pretrained network whose embeddings the head learns from")
    p.add_argument("--head", choices=("logistic", "mlp"), default="logistic")
    p.add_argument("--hidden", type=int, default=64, help="MLP hidden units (default 64)")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="train a binary detector for this class, with a tuned threshold")
    p.add_argument("--name", default=None,
                   help="bundle name in the models directory, or a path (default: "
                        "custom-<embedding>[-<target>])")
    p.add_argument("--test_fraction", type=float, default=0.25)
    p.add_argument("--val_fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--l2", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vggish_checkpoint", default=None, metavar="PATH")
    p.add_argument("--pca_params", default=None, metavar="PATH")
    p.add_argument("--yamnet_model", default=None, metavar="PATH")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _bundle_dir(name: str | None, embedding: str, target: str | None) -> Path:
    from yt8m.bundle import resolve_bundle_path

    default = f"custom-{embedding}" + (f"-{target}" if target else "")
    return resolve_bundle_path(name or default)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, export; returns the metrics written to ``metrics.json``."""
    from yt8m.bundle import BundleWriter, save_head

    if not (0 < args.test_fraction < 1 and 0 < args.val_fraction < 1):
        raise TrainDataError("--test_fraction and --val_fraction must be in (0, 1)")
    if args.hidden < 1 and args.head == "mlp":
        raise TrainDataError("--hidden must be positive")
    t0 = time.time()
    names, clips = scan_dataset(args.data_dir, args.negative, args.target, args.negative_label)
    binary = args.target is not None
    train, val, test = split_clips(clips, args.test_fraction, args.val_fraction, args.seed)
    embedder = Embedder(args.embedding, args.vggish_checkpoint, args.pca_params,
                        args.yamnet_model)
    feats: dict[Path, np.ndarray] = {}
    for clip in clips:
        frames = embedder.frames(clip.path)
        if frames.shape[0] == 0:
            raise TrainDataError(f"{clip.path}: too short for one frame (at least 0.975 s)")
        feats[clip.path] = frames
    print(f"{len(clips)} files, {sum(f.shape[0] for f in feats.values())} frames of "
          f"{args.embedding} embeddings ({time.time() - t0:.1f} s); split by file: "
          f"{len(train)} train, {len(val)} validation, {len(test)} test")

    def stack(part: Sequence[Clip]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([feats[c.path] for c in part])
        y = np.concatenate([np.full(feats[c.path].shape[0], c.label) for c in part])
        return x.astype(np.float64), y.astype(np.int64)

    x_train, y_train = stack(train)
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0) + 1e-6
    num_out = 1 if binary else len(names)
    hidden = args.hidden if args.head == "mlp" else 0
    layers = train_head((x_train - mean) / scale, y_train, num_out, binary, hidden, args.l2,
                        args.epochs, args.lr, args.seed)

    def clip_scores(part: Sequence[Clip]) -> np.ndarray:
        out = []
        for c in part:
            z, _ = _forward(layers, (feats[c.path] - mean) / scale)
            out.append(_probs(z, binary).mean(axis=0))
        return np.array(out)

    threshold = None
    if binary:
        x_val, y_val = stack(val)
        z, _ = _forward(layers, (x_val - mean) / scale)
        threshold = best_f1_threshold(_probs(z, True)[:, 0], y_val)
        s_test = clip_scores(test)[:, 0]
        pred = (s_test > threshold).astype(int)
        truth = [c.label for c in test]
        # Rows/columns: 0 = not target, 1 = target; reported as the target's P/R/F1.
        cm = confusion(truth, pred.tolist(), 2)
        report_names = [f"not {names[0]}", names[0]]
        print(f"tuned threshold (max frame F1 on {len(val)} validation files): {threshold:.3f}")
    else:
        s_test = clip_scores(test)
        cm = confusion([c.label for c in test], s_test.argmax(axis=1).tolist(), len(names))
        report_names = names
    report = format_report(report_names, cm)
    print(f"held-out test set ({len(test)} files), clip level:")
    print(report)
    stats = prf(cm)
    metrics = {
        "test_files": len(test), "train_files": len(train), "validation_files": len(val),
        "accuracy": float(np.trace(cm) / max(1, cm.sum())),
        "per_class": {n: {"precision": p, "recall": r, "f1": f, "support": s}
                      for n, (p, r, f, s) in zip(report_names, stats, strict=True)},
        "confusion": cm.tolist(), "threshold": threshold,
    }
    out = _bundle_dir(args.name, args.embedding, args.target)
    save_head(out, name=out.name, embedding=args.embedding,
              mode="detector" if binary else "multiclass", labels=names,
              mean=mean, scale=scale, layers=[(w, b) for w, b in layers],
              feature_size=embedder.feature_size, max_frames=embedder.max_frames,
              threshold=threshold,
              extra={"head": {"type": args.head, "hidden": hidden, "l2": args.l2,
                              "epochs": args.epochs, "lr": args.lr, "seed": args.seed},
                     "training": {"data_dir": str(args.data_dir.resolve()),
                                  "negative": str(args.negative.resolve()) if args.negative
                                  else None, "files": len(clips)}})
    BundleWriter(out).metrics(metrics)
    backend = " --backend yamnet" if args.embedding == "yamnet" else ""
    print(f"bundle written to {out}; use it with: parse_file.py{backend} --model {out} FILE")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from audio.downloads import MissingModelFilesError
    from audio.io import AudioFileError
    from audio.yamnet import YamnetError, YamnetFilesMissingError
    from yt8m.bundle import HeadError

    try:
        run(args)
    except (TrainDataError, AudioFileError, HeadError, YamnetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (MissingModelFilesError, YamnetFilesMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

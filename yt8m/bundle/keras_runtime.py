"""The Keras runtime of a bundle: rebuild its members, score uint8 AudioSet embeddings.

Each member is rebuilt from the ``yt8m.models`` registry and loads its
``member_<i>.weights.h5``, stored as ``members[i]["weights_dtype"]`` says
(``yt8m.weights``); an ensemble averages its members' scores. :meth:`Bundle.predict`
applies the input contract (dequantisation, per-frame L2 normalisation per member), so
callers pass exactly what the VGGish post-processor or the TFRecords give.

Importing this module is cheap: TensorFlow is imported when members are built or run.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.bundle.format import (
    CONFIG_FILE,
    LABELS_FILE,
    MODEL_ENV,
    BundleError,
    BundleNotFoundError,
    InputContract,
    member_l2_normalize,
    read_config,
    read_labels,
    resolve_bundle_path,
)
from yt8m.weights import WEIGHTS_DTYPES, dequantize_weights_file

PREDICT_CHUNK = 1024


def build_members(config: dict[str, Any], weight_files: list[Path]):
    """Rebuild each member from the registry and load its weights."""
    from yt8m.models import build_model, make_hparams

    members = []
    feature_size = int(config["input"]["feature_size"])
    for spec, wf in zip(config["members"], weight_files, strict=True):
        model = build_model(spec["model"], int(config["num_classes"]),
                            make_hparams(spec["model"], spec.get("hparams")),
                            feature_size=feature_size)
        dtype = spec.get("weights_dtype", "float32")
        if dtype not in WEIGHTS_DTYPES:
            raise BundleError(f"{wf}: unknown weights_dtype {dtype!r}")
        if dtype == "int8":
            # Keras cannot apply the per-channel scales: load a float32 copy of the file.
            with tempfile.TemporaryDirectory(prefix="yt8m-weights-") as tmp:
                plain = Path(tmp) / Path(wf).name
                dequantize_weights_file(wf, plain)
                model.load_weights(str(plain))
        else:  # float32, or float16 that Keras casts back itself
            model.load_weights(str(wf))
        members.append(model)
    return members


@dataclass
class Bundle(InputContract):
    """A loaded classifier. ``predict`` takes uint8 embeddings, returns float32 scores."""

    name: str
    path: Path
    config: dict[str, Any]
    labels: list[str]
    label_ids: list[str]
    members: list[Any] = field(repr=False)
    _fn: Any = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def score_graph(self, frames, num_frames):
        """The scores of uint8 ``frames`` as TensorFlow ops: dequantise, normalise per
        member, run every member, average. Traced by :meth:`_function` (any shape) and by
        ``tflite_export`` with static shapes, which is what lets a masked LSTM convert."""
        import tensorflow as tf

        from yt8m.reader import preprocess_frames

        l2_flags = [member_l2_normalize(self.config, i) for i in range(len(self.members))]
        inputs = {l2: preprocess_frames(frames, num_frames, l2) for l2 in set(l2_flags)}
        scores = [m((inputs[l2], num_frames), training=False)
                  for m, l2 in zip(self.members, l2_flags, strict=True)]
        return tf.add_n(scores) / float(len(scores))

    def _function(self):
        """The one ``tf.function`` :meth:`predict` runs."""
        if self._fn is None:
            import tensorflow as tf

            # One trace for every batch size and clip length (dynamic input signature).
            @tf.function(input_signature=[
                tf.TensorSpec([None, None, self.feature_size], tf.uint8),
                tf.TensorSpec([None], tf.int32)])
            def fn(frames, num_frames):
                return self.score_graph(frames, num_frames)

            self._fn = fn
        return self._fn

    def predict(self, embeddings: np.ndarray, num_frames: np.ndarray | None = None) -> np.ndarray:
        """Scores (N, num_classes) float32 for uint8 embeddings (N, frames, feature_size).

        ``num_frames`` defaults to every frame; frames beyond ``max_frames`` are dropped
        (as in training). A clip with 0 frames is scored as if its pooled features were
        all zero (every model masks, so no padding frame ever contributes).
        """
        x = np.asarray(embeddings)
        if x.ndim == 2:
            raise ValueError("embeddings must be (N, frames, feature_size); add a batch axis")
        if x.ndim != 3 or x.shape[2] != self.feature_size:
            raise ValueError(f"embeddings must be (N, frames, {self.feature_size}), got {x.shape}")
        if x.dtype != np.uint8:
            raise TypeError(f"embeddings must be uint8 as stored in the TFRecords, got {x.dtype}")
        n, t = x.shape[0], x.shape[1]
        nf = (np.full(n, t, np.int32) if num_frames is None
              else np.asarray(num_frames, dtype=np.int64).reshape(-1))
        if nf.shape[0] != n:
            raise ValueError(f"num_frames has {nf.shape[0]} entries for {n} clips")
        if np.any(nf < 0) or np.any(nf > t):
            raise ValueError(f"num_frames must be within [0, {t}]")
        t_keep = min(t, self.max_frames)
        x = x[:, :t_keep]
        nf = np.minimum(nf, t_keep).astype(np.int32)
        if n == 0:
            return np.zeros((0, self.num_classes), np.float32)
        fn = self._function()
        out = [fn(x[i: i + PREDICT_CHUNK], nf[i: i + PREDICT_CHUNK]).numpy()
               for i in range(0, n, PREDICT_CHUNK)]
        return np.concatenate(out).astype(np.float32, copy=False)


def _checked_config(path: Path) -> tuple[dict[str, Any], list[Path]]:
    """The config and member weight files of a Keras bundle, every file checked present."""
    config_path = path / CONFIG_FILE
    try:
        config = read_config(path)
        weight_files = [path / m["weights"] for m in config["members"]]
        config["input"]["feature_size"]
        for i in range(len(config["members"])):
            member_l2_normalize(config, i)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{config_path}: invalid bundle config ({exc})") from None
    missing = [str(w) for w in weight_files if not w.is_file()]
    if not (path / LABELS_FILE).is_file():
        missing.append(str(path / LABELS_FILE))
    if missing:
        raise BundleError(f"bundle {path} is incomplete: missing {', '.join(missing)}")
    return config, weight_files


def load_keras_bundle(name_or_path: str | os.PathLike[str] | None = None,
                      models_dir: str | os.PathLike[str] | None = None) -> Bundle:
    """Load a bundle with TensorFlow: by name (under ``models_dir()``), path, or default."""
    path = resolve_bundle_path(name_or_path, models_dir)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise BundleNotFoundError(
            f"classifier bundle not found: {config_path} (train and export one with "
            f"`python -m yt8m.train` and `python -m yt8m.export`, see docs/results.md, or "
            f"set ${MODEL_ENV} to a bundle name or path)")
    config, weight_files = _checked_config(path)
    label_ids, labels = read_labels(path / LABELS_FILE)
    if len(labels) != int(config["num_classes"]):
        raise BundleError(f"{path / LABELS_FILE}: {len(labels)} labels for "
                          f"{config['num_classes']} classes")
    members = build_members(config, weight_files)
    return Bundle(name=config.get("name", path.name), path=path, config=config,
                  labels=labels, label_ids=label_ids, members=members)

"""Runtime settings of the application, in one frozen dataclass.

Every entry script (``parse_file.py``, ``capture.py``, ``daemon.py``) builds one
``Settings`` from its command line and the environment, and passes it down; nothing
below the scripts reads ``os.environ`` or argparse itself. Precedence: a command-line
flag, then the environment variable, then the default (for ``--threshold``: a detector
bundle's tuned threshold when ``--model`` names one, else 0.1).

Environment variables:

* ``AUDIO_ANALYSIS_VGGISH_CHECKPOINT`` — VGGish checkpoint (``--vggish_checkpoint``);
* ``AUDIO_ANALYSIS_PCA_PARAMS`` — PCA parameters ``.npz`` (``--pca_params``);
* ``AUDIO_ANALYSIS_MODEL`` — classifier bundle name (in the models directory) or path
  (``--model``);
* ``AUDIO_ANALYSIS_YAMNET_MODEL`` — YAMNet ``.tflite`` for ``--backend yamnet``
  (``--yamnet_model``; the class map is read from beside it or the models directory);
* ``AUDIO_ANALYSIS_MODELS_DIR`` — where model files live (read by ``yt8m.paths``);
* ``AUDIO_ANALYSIS_QUIET_NATIVE`` — ``1`` silences what PortAudio (ALSA, JACK), LiteRT and
  TensorFlow print on stderr from C while devices are probed and models loaded
  (``audio.native``); the scripts set it, with ``TF_CPP_MIN_LOG_LEVEL=2``, unless ``-v``
  (``apply_native_output_defaults``).

This module is imported by the entry scripts at start-up: it must stay light (no
TensorFlow, no resampy), so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from audio.errors import UsageError

VGGISH_CHECKPOINT_ENV = "AUDIO_ANALYSIS_VGGISH_CHECKPOINT"
PCA_PARAMS_ENV = "AUDIO_ANALYSIS_PCA_PARAMS"
MODEL_ENV = "AUDIO_ANALYSIS_MODEL"
YAMNET_MODEL_ENV = "AUDIO_ANALYSIS_YAMNET_MODEL"
QUIET_NATIVE_ENV = "AUDIO_ANALYSIS_QUIET_NATIVE"
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"

BACKEND_CHOICES: tuple[str, ...] = ("vggish", "yamnet")
"""Names accepted by ``--backend``: the one list. A new backend is added here and in
``audio.backends.create_backend``."""

AGGREGATE_CHOICES: tuple[str, ...] = ("mean", "max")

DEFAULT_TOP_K = 20
"""The original's PREDICTIONS_COUNT_LIMIT."""
DEFAULT_THRESHOLD = 0.1
"""The original's PREDICTIONS_HIT_LIMIT: a class is reported when its score is > this."""
DEFAULT_MIN_TIME = 5.0
DEFAULT_MAX_TIME = 7.0
DEFAULT_TIMELINE_WINDOW = 0.96
MIN_AUDIO_SECONDS = 0.975
"""Shortest input that yields one VGGish example: 400 + 95 · 160 samples at 16 kHz."""


class SettingsError(UsageError, ValueError):
    """A setting is out of range (a usage error, reported in one line)."""


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline, the loop and the scripts need to know.

    Model paths left as None are resolved by ``audio.downloads`` (their default location
    in the models directory); ``model`` None means the shipped default bundle.
    """

    backend: str = "vggish"
    model: str | None = None
    vggish_checkpoint: Path | None = None
    pca_params: Path | None = None
    yamnet_model: Path | None = None
    top_k: int = DEFAULT_TOP_K
    threshold: float = DEFAULT_THRESHOLD
    aggregate: str = "mean"
    # Capture.
    min_time: float = DEFAULT_MIN_TIME
    max_time: float = DEFAULT_MAX_TIME
    save_path: Path | None = None
    device: str | None = None
    # Timeline (parse_file.py --timeline).
    window: float = DEFAULT_TIMELINE_WINDOW

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise SettingsError(f"unknown backend {self.backend!r} "
                                f"(choose from {', '.join(BACKEND_CHOICES)})")
        if self.aggregate not in AGGREGATE_CHOICES:
            raise SettingsError(f"unknown aggregation {self.aggregate!r} "
                                f"(choose from {', '.join(AGGREGATE_CHOICES)})")
        if self.top_k < 1:
            raise SettingsError(f"--top_k must be at least 1, got {self.top_k}")
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold < 1.0):
            raise SettingsError(f"--threshold must be in [0, 1), got {self.threshold}")
        if not (math.isfinite(self.min_time) and self.min_time >= MIN_AUDIO_SECONDS):
            raise SettingsError(f"--min_time must be at least {MIN_AUDIO_SECONDS} s "
                                f"(one VGGish example), got {self.min_time}")
        if not (math.isfinite(self.max_time) and self.max_time >= self.min_time):
            raise SettingsError(f"--max_time ({self.max_time}) must not be less than "
                                f"--min_time ({self.min_time})")
        if not (math.isfinite(self.window) and self.window > 0):
            raise SettingsError(f"--window must be a positive number of seconds, "
                                f"got {self.window}")

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from parsed arguments (missing attributes keep their defaults) + env."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in ("backend", "top_k", "threshold", "aggregate", "min_time", "max_time",
                     "window", "device"):
            value = getattr(args, name, None)
            if value is not None:
                values[name] = value
        save_path = getattr(args, "save_path", None)
        if save_path is not None:
            values["save_path"] = Path(save_path).expanduser()
        model = getattr(args, "model", None) or env.get(MODEL_ENV) or None
        values["model"] = model
        if "threshold" not in values and model:
            # A detector trained by audio.train_custom carries its tuned threshold.
            from yt8m.bundle import bundle_threshold

            tuned = bundle_threshold(model)
            if tuned is not None:
                values["threshold"] = tuned
        values["vggish_checkpoint"] = _path_or_env(getattr(args, "vggish_checkpoint", None),
                                                   env.get(VGGISH_CHECKPOINT_ENV))
        values["pca_params"] = _path_or_env(getattr(args, "pca_params", None),
                                            env.get(PCA_PARAMS_ENV))
        values["yamnet_model"] = _path_or_env(getattr(args, "yamnet_model", None),
                                              env.get(YAMNET_MODEL_ENV))
        return cls(**values)  # type: ignore[arg-type]


def apply_native_output_defaults(verbose: bool, environ: MutableMapping[str, str]) -> None:
    """Keep native start-up logs off the terminal unless ``-v``: the scripts' one switch.

    Without ``-v``, TensorFlow's C++ logging below errors and the native stderr chatter
    of ``audio.native`` are silenced, unless the user's environment already says
    otherwise. With ``-v`` everything is shown, whatever ``$AUDIO_ANALYSIS_QUIET_NATIVE``
    holds (the flag wins, as everywhere in the settings); a user's
    ``TF_CPP_MIN_LOG_LEVEL`` is TensorFlow's own setting and is left alone. Call it
    before TensorFlow is imported.
    """
    if verbose:
        environ[QUIET_NATIVE_ENV] = "0"
        return
    environ.setdefault(QUIET_NATIVE_ENV, "1")
    environ.setdefault(TF_LOG_LEVEL_ENV, "2")


def _path_or_env(flag: str | None, env_value: str | None) -> Path | None:
    value = flag or env_value
    return Path(value).expanduser() if value else None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and ranking flags shared by every entry script."""
    group = parser.add_argument_group("models and ranking")
    group.add_argument("--backend", choices=BACKEND_CHOICES, default=None,
                       help="embedding/classification backend: vggish (VGGish + classifier "
                            "bundle) or yamnet (YAMNet .tflite, 521 AudioSet classes, no "
                            "TensorFlow) (default: vggish)")
    group.add_argument("--model", metavar="NAME_OR_PATH", default=None,
                       help=f"classifier bundle: a name in the models directory or a path "
                            f"(env {MODEL_ENV}; default: the shipped bundle)")
    group.add_argument("--vggish_checkpoint", "--vggish-checkpoint", metavar="PATH", default=None,
                       help=f"VGGish checkpoint (env {VGGISH_CHECKPOINT_ENV}; default: "
                            f"models/vggish_model.ckpt)")
    group.add_argument("--pca_params", "--pca-params", metavar="PATH", default=None,
                       help=f"VGGish PCA parameters (env {PCA_PARAMS_ENV}; default: "
                            f"models/vggish_pca_params.npz)")
    group.add_argument("--yamnet_model", metavar="PATH", default=None,
                       help=f"YAMNet .tflite for --backend yamnet (env {YAMNET_MODEL_ENV}; "
                            f"default: models/yamnet.tflite)")
    group.add_argument("--top_k", type=int, default=None, metavar="N",
                       help=f"report at most N classes (default {DEFAULT_TOP_K})")
    group.add_argument("--threshold", type=float, default=None, metavar="SCORE",
                       help=f"report classes scoring above SCORE (default {DEFAULT_THRESHOLD})")

"""Runtime settings of the application: the command line and the environment, resolved
once into one frozen ``Settings`` that the scripts pass down.

Every entry script (``parse_file.py``, ``capture.py``, ``daemon.py``) builds one
``Settings`` with :meth:`Settings.from_args`; the pipeline, loop, backends and sinks take
it (or the paths and values it holds) as arguments and read neither ``os.environ`` nor
argparse. Precedence: a command-line flag, then the environment variable, then the
default (for ``--threshold``: a detector bundle's tuned threshold when ``--model`` names
one, else 0.1; ``--threshold calibrated`` ranks each class against its own threshold from
the bundle, ``yt8m.calibrate``).

Every environment variable's name, and the one function that reads them, live in
``vggish.environment`` (the lowest layer, since the standalone commands of ``vggish`` and
``yt8m`` honour some of them too): ``AUDIO_ANALYSIS_VGGISH_CHECKPOINT``,
``AUDIO_ANALYSIS_PCA_PARAMS``, ``AUDIO_ANALYSIS_MODEL``, ``AUDIO_ANALYSIS_YAMNET_MODEL``,
``AUDIO_ANALYSIS_MODELS_DIR``, ``AUDIO_ANALYSIS_VGGISH_TFLITE``, ``AUDIO_ANALYSIS_CONFIG``,
``AUDIO_ANALYSIS_DOWNLOAD_BASE_URL`` and ``AUDIO_ANALYSIS_QUIET_NATIVE`` (``1`` silences
what PortAudio, LiteRT and TensorFlow print from C; the scripts set it, with
``TF_CPP_MIN_LOG_LEVEL=2``, unless ``-v``: :func:`apply_native_output_defaults`).

This module is imported by the entry scripts at start-up: it must stay light (no
TensorFlow, no resampy), so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from audio.errors import UsageError
from vggish.environment import (
    MODEL_ENV,
    PCA_PARAMS_ENV,
    QUIET_NATIVE_ENV,
    TF_LOG_LEVEL_ENV,
    VGGISH_CHECKPOINT_ENV,
    YAMNET_MODEL_ENV,
    env_value,
    set_default,
)

BACKEND_CHOICES: tuple[str, ...] = ("vggish", "yamnet")
"""Names accepted by ``--backend``: the one list. A new backend is added here and in
``audio.backends.create_backend``."""

AGGREGATE_CHOICES: tuple[str, ...] = ("mean", "max")

DEFAULT_TOP_K = 20
"""The original's PREDICTIONS_COUNT_LIMIT."""
DEFAULT_THRESHOLD = 0.1
"""The original's PREDICTIONS_HIT_LIMIT: a class is reported when its score is > this."""
CALIBRATED = "calibrated"
"""``--threshold calibrated``: each class's own threshold from the classifier bundle."""
DEFAULT_MIN_TIME = 5.0
DEFAULT_MAX_TIME = 7.0
DEFAULT_TIMELINE_WINDOW = 0.96
DEFAULT_MAX_NOT_HEARD = 1.0
MIN_AUDIO_SECONDS = 0.975
"""Shortest capture window (``--min_time``): one whole VGGish example, 400 + 95 · 160
samples at 16 kHz. Shorter *inputs* are classified (zero-padded to one frame); a live
window that short would be classified mostly on padding."""


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
    calibrated_threshold: bool = False
    """Rank each class against the bundle's per-class threshold (``class_thresholds``);
    ``threshold`` then serves the classes the bundle has none for."""
    aggregate: str = "mean"
    # Capture.
    min_time: float = DEFAULT_MIN_TIME
    max_time: float = DEFAULT_MAX_TIME
    save_path: Path | None = None
    device: str | None = None
    # Timeline (parse_file.py --timeline).
    window: float = DEFAULT_TIMELINE_WINDOW
    # Sound events (--events, --listen: audio.sounds, audio.detect).
    events: bool = False
    listen: str | None = None
    ignore: str | None = None
    event_threshold: float | None = None
    """None: the classifier's per-class thresholds where it has them, else 0.5."""
    min_dbfs: float | None = None
    min_duration: float = 0.0
    max_not_heard: float = DEFAULT_MAX_NOT_HEARD
    sound_groups: Path | None = None
    """A groups file replacing the shipped ``audio/sound_groups.json``."""

    @property
    def threshold_label(self) -> str:
        """The ranking threshold as the reports name it."""
        return "calibrated per class" if self.calibrated_threshold else f"{self.threshold:g}"

    @property
    def wants_events(self) -> bool:
        """``--events``, or ``--listen`` (which implies it)."""
        return self.events or self.listen is not None

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
        self._check_events()

    def _check_events(self) -> None:
        threshold = self.event_threshold
        if threshold is not None and not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
            raise SettingsError(f"--event_threshold must be in (0, 1], got {threshold}")
        if self.min_dbfs is not None and not (math.isfinite(self.min_dbfs)
                                              and self.min_dbfs <= 0):
            raise SettingsError(f"--min_dbfs must be a level of at most 0 dBFS, got "
                                f"{self.min_dbfs}")
        for flag, value in (("--min_duration", self.min_duration),
                            ("--max_not_heard", self.max_not_heard)):
            if not (math.isfinite(value) and value >= 0):
                raise SettingsError(f"{flag} must be a non-negative number of seconds, "
                                    f"got {value}")

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from parsed arguments (missing attributes keep their defaults) + env."""
        values: dict[str, object] = {}
        for name in ("backend", "top_k", "threshold", "aggregate", "min_time", "max_time",
                     "window", "device", "events", "listen", "ignore", "event_threshold",
                     "min_dbfs", "min_duration", "max_not_heard"):
            value = getattr(args, name, None)
            if value is not None:
                values[name] = value
        if values.get("threshold") == CALIBRATED:
            values["calibrated_threshold"] = True
            del values["threshold"]
        groups = getattr(args, "sound_groups", None)
        if groups is not None:
            values["sound_groups"] = Path(groups).expanduser()
        save_path = getattr(args, "save_path", None)
        if save_path is not None:
            values["save_path"] = Path(save_path).expanduser()
        model = getattr(args, "model", None) or env_value(MODEL_ENV, environ)
        values["model"] = model
        if "threshold" not in values and model:
            # A detector trained by audio.train_custom carries its tuned threshold.
            from yt8m.bundle import bundle_threshold

            tuned = bundle_threshold(model)
            if tuned is not None:
                values["threshold"] = tuned
        for field_name, env_name in (("vggish_checkpoint", VGGISH_CHECKPOINT_ENV),
                                     ("pca_params", PCA_PARAMS_ENV),
                                     ("yamnet_model", YAMNET_MODEL_ENV)):
            value = getattr(args, field_name, None) or env_value(env_name, environ)
            values[field_name] = Path(value).expanduser() if value else None
        return cls(**values)  # type: ignore[arg-type]


def apply_native_output_defaults(verbose: bool,
                                 environ: MutableMapping[str, str] | None = None) -> None:
    """Keep native start-up logs off the terminal unless ``-v``: the scripts' one switch.

    Without ``-v``, TensorFlow's C++ logging below errors and the native stderr chatter
    of ``audio.native`` are silenced, unless the user's environment already says
    otherwise. With ``-v`` everything is shown, whatever ``$AUDIO_ANALYSIS_QUIET_NATIVE``
    holds (the flag wins, as everywhere in the settings); a user's
    ``TF_CPP_MIN_LOG_LEVEL`` is TensorFlow's own setting and is left alone. Call it
    before TensorFlow is imported.
    """
    if verbose:
        set_default(QUIET_NATIVE_ENV, "0", environ, force=True)
        return
    set_default(QUIET_NATIVE_ENV, "1", environ)
    set_default(TF_LOG_LEVEL_ENV, "2", environ)


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
    group.add_argument("--threshold", type=threshold_arg, default=None, metavar="SCORE",
                       help=f"report classes scoring above SCORE (default {DEFAULT_THRESHOLD}), "
                            f"or '{CALIBRATED}': each class above its own threshold from the "
                            f"classifier bundle (python -m yt8m.calibrate)")


def threshold_arg(text: str) -> float | str:
    """``--threshold``: a score, or ``calibrated``."""
    if text.strip().lower() == CALIBRATED:
        return CALIBRATED
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a score or '{CALIBRATED}', got {text!r}") from None


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    """The sound-event flags shared by the entry scripts (``audio.sounds``, ``audio.detect``)."""
    group = parser.add_argument_group(
        "sound events", "when a sound started and ended: a class, or a group of classes "
                        "from the groups file (dog, siren, glass breaking, ...)")
    group.add_argument("--events", action="store_true", default=None,
                       help="report sound events (start, end, peak score, level)")
    group.add_argument("--listen", metavar="SOUNDS", default=None,
                       help="comma-separated sounds to follow, classes or groups, any case "
                            "(implies --events; default: every class)")
    group.add_argument("--ignore", metavar="CLASSES", default=None,
                       help="comma-separated classes (or groups) never to report")
    group.add_argument("--event_threshold", type=float, default=None, metavar="SCORE",
                       help="score at which a sound starts (default: the classifier's "
                            "per-class thresholds where it has them, else 0.5); it ends "
                            "below 3/4 of it")
    group.add_argument("--min_dbfs", type=float, default=None, metavar="DBFS",
                       help="frames quieter than this level never start an event "
                            "(e.g. -50; default: no gate)")
    group.add_argument("--min_duration", type=float, default=None, metavar="SECONDS",
                       help="seconds a sound must be heard before its event starts "
                            "(default 0: the first frame)")
    group.add_argument("--max_not_heard", type=float, default=None, metavar="SECONDS",
                       help=f"seconds without the sound that end its event (default "
                            f"{DEFAULT_MAX_NOT_HEARD:g})")
    group.add_argument("--sound_groups", metavar="FILE", default=None,
                       help="JSON file of sound groups and per-sound thresholds, replacing "
                            "the shipped audio/sound_groups.json")

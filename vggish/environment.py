"""Every environment variable the project reads: each name once, and the one function
that reads them.

It sits in the lowest layer because a command of every layer honours them
(``python -m vggish.export`` finds the checkpoint, ``yt8m.bundle`` the shipped bundle,
the application all of them); ``audio.settings`` turns them, with the command line, into
the one frozen ``Settings`` the application passes down. No other module touches
``os.environ``: they call :func:`env_value` (or take the value as an argument), so a
name is spelled, documented and read in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

MODELS_DIR_ENV = "AUDIO_ANALYSIS_MODELS_DIR"
"""Where model files live (default: ``models/`` in the project)."""
VGGISH_CHECKPOINT_ENV = "AUDIO_ANALYSIS_VGGISH_CHECKPOINT"
PCA_PARAMS_ENV = "AUDIO_ANALYSIS_PCA_PARAMS"
MODEL_ENV = "AUDIO_ANALYSIS_MODEL"
"""Classifier bundle name (in the models directory) or path."""
YAMNET_MODEL_ENV = "AUDIO_ANALYSIS_YAMNET_MODEL"
VGGISH_TFLITE_ENV = "AUDIO_ANALYSIS_VGGISH_TFLITE"
"""``auto`` (a TFLite export matching the checkpoint), ``int8``, ``float32`` or ``off``."""
CONFIG_ENV = "AUDIO_ANALYSIS_CONFIG"
"""The daemon's configuration file."""
DH_REFRESH_TOKEN_ENV = "AUDIO_ANALYSIS_DH_REFRESH_TOKEN"
"""The daemon's DeviceHive refresh token (a flag would show it in ``ps``)."""
DH_ACCESS_TOKEN_ENV = "AUDIO_ANALYSIS_DH_ACCESS_TOKEN"
"""The daemon's DeviceHive access token."""
WEB_PASSWORD_ENV = "AUDIO_ANALYSIS_WEB_PASSWORD"
"""The password of the daemon's web page on a non-loopback bind (instead of the hash that
``daemon.py --set_password`` stores)."""
MQTT_PASSWORD_ENV = "AUDIO_ANALYSIS_MQTT_PASSWORD"
"""The MQTT broker's password (``daemon.py --mqtt_url`` without one in the URL)."""
WEBHOOK_SECRET_ENV = "AUDIO_ANALYSIS_WEBHOOK_SECRET"
"""The webhooks' HMAC secret (``daemon.py --webhook_secret``, which ``ps`` would show)."""
DOWNLOAD_BASE_URL_ENV = "AUDIO_ANALYSIS_DOWNLOAD_BASE_URL"
"""A mirror for ``python -m audio.models download``."""
QUIET_NATIVE_ENV = "AUDIO_ANALYSIS_QUIET_NATIVE"
"""``1``: keep native libraries' stderr chatter (ALSA, JACK, LiteRT) off the terminal."""
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
"""TensorFlow's own switch for its C++ start-up lines (set by the scripts, not read)."""
XDG_CONFIG_HOME_ENV = "XDG_CONFIG_HOME"
DB_ENV = "AUDIO_ANALYSIS_DB"
"""The daemon's event store (an SQLite file); ``--db`` wins over it."""
XDG_STATE_HOME_ENV = "XDG_STATE_HOME"
"""Where the event store lives by default (``~/.local/state`` when unset or not absolute)."""
TF_CONFIG_ENV = "TF_CONFIG"
"""TensorFlow's cluster description, required by ``yt8m.train`` for multi-worker runs."""

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, stripped; None when unset or empty."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


def set_default(name: str, value: str, environ: MutableMapping[str, str] | None = None,
                force: bool = False) -> None:
    """Set a variable for native libraries read later in this process (and its children),
    unless the user set it already (or ``force``)."""
    target = os.environ if environ is None else environ
    if force:
        target[name] = value
    else:
        target.setdefault(name, value)


def models_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$AUDIO_ANALYSIS_MODELS_DIR``, else ``models/`` in the project (anchored here,
    never on the working directory)."""
    value = env_value(MODELS_DIR_ENV, environ)
    return Path(value).expanduser() if value else PROJECT_ROOT / "models"


def model_file(override: str | os.PathLike[str] | None, env: str, filename: str,
               environ: Mapping[str, str] | None = None) -> Path:
    """A model file as every command finds it: the flag, else ``$env``, else
    ``models_dir()/filename``."""
    if override:
        return Path(override).expanduser()
    value = env_value(env, environ)
    if value:
        return Path(value).expanduser()
    return models_dir(environ) / filename

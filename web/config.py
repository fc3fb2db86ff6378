"""The daemon's persisted configuration (what the ``/`` page edits): DeviceHive, MQTT and
Home Assistant, webhooks.

Stored as JSON in a per-user directory, ``$XDG_CONFIG_HOME/audio-analysis/config.json``
(``~/.config/...`` when unset); ``--config`` or ``AUDIO_ANALYSIS_CONFIG`` pick another file.
The file holds tokens, so it is written atomically (temporary file in the same directory,
fsync, rename) with mode 0600 in a 0700 directory, and it is re-read on every start.
Tokens may also come from the environment (``environment_tokens``), which, unlike flags,
``ps`` does not show. A server URL is only ever shown redacted (``public``).

Which secrets reach the file: those typed on the page, those given by flag (a page save
writes the configuration this run uses, flags included), and those already in the file;
never one that came from the environment (``AUDIO_ANALYSIS_DH_REFRESH_TOKEN``,
``AUDIO_ANALYSIS_DH_ACCESS_TOKEN``, ``AUDIO_ANALYSIS_MQTT_PASSWORD``,
``AUDIO_ANALYSIS_WEBHOOK_SECRET``): whoever keeps a secret in the environment (a service
manager's credential store) does not want a copy on disk. A page save keeps the file's
own value for such a field (``web.app.WebApp`` knows which fields came from there), unless
the page typed or cleared it.

On the first start, when no configuration file exists yet, the original daemon's
``dh_config.json`` (``{"url", "token", "device_id"}``, the token a refresh token), from the
working directory where the original kept it or from ``--legacy_config PATH``, is
imported into a new configuration file (``import_legacy_config``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from audio.errors import UsageError
from audio.sinks.devicehive import DeviceHiveSettings, redact_url
from audio.sinks.webhook import redact as redact_webhook
from vggish.environment import (
    CONFIG_ENV,
    DH_ACCESS_TOKEN_ENV,
    DH_REFRESH_TOKEN_ENV,
    XDG_CONFIG_HOME_ENV,
    env_value,
)

logger = logging.getLogger(__name__)

SECRET_FIELDS = ("refresh_token", "access_token", "password", "web_password_hash",
                 "mqtt_password", "webhook_secret")
BOOL_FIELDS = frozenset({"legacy_format", "ha_discovery", "mqtt_predictions"})
LIST_FIELDS = frozenset({"webhook_urls"})
LEGACY_CONFIG_NAME = "dh_config.json"
"""The original daemon's configuration file, in its working directory."""
MAX_CONFIG_BYTES = 64 * 1024


class ConfigError(UsageError, ValueError):
    """The configuration file cannot be read or written (message names the file)."""


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    configured = env_value(CONFIG_ENV, environ)
    if configured:
        return Path(configured).expanduser()
    base = env_value(XDG_CONFIG_HOME_ENV, environ) or str(Path.home() / ".config")
    return Path(base).expanduser() / "audio-analysis" / "config.json"


@dataclass(frozen=True)
class DaemonConfig:
    """DeviceHive connection settings, then MQTT and webhooks (``web.home`` turns them into
    the sinks' settings; an empty prefix or device id means the sink's default); secrets
    never appear in ``repr`` or ``public()``."""

    server_url: str = field(default="", repr=False)  # may hold credentials too
    device_id: str = ""
    refresh_token: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    login: str = ""
    password: str = field(default="", repr=False)
    notification_name: str = ""
    legacy_format: bool = False
    web_password_hash: str = field(default="", repr=False)  # daemon.py --set_password
    mqtt_url: str = ""  # mqtt[s]://[user@]host[:port]; its password is kept apart
    mqtt_password: str = field(default="", repr=False)
    mqtt_ca: str = ""
    mqtt_prefix: str = ""
    mqtt_device_id: str = ""
    ha_discovery: bool = True
    ha_discovery_prefix: str = ""
    mqtt_predictions: bool = True
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)  # may hold credentials
    webhook_secret: str = field(default="", repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str = "configuration") -> DaemonConfig:
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data or data[f.name] is None:
                continue
            value = data[f.name]
            if f.name in LIST_FIELDS:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{origin}: {f.name} must be a list of strings")
                values[f.name] = tuple(v.strip() for v in value if v.strip())
                continue
            expected = bool if f.name in BOOL_FIELDS else str
            if not isinstance(value, expected):
                raise ConfigError(f"{origin}: {f.name} must be a {expected.__name__}")
            values[f.name] = value.strip() if isinstance(value, str) else value
        return cls(**values)

    def merged(self, overrides: Mapping[str, Any]) -> DaemonConfig:
        """This config with the non-empty ``overrides`` (command-line flags) applied."""
        return replace(self, **{k: v for k, v in overrides.items()
                                if v is not None and v != "" and v != ()})

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What a page or an API may show: secrets reduced to set / not set, the URL
        redacted (``http://***@host/...?access_token=***``)."""
        data = asdict(self)
        data["server_url"] = redact_url(self.server_url) if self.server_url else ""
        data["mqtt_url"] = redact_password(self.mqtt_url)
        data["webhook_urls"] = [redact_webhook(u) for u in self.webhook_urls]
        for name in SECRET_FIELDS:
            data[name] = "set" if data[name] else "not set"
        return data

    def devicehive_settings(self) -> DeviceHiveSettings | None:
        """The sink's settings, or None when no server is configured. May raise
        ``audio.sinks.devicehive.DeviceHiveConfigError``."""
        if not self.server_url:
            return None
        return DeviceHiveSettings(
            url=self.server_url, device_id=self.device_id, refresh_token=self.refresh_token,
            access_token=self.access_token, login=self.login, password=self.password,
            notification_name=self.notification_name, legacy_format=self.legacy_format,
        ).validate()


def redact_password(url: str) -> str:
    """``url`` with the password of its userinfo masked (the page keeps it apart; a file
    edited by hand may still have one there)."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return "***" if "@" in url else url
    if not has_password:
        return url
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}").geturl()


def environment_tokens(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """DeviceHive tokens from ``AUDIO_ANALYSIS_DH_REFRESH_TOKEN`` and
    ``AUDIO_ANALYSIS_DH_ACCESS_TOKEN`` (None where unset): they override the file, flags
    override them."""
    return {"refresh_token": env_value(DH_REFRESH_TOKEN_ENV, environ),
            "access_token": env_value(DH_ACCESS_TOKEN_ENV, environ)}


def load_config(path: Path) -> DaemonConfig:
    """Read ``path``; a missing file is an empty configuration."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return DaemonConfig()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not valid JSON") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a JSON object expected")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("%s is readable by others (mode %o); it holds tokens", path, mode)
    return DaemonConfig.from_mapping(data, str(path))


def save_config(path: Path, config: DaemonConfig) -> None:
    """Write atomically with mode 0600: readers see the old or the new file, never half."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            json.dump(config.as_json(), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def legacy_to_config(data: Any, origin: str) -> DaemonConfig:
    """The original's ``{"url", "token", "device_id"}`` as a configuration."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a JSON object expected")
    values = {}
    for legacy, name in (("url", "server_url"), ("token", "refresh_token"),
                         ("device_id", "device_id")):
        value = data.get(legacy) or ""
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: {legacy} must be a string")
        values[name] = value.strip()
    return DaemonConfig(**values)


def import_legacy_config(config_path: Path, legacy_path: Path | None = None,
                         cwd: Path | None = None) -> DaemonConfig | None:
    """Import the original's ``dh_config.json`` into ``config_path`` when that does not
    exist yet; returns what was imported, or None (a configuration exists, or there is no
    legacy file). An explicit ``legacy_path`` that is missing or unreadable is an error."""
    if config_path.exists():
        if legacy_path is not None:
            logger.warning("%s exists: --legacy_config %s not imported", config_path,
                           legacy_path)
        return None
    source = legacy_path or (cwd or Path.cwd()) / LEGACY_CONFIG_NAME
    try:
        with open(source, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if legacy_path is not None:
            raise ConfigError(f"--legacy_config {source}: no such file") from None
        return None
    except OSError as error:
        raise ConfigError(f"cannot read {source}: {error.strerror}") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{source}: not valid JSON") from None
    config = legacy_to_config(data, str(source))
    save_config(config_path, config)
    logger.warning("imported the original daemon's configuration %s into %s", source,
                   config_path)
    return config

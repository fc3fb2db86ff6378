"""What the MQTT sink is told: the broker, the credentials, the topics, what to publish.

``MqttSettings`` is frozen and validated (``MqttConfigError``, one line); its ``repr``
shows no secret and ``public()`` is the view a status or a settings page may show (the
password never, the URL with its userinfo masked). The web page's form will build a new
one with :func:`mqtt_settings` from what the user typed, keeping the stored password when
the field is left empty, and hand it to ``MqttSink.reconfigure``.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from audio.errors import UsageError

DEFAULT_PREFIX = "audio-analysis"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
SCHEMES = {"mqtt": 1883, "mqtts": 8883}
MASK = "***"
_TOPIC_PART = re.compile(r"^[^#+\x00]+$")
_SLUG = re.compile(r"[^a-z0-9_-]+")


class MqttConfigError(UsageError, ValueError):
    """The MQTT settings cannot work (bad URL, topic prefix, device id, CA file)."""


def slug(text: str) -> str:
    """Lower case letters, digits, ``-`` and ``_`` (what topics and Home Assistant's object
    ids accept everywhere); other runs of characters become ``-``."""
    return _SLUG.sub("-", text.strip().lower()).strip("-")


def default_device_id() -> str:
    """The host name as a slug (``Kitchen-Pi.local`` -> ``kitchen-pi``)."""
    return slug(socket.gethostname().split(".")[0]) or "audio-analysis"


@dataclass(frozen=True)
class MqttSettings:
    """Where and what to publish (see the module docstring); build with :func:`mqtt_settings`."""

    host: str
    port: int
    tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    ca: str = ""
    prefix: str = DEFAULT_PREFIX
    device_id: str = ""
    discovery: bool = True
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
    predictions: bool = True
    keepalive: int = 30
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0
    connect_timeout: float = 3.0

    @property
    def base(self) -> str:
        """``<prefix>/<device_id>``: every topic of this device starts with it."""
        return f"{self.prefix}/{self.device_id}"

    @property
    def client_id(self) -> str:
        """Stable across restarts: the broker keeps this client's session (its
        subscriptions, and QoS 1 commands sent to it while it was away)."""
        return f"{DEFAULT_PREFIX}-{self.device_id}"

    @property
    def url(self) -> str:
        """The URL without the password (what status and the page show)."""
        user = f"{self.username}:{MASK}@" if self.password else (
            f"{self.username}@" if self.username else "")
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but the password (only whether there is one)."""
        return {"url": self.url, "host": self.host, "port": self.port, "tls": self.tls,
                "username": self.username, "password_set": bool(self.password),
                "ca": self.ca, "prefix": self.prefix, "device_id": self.device_id,
                "base": self.base, "discovery": self.discovery,
                "discovery_prefix": self.discovery_prefix, "predictions": self.predictions}

    def validate(self) -> MqttSettings:
        for name in ("prefix", "discovery_prefix"):
            value = getattr(self, name)
            if not value or not _TOPIC_PART.match(value) or value.startswith("/") \
                    or value.endswith("/"):
                raise MqttConfigError(f"MQTT {name} must be a topic without wildcards or "
                                      f"leading/trailing '/', got {value!r}")
        if not self.device_id or slug(self.device_id) != self.device_id:
            raise MqttConfigError("MQTT device id must be lower case letters, digits, '-' "
                                  f"and '_', got {self.device_id!r}")
        if not 0 < self.port < 65536:
            raise MqttConfigError(f"MQTT port must be in 1..65535, got {self.port}")
        if self.ca and not self.tls:
            raise MqttConfigError("--mqtt_ca needs an mqtts:// URL")
        if self.ca and not Path(self.ca).is_file():
            raise MqttConfigError(f"MQTT CA file not found: {self.ca}")
        return self


def mqtt_settings(url: str, *, password: str | None = None, ca: str | None = None,
                  **options: Any) -> MqttSettings:
    """Settings from ``mqtt[s]://[user[:password]@]host[:port]`` and the other options
    (``MqttSettings``' fields). ``password`` (``AUDIO_ANALYSIS_MQTT_PASSWORD``, or what the
    page kept) is used when the URL has none. Raises ``MqttConfigError``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise MqttConfigError("MQTT URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise MqttConfigError("MQTT URL must be mqtt://[user[:password]@]host[:port] or "
                              "mqtts://...")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttConfigError("MQTT URL takes no path or query (topics are --mqtt_prefix)")
    options.setdefault("device_id", default_device_id())
    settings = MqttSettings(
        host=parts.hostname, port=port or SCHEMES[scheme], tls=scheme == "mqtts",
        username=unquote(parts.username or ""),
        password=unquote(parts.password) if parts.password else (password or ""),
        ca=str(Path(ca).expanduser()) if ca else "", **options)
    return settings.validate()


def with_password(settings: MqttSettings, password: str) -> MqttSettings:
    """The same settings with another password (the page's "keep it" is the old one)."""
    return replace(settings, password=password).validate()

"""What the DeviceHive sink is told: server, device, credentials, queue and timing.

Secrets never reach a log: they are excluded from ``repr``, and URLs are shown without
userinfo or query (``redact_url``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from audio.errors import UsageError

DEFAULT_NOTIFICATION_NAME = "audio_analysis"
DEFAULT_QUEUE_SIZE = 1000
SCHEMES = ("ws", "wss", "http", "https")


class DeviceHiveConfigError(UsageError, ValueError):
    """The DeviceHive settings cannot work (bad URL, no device id, no credentials)."""


@dataclass(frozen=True)
class DeviceHiveSettings:
    """Where and how to send. Secrets are excluded from ``repr`` so they never reach logs."""

    url: str
    device_id: str
    refresh_token: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    login: str = ""
    password: str = field(default="", repr=False)
    notification_name: str = ""  # "" and 0: the sink's defaults
    legacy_format: bool = False
    queue_size: int = 0
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def validate(self) -> DeviceHiveSettings:
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise DeviceHiveConfigError("DeviceHive URL is malformed") from None
        if parts.scheme.lower() not in SCHEMES or not parts.hostname:
            raise DeviceHiveConfigError(
                "DeviceHive URL must start with ws://, wss://, http:// or https://"
            )
        if not self.device_id or not all(c.isascii() and (c.isalnum() or c == "-")
                                         for c in self.device_id):
            raise DeviceHiveConfigError("device id must be letters, digits and dashes")
        if not (self.refresh_token or self.access_token or (self.login and self.password)):
            raise DeviceHiveConfigError(
                "DeviceHive needs a refresh token, an access token, or login and password"
            )
        if self.queue_size < 0:
            raise DeviceHiveConfigError("queue size must be positive")
        return self

    @property
    def websocket(self) -> bool:
        return urlsplit(self.url).scheme.lower().startswith("ws")


def redact_url(url: str) -> str:
    """The URL without userinfo or query (either may carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"

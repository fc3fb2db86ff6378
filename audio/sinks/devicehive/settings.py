"""What the DeviceHive sink is told: server, device, credentials, queue and timing.

Secrets never reach a log: they are excluded from ``repr``, and a URL is shown with its
userinfo and query values masked (``redact_url``, the one function every place that shows
a URL uses: status, logs, the configuration page).
"""

from __future__ import annotations

import re
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
    """Where and how to send. ``repr`` shows no secret and a redacted URL, so that no log
    ever holds one."""

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

    def __repr__(self) -> str:  # the URL may carry credentials too
        return (f"DeviceHiveSettings(url={redact_url(self.url)!r}, "
                f"device_id={self.device_id!r}, login={self.login!r})")

    @property
    def websocket(self) -> bool:
        return urlsplit(self.url).scheme.lower().startswith("ws")


MASK = "***"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL as it may be shown: userinfo and every query value (either may carry
    credentials) masked, the rest kept so it can still be recognised.

    ``http://user:pass@host:8080/api?access_token=abc`` -> ``http://***@host:8080/api?access_token=***``.
    Anything that does not parse as a URL is masked whole.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    if parts.query:
        out += "?" + "&".join(f"{item.partition('=')[0]}={MASK}" if "=" in item else MASK
                              for item in parts.query.split("&"))
    if parts.fragment:
        out += f"#{MASK}"
    return out


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (error messages may quote one)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def is_redacted_of(shown: str, url: str) -> bool:
    """Is ``shown`` the redacted form of ``url`` that hides something? (A form that
    displayed it sends it back unchanged: the real URL is meant.)"""
    return bool(url) and shown != url and shown == redact_url(url)

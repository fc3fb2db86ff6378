"""The web interface's state: event store, status sources, configuration, templates.

The request handlers (``web.handler``) read and change the daemon only through a
``WebApp``; it renders the pages, answers the status, and validates, saves and applies
a new DeviceHive configuration.
"""

from __future__ import annotations

import html
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from string import Template
from typing import Any

from audio.sinks.devicehive import DeviceHiveConfigError, DeviceHiveSettings, is_redacted_of
from web.config import ConfigError, DaemonConfig, save_config
from web.security import LOOPBACK_HOSTS
from web.store import EventStore

# The name the logger had before web/server.py was split: the daemon's log lines stay.
logger = logging.getLogger("web.server")

WEB_DIR = Path(__file__).resolve().parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
FORM_FIELDS = ("server_url", "device_id", "refresh_token", "access_token")


class WebApp:
    """State shared by the request handlers: the event store, status sources, config."""

    def __init__(self, store: EventStore, *, config: DaemonConfig, config_path: Path | None,
                 on_config: Callable[[DaemonConfig], None] | None = None,
                 status_sources: Mapping[str, Callable[[], Any]] | None = None,
                 allowed_hosts: set[str] | frozenset[str] = LOOPBACK_HOSTS) -> None:
        self.store = store
        self.config = config
        self.config_path = config_path
        self.on_config = on_config
        self.status_sources = dict(status_sources or {})
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.csrf_token = secrets.token_urlsafe(32)
        self.started = time.time()
        self.stopping = threading.Event()
        self.requests = 0
        self.client_errors = 0
        self.server_errors = 0
        self.streams = 0
        self._lock = threading.Lock()
        self._templates = {name: Template((WEB_DIR / "templates" / f"{name}.html")
                                          .read_text(encoding="utf-8"))
                           for name in ("base", "config", "events", "error")}
        self._static = {p.name: p.read_bytes() for p in (WEB_DIR / "static").iterdir()
                        if p.suffix in STATIC_TYPES}

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uptime": round(time.time() - self.started, 3),
                               "events": {"total": self.store.total,
                                          "last_id": self.store.last_id},
                               "sounds": {"total": self.store.sounds_total},
                               "web": {"requests": self.requests,
                                       "client_errors": self.client_errors,
                                       "server_errors": self.server_errors,
                                       "streams": self.streams},
                               "config": self.config.public()}
        for name, source in self.status_sources.items():
            try:
                out[name] = source()
            except Exception as error:  # a broken source must not break the page
                out[name] = {"error": type(error).__name__}
        out.setdefault("devicehive", {"state": "disabled", "sent": 0, "queued": 0,
                                      "dropped": 0, "last_error": None})
        return out

    def apply_config(self, form: Mapping[str, str]) -> DaemonConfig:
        """Validate the form, save it, reconnect. Raises ValueError with a user message."""
        current = self.config
        values = {name: form.get(name, "").strip() for name in ("server_url", "device_id")}
        if is_redacted_of(values["server_url"], current.server_url):
            values["server_url"] = current.server_url  # the form showed it redacted
        elif "***" in values["server_url"]:
            raise ValueError("the server URL has *** where credentials were hidden: "
                             "type the whole URL again")
        for secret in ("refresh_token", "access_token"):
            new = form.get(secret, "").strip()
            if form.get(f"clear_{secret}"):
                values[secret] = ""
            else:  # an empty secret field means "keep": the page never shows the value
                values[secret] = new or getattr(current, secret)
        if any(len(v) > 4096 for v in values.values()):
            raise ValueError("a value is too long")
        config = DaemonConfig(**{**current.as_json(), **values})
        if config.server_url:
            try:
                config.devicehive_settings()
            except DeviceHiveConfigError as error:
                raise ValueError(str(error)) from None
        elif config.device_id and not _device_id_ok(config.device_id):
            raise ValueError("device id must be letters, digits and dashes")
        if self.config_path is not None:
            try:
                save_config(self.config_path, config)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        self.config = config
        if self.on_config is not None:
            self.on_config(config)
        logger.info("configuration saved; DeviceHive %s",
                    "reconnecting" if config.server_url else "disabled")
        return config

    def render(self, name: str, title: str, **values: str) -> bytes:
        """Fill a template; every value is escaped here unless its key ends in ``_html``."""
        safe = {k: (v if k.endswith("_html") else html.escape(str(v), quote=True))
                for k, v in values.items()}
        body = self._templates[name].substitute(safe)
        page = self._templates["base"].substitute(title=html.escape(title), body_html=body,
                                                  csrf=html.escape(self.csrf_token))
        return page.encode("utf-8")


def _device_id_ok(device_id: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c == "-") for c in device_id)


def settings_or_none(config: DaemonConfig) -> DeviceHiveSettings | None:
    """For callers that prefer "not configured" to an exception (the page shows the error)."""
    try:
        return config.devicehive_settings()
    except DeviceHiveConfigError:
        return None

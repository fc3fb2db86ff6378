"""The web interface's state: event history, status sources, configuration, templates,
sign-in.

The request handlers (``web.routes``) read and change the daemon only through a
``WebApp``; it renders the pages (Jinja2, autoescaping on: every value is escaped unless a
template says otherwise, and none does), answers the status, and validates, saves and
applies a new DeviceHive configuration, new MQTT and webhook settings (``web.home``) and
the detection switch. History comes from the daemon's durable event store when one is
given (``audio.store.Store``), else from the in-memory ``EventStore``.

Saving writes the configuration this run uses, except the secrets that came from the
environment (``from_env``): for those the file keeps what it had (``stored``) until the
page types or clears them (``web.config``).
"""

from __future__ import annotations

import html
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from audio.sinks.devicehive import DeviceHiveConfigError, DeviceHiveSettings, is_redacted_of
from audio.store import Store
from web.auth import Auth
from web.config import ConfigError, DaemonConfig, save_config
from web.history import History, history_for
from web.home import home_form, reconfigure
from web.security import LOOPBACK_HOSTS
from web.store import EventStore

# The name the logger had before web/server.py was split: the daemon's log lines stay.
logger = logging.getLogger("web.server")

WEB_DIR = Path(__file__).resolve().parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
FORM_FIELDS = ("server_url", "device_id", "refresh_token", "access_token")
LEGACY_FORM_FIELDS = {"url": "server_url", "token": "refresh_token", "device_id": "device_id"}
"""The original's configuration form (POST /) and what each field is here."""
CACHE_ENTRIES = 256


class WebApp:
    """State shared by the request handlers: history, status sources, config, sign-in.

    ``store``: the daemon's ``audio.store.Store`` (history across restarts) or an
    in-memory ``EventStore``; ``auth``: None on a loopback bind (or with ``--no_auth``),
    else what a non-loopback bind checks (``web.auth``). ``config`` is what this run uses
    (the file, the environment, the flags); ``stored`` what the file holds (default:
    ``config``) and ``from_env`` the fields whose value came from the environment.
    ``home``: the daemon's ``audio.sinks.factory.HomeSinks`` (MQTT, webhooks, detection
    switch), None without; ``home_errors``: why a saved setting could not be used at the
    start (``{"mqtt": message}``), shown in the status until the page saves new settings.
    """

    def __init__(self, store: EventStore | Store | History, *, config: DaemonConfig,
                 config_path: Path | None,
                 on_config: Callable[[DaemonConfig], None] | None = None,
                 status_sources: Mapping[str, Callable[[], Any]] | None = None,
                 allowed_hosts: set[str] | frozenset[str] = LOOPBACK_HOSTS,
                 auth: Auth | None = None, home: Any = None,
                 stored: DaemonConfig | None = None, from_env: Iterable[str] = (),
                 home_errors: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.history = history_for(store)
        self.config = config
        self.stored = stored if stored is not None else config
        self.from_env = set(from_env)
        self.home = home
        self.home_errors = dict(home_errors or {})
        self.config_path = config_path
        self.on_config = on_config
        self.auth = auth
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
        self._config_lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._jinja = Environment(loader=FileSystemLoader(WEB_DIR / "templates"),
                                  autoescape=select_autoescape(default=True,
                                                               default_for_string=True),
                                  auto_reload=False, finalize=_escape)
        self._static = {p.name: p.read_bytes() for p in (WEB_DIR / "static").iterdir()
                        if p.suffix in STATIC_TYPES}

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uptime": round(time.time() - self.started, 3),
                               "events": self.history.counts(),
                               "sounds": {"total": self.history.sounds_total()},
                               "web": {"requests": self.requests,
                                       "client_errors": self.client_errors,
                                       "server_errors": self.server_errors,
                                       "streams": self.streams,
                                       "auth": self.auth is not None},
                               "config": self.config.public()}
        for name, source in self.status_sources.items():
            try:
                out[name] = source()
            except Exception as error:  # a broken source must not break the page
                out[name] = {"error": type(error).__name__}
        out.setdefault("devicehive", {"state": "disabled", "sent": 0, "queued": 0,
                                      "dropped": 0, "last_error": None})
        for name, message in self.home_errors.items():
            if isinstance(out.get(name), dict) and out[name].get("state") == "disabled":
                out[name]["last_error"] = message
        if self.home is not None:
            out["detection"] = {"on": self.home.detection.on}
        return out

    def legacy_status(self) -> dict[str, str]:
        """``/status/`` as the original answered it: ``status`` connected, connecting or
        disconnected, and ``error_message`` (redacted like everything shown here)."""
        dh = self.status()["devicehive"]
        state = dh.get("state")
        return {"status": state if state in ("connected", "connecting") else "disconnected",
                "error_message": dh.get("last_error") or ""}

    def events_json(self, since: int, before: int | None, limit: int) -> bytes:
        """``/api/events``'s body, cached until the history's last id moves (the store's
        watcher says so without a query), so polling clients cost a dictionary lookup."""
        key = (self.history.last_id(), since, -1 if before is None else before, limit)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        events = self.history.newest(since, before, limit)
        next_before = events[-1]["id"] if len(events) == limit else None
        body = json.dumps({"events": events, "last_id": key[0],
                           "next_before": next_before}).encode()
        with self._lock:
            self._cache[key] = body
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return body

    def apply(self, kind: str, form: Mapping[str, str]) -> DaemonConfig:
        """One form at a time (``devicehive``, ``legacy``, ``home``): each reads the
        configuration, changes it and saves it."""
        appliers = {"devicehive": self.apply_config, "legacy": self.apply_legacy_form,
                    "home": self.apply_home}
        with self._config_lock:
            return appliers[kind](form)

    def apply_config(self, form: Mapping[str, str]) -> DaemonConfig:
        """Validate the form, save it, reconnect. Raises ValueError with a user message."""
        current = self.config
        values: dict[str, Any] = {name: form.get(name, "").strip()
                                  for name in ("server_url", "device_id")}
        if is_redacted_of(values["server_url"], current.server_url):
            values["server_url"] = current.server_url  # the form showed it redacted
        elif "***" in values["server_url"]:
            raise ValueError("the server URL has *** where credentials were hidden: "
                             "type the whole URL again")
        touched = set()
        for secret in ("refresh_token", "access_token"):
            new = form.get(secret, "").strip()
            if form.get(f"clear_{secret}") or new:
                values[secret] = new if new and not form.get(f"clear_{secret}") else ""
                touched.add(secret)
            # else: an empty secret field means "keep": the page never shows the value
        if any(len(v) > 4096 for v in values.values()):
            raise ValueError("a value is too long")
        config = replace(current, **values)
        if config.server_url:
            try:
                config.devicehive_settings()
            except DeviceHiveConfigError as error:
                raise ValueError(str(error)) from None
        elif config.device_id and not _device_id_ok(config.device_id):
            raise ValueError("device id must be letters, digits and dashes")
        self._commit(config, touched)
        if self.on_config is not None:
            self.on_config(config)
        logger.info("configuration saved; DeviceHive %s",
                    "reconnecting" if config.server_url else "disabled")
        return config

    def apply_home(self, form: Mapping[str, str]) -> DaemonConfig:
        """The MQTT and webhook form: validate (``web.home.HomeFormError``, a ValueError
        with one message per bad field), save, hand the sinks what changed."""
        values, touched = home_form(form, self.config)
        config = replace(self.config, **values)
        self._commit(config, touched)
        if self.home is not None:
            reconfigure(self.home, config)
        self.home_errors.clear()
        logger.info("MQTT and webhook settings saved; MQTT %s, %d webhook URL(s)",
                    "on" if config.mqtt_url else "off", len(config.webhook_urls))
        return config

    def set_detection(self, on: bool) -> bool:
        """The page's switch (the same one MQTT's ``detect/set`` turns)."""
        if self.home is None:
            raise ValueError("no detection switch in this process")
        self.home.detection.set(on, by="web page")
        return self.home.detection.on

    def _commit(self, config: DaemonConfig, touched: set[str]) -> None:
        """Save ``config`` (but the secrets still from the environment: the file keeps its
        own for them), then make it this run's. Raises ValueError when it cannot be saved."""
        self.from_env -= touched
        saved = replace(config, **{name: getattr(self.stored, name) for name in self.from_env})
        if self.config_path is not None:
            try:
                save_config(self.config_path, saved)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        self.stored = saved
        self.config = config

    def apply_legacy_form(self, form: Mapping[str, str]) -> DaemonConfig:
        """The original's form (``url``, ``token``, ``device_id``; an empty token keeps
        the current one, as on the page)."""
        values = {name: form.get(legacy, "") for legacy, name in LEGACY_FORM_FIELDS.items()}
        return self.apply_config(values)

    def render(self, name: str, title: str, signed_in: bool = False, **values: Any) -> bytes:
        """Render ``name``.html; Jinja2 escapes every value."""
        template = self._jinja.get_template(f"{name}.html")
        values.setdefault("csrf", self.csrf_token)
        return template.render(title=title, signed_in=signed_in, **values).encode("utf-8")

    def static(self, name: str) -> bytes | None:
        return self._static.get(name)

    def close(self) -> None:
        self.stopping.set()
        self.history.close()


def _escape(value: Any) -> Markup:
    """Jinja2's autoescaping, with the standard library's entities (``&quot;``, as the
    pages always had) instead of markupsafe's (``&#34;``); Markup passes as it is."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _device_id_ok(device_id: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c == "-") for c in device_id)


def settings_or_none(config: DaemonConfig) -> DeviceHiveSettings | None:
    """For callers that prefer "not configured" to an exception (the page shows the error)."""
    try:
        return config.devicehive_settings()
    except DeviceHiveConfigError:
        return None

"""MQTT, Home Assistant and webhook settings between the configuration file, the flags,
the page's form and the running sinks (``audio.sinks.factory.HomeSinks``).

The configuration (``web.config.DaemonConfig``) keeps the broker URL without its
password (``mqtt_password`` apart: the URL may then be shown as it is), the webhook URLs
as typed (shown redacted: they may carry credentials), and an empty prefix or device id
for "the default". ``mqtt_of`` and ``webhooks_of`` turn it into the sinks' settings with
the sinks' own validation; ``home_form`` reads the page's form into new values, checking
each field on its own so that every bad field gets one message of its own
(``HomeFormError.errors``); ``reconfigure`` hands the sinks what changed, without a
restart. Flags override the file for the run (``flag_overrides``), as for DeviceHive;
``environment_secrets`` are the secrets the environment gives, which are used but never
written to the file (``web.config``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, urlsplit

from audio.sinks.mqtt import (
    DEFAULT_DISCOVERY_PREFIX,
    DEFAULT_PREFIX,
    MqttConfigError,
    MqttSettings,
    default_device_id,
    mqtt_settings,
)
from audio.sinks.webhook import WebhookConfigError, WebhookSettings, redact, webhook_settings
from vggish.environment import MQTT_PASSWORD_ENV, WEBHOOK_SECRET_ENV, env_value
from web.config import DaemonConfig, redact_password

HOME_SECRETS = ("mqtt_password", "webhook_secret")
TEXT_FIELDS = ("mqtt_url", "mqtt_ca", "mqtt_prefix", "mqtt_device_id", "ha_discovery_prefix")
MAX_VALUE = 4096
MAX_WEBHOOKS = 16
_PROBE = {"device_id": "probe"}
"""A valid device id, for checking one other MQTT field on its own."""
HIDDEN = "***"


class HomeFormError(ValueError):
    """Bad fields of the MQTT and webhook form: ``errors`` maps each to one message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


def split_password(url: str) -> tuple[str, str]:
    """(``url`` without the password of its userinfo, that password or "")."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, ""  # malformed: the validation says so
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url, ""
    user, _, password = userinfo.partition(":")
    return parts._replace(netloc=f"{user}@{hostport}").geturl(), unquote(password)


def device_id_of(config: DaemonConfig) -> str:
    return config.mqtt_device_id or default_device_id()


def mqtt_of(config: DaemonConfig) -> MqttSettings | None:
    """The MQTT sink's settings, None when no broker is set; raises ``MqttConfigError``."""
    if not config.mqtt_url:
        return None
    return mqtt_settings(
        config.mqtt_url, password=config.mqtt_password or None, ca=config.mqtt_ca or None,
        prefix=config.mqtt_prefix or DEFAULT_PREFIX, device_id=device_id_of(config),
        discovery=config.ha_discovery,
        discovery_prefix=config.ha_discovery_prefix or DEFAULT_DISCOVERY_PREFIX,
        predictions=config.mqtt_predictions)


def webhooks_of(config: DaemonConfig) -> WebhookSettings | None:
    """The webhooks' settings, None without URLs; raises ``WebhookConfigError``."""
    if not config.webhook_urls:
        return None
    return webhook_settings(config.webhook_urls, config.webhook_secret, device_id_of(config))


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """This run's flags as configuration values (None: not given). A password in
    ``--mqtt_url`` becomes ``mqtt_password``."""
    url, password = split_password(args.mqtt_url) if args.mqtt_url else (None, "")
    return {"mqtt_url": url, "mqtt_password": password or None, "mqtt_ca": args.mqtt_ca,
            "mqtt_prefix": args.mqtt_prefix, "mqtt_device_id": args.mqtt_device_id,
            "ha_discovery": False if args.no_ha_discovery else None,
            "ha_discovery_prefix": args.ha_discovery_prefix,
            "mqtt_predictions": False if args.mqtt_no_predictions else None,
            "webhook_urls": tuple(args.webhook) or None,
            "webhook_secret": args.webhook_secret}


def environment_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """``AUDIO_ANALYSIS_MQTT_PASSWORD`` and ``AUDIO_ANALYSIS_WEBHOOK_SECRET`` (None where
    unset): they override the file, flags override them."""
    return {"mqtt_password": env_value(MQTT_PASSWORD_ENV, environ),
            "webhook_secret": env_value(WEBHOOK_SECRET_ENV, environ)}


# ---- the page's form -------------------------------------------------------------------
def checked(form: Mapping[str, str], name: str) -> bool:
    """A checkbox: sent (``1``) when ticked, absent when not; a script's ``0``, ``false`` or
    ``off`` also mean no."""
    return form.get(name, "").strip().lower() not in ("", "0", "false", "off")


def home_form(form: Mapping[str, str], current: DaemonConfig
              ) -> tuple[dict[str, Any], set[str]]:
    """The new values from the form, and the secrets it typed or cleared; raises
    ``HomeFormError`` with one message per bad field. An empty secret field keeps the
    current secret; a ``clear_<name>`` box clears it."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {name: form.get(name, "").strip() for name in TEXT_FIELDS}
    values["ha_discovery"] = checked(form, "ha_discovery")
    values["mqtt_predictions"] = checked(form, "mqtt_predictions")
    for name, value in values.items():
        if isinstance(value, str) and len(value) > MAX_VALUE:
            errors[name] = f"{name.replace('_', ' ')} is too long"
    touched: set[str] = set()
    for name in HOME_SECRETS:
        typed = form.get(name, "")
        if len(typed) > MAX_VALUE:
            errors[name] = f"{name.replace('_', ' ')} is too long"
        elif form.get(f"clear_{name}") or typed:
            values[name] = "" if form.get(f"clear_{name}") else typed
            touched.add(name)
    _url_value(values, current, errors, touched)
    _check_mqtt_fields(values, errors)
    values["webhook_urls"] = _webhook_urls(form.get("webhook_urls", ""), current, errors)
    if not errors:
        _check_whole(replace(current, **values), errors)
    if errors:
        raise HomeFormError(errors)
    return values, touched


def _url_value(values: dict[str, Any], current: DaemonConfig, errors: dict[str, str],
               touched: set[str]) -> None:
    """The broker URL: its password moves to ``mqtt_password``; the URL as the page showed
    it (a hand-edited file's password masked) stands for the current one."""
    url = values["mqtt_url"]
    if current.mqtt_url and url == redact_password(current.mqtt_url) != current.mqtt_url:
        values["mqtt_url"] = current.mqtt_url
        return
    if HIDDEN in url:
        errors["mqtt_url"] = "the MQTT URL has *** where the password was hidden: type " \
                             "the URL again (the password goes in its own field)"
        return
    values["mqtt_url"], password = split_password(url)
    if password and "mqtt_password" not in touched:
        values["mqtt_password"] = password
        touched.add("mqtt_password")


def _check_mqtt_fields(values: dict[str, Any], errors: dict[str, str]) -> None:
    """Each MQTT field that has a value, checked alone by the sink's own validation."""
    url = values["mqtt_url"]
    checks = {"mqtt_url": {"url": url},
              "mqtt_prefix": {"prefix": values["mqtt_prefix"]},
              "ha_discovery_prefix": {"discovery_prefix": values["ha_discovery_prefix"]},
              "mqtt_device_id": {"device_id": values["mqtt_device_id"]},
              "mqtt_ca": {"url": "mqtts://localhost", "ca": values["mqtt_ca"]}}
    for name, options in checks.items():
        if name in errors or not values[name]:
            continue
        options = {**_PROBE, **options}
        try:
            mqtt_settings(options.pop("url", "mqtt://localhost"), **options)
        except MqttConfigError as error:
            errors[name] = str(error)
    if values["mqtt_ca"] and "mqtt_ca" not in errors and url and "mqtt_url" not in errors \
            and not url.lower().startswith("mqtts://"):
        errors["mqtt_ca"] = "a CA file is for an mqtts:// (TLS) URL"


def _webhook_urls(text: str, current: DaemonConfig, errors: dict[str, str]
                  ) -> tuple[str, ...]:
    """One URL a line; a line the page showed redacted stands for the current URL."""
    shown = {redact(u): u for u in current.webhook_urls}
    urls = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line in shown and shown[line] != line:
            urls.append(shown[line])
        elif HIDDEN in line:
            errors["webhook_urls"] = "a webhook URL has *** where credentials were " \
                                     "hidden: type that URL again"
            return ()
        else:
            urls.append(line)
    if len(urls) > MAX_WEBHOOKS:
        errors["webhook_urls"] = f"at most {MAX_WEBHOOKS} webhook URLs"
    elif any(len(u) > MAX_VALUE for u in urls):
        errors["webhook_urls"] = "a webhook URL is too long"
    else:
        try:
            webhook_settings(urls, None, "probe")
        except WebhookConfigError as error:
            errors["webhook_urls"] = str(error)
    return tuple(urls)


def _check_whole(config: DaemonConfig, errors: dict[str, str]) -> None:
    """What only the fields together can say (each was fine alone)."""
    try:
        mqtt_of(config)
    except MqttConfigError as error:
        errors["mqtt_url"] = str(error)
    try:
        webhooks_of(config)
    except WebhookConfigError as error:
        errors["webhook_urls"] = str(error)


def form_fields(config: DaemonConfig, form: Mapping[str, str] | None = None
                ) -> dict[str, Any]:
    """What the page's MQTT and webhook fields show: the configuration (URLs without
    secrets), or what was posted when the form comes back with errors; secrets only as
    set / not set."""
    shown: dict[str, Any] = {
        "mqtt_url": redact_password(config.mqtt_url), "mqtt_ca": config.mqtt_ca,
        "mqtt_prefix": config.mqtt_prefix, "mqtt_device_id": config.mqtt_device_id,
        "ha_discovery_prefix": config.ha_discovery_prefix,
        "ha_discovery": config.ha_discovery, "mqtt_predictions": config.mqtt_predictions,
        "webhook_urls": "\n".join(redact(u) for u in config.webhook_urls)}
    if form is not None:
        shown.update({k: form.get(k, "") for k in (*TEXT_FIELDS, "webhook_urls")})
        shown["mqtt_url"] = split_password(shown["mqtt_url"])[0]  # never echo a password
        shown.update(ha_discovery=checked(form, "ha_discovery"),
                     mqtt_predictions=checked(form, "mqtt_predictions"))
    shown.update({f"{name}_state": "set" if getattr(config, name) else "not set"
                  for name in HOME_SECRETS})
    shown.update(default_prefix=DEFAULT_PREFIX, default_discovery_prefix=
                 DEFAULT_DISCOVERY_PREFIX, default_device_id=default_device_id())
    return shown


# ---- the running sinks -----------------------------------------------------------------
def reconfigure(home: Any, config: DaemonConfig) -> None:
    """Hand ``home`` (``HomeSinks``) the settings of ``config`` that differ from what its
    sinks run with (an unchanged broker is not reconnected; webhooks disabled by a 410 are
    built anew, so that saving the form re-enables them). Raises the settings' errors,
    which ``home_form`` has excluded already."""
    mqtt = mqtt_of(config)
    if getattr(home.mqtt, "settings", None) != mqtt:
        home.reconfigure_mqtt(mqtt)
    hooks = webhooks_of(config)
    if getattr(home.webhooks, "settings", None) != hooks or getattr(home.webhooks,
                                                                  "disabled", False):
        home.reconfigure_webhooks(hooks)  # a URL that answered 410 Gone: enabled again


def home_status(mqtt: Any) -> dict[str, Any]:
    """The MQTT part of ``/api/status`` as the page's first render shows it (the page's
    script then follows ``/api/status``)."""
    mqtt = mqtt if isinstance(mqtt, dict) else {}
    return {"state": str(mqtt.get("state") or "disabled"),
            "last_error": str(mqtt.get("last_error") or ""),
            "url": str(mqtt.get("url") or ""),
            **{k: mqtt.get(k) or 0 for k in ("sent", "pending", "duplicates")}}


# ---- the sounds listened to ------------------------------------------------------------
def listened_sounds(sounds: Any) -> list[dict[str, Any]]:
    """The sounds the loop follows (``audio.sounds.Sound``) as ``/api/status`` shows them:
    name, classes, and the effective thresholds (after the groups file and the
    classifier's calibrated per-class thresholds): an event starts at ``threshold`` and
    ends below ``off``."""
    return [{"name": s.name, "classes": list(s.classes),
             "threshold": round(float(s.thresholds.on), 4),
             "off": round(float(s.thresholds.off), 4)} for s in sounds or ()]


def listening_view(listening: Any) -> dict[str, Any]:
    """What the page's first section shows of ``/api/status``'s ``listening``: the sounds
    followed, or one line saying why there are none (models loading, none asked for)."""
    listening = listening if isinstance(listening, dict) else {}
    sounds = listening.get("sounds")
    if listening and sounds is None:  # known once the models are loaded
        return {"sounds": [], "message": "Loading the models; the sounds follow."}
    if not sounds:
        return {"sounds": [], "message": "No sound is followed: start the daemon with "
                                         "--listen (e.g. --listen dog,siren) or --events."}
    return {"sounds": [{**s, "classes": ", ".join(s.get("classes") or ())} for s in sounds],
            "message": ""}

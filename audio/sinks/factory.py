"""The daemon's home automation sinks: their flags, and building them from the flags.

``daemon.py`` adds the flags with :func:`add_home_arguments` and builds a
:class:`HomeSinks` with :func:`build_home_sinks` once the event store is open; the group
is one loop sink (it hands every window and record to the MQTT sink and the webhooks),
owns the detection switch the loop reads (``audio.control``), and gives the web layer one
status source per sink (``status_sources()``: ``mqtt``, ``webhooks``). The settings are
frozen objects with a ``public()`` view (no secret), which is what a settings page shows
and rebuilds (``audio.sinks.mqtt.mqtt_settings``, ``audio.sinks.webhook.webhook_settings``).

Stopping: the group closes its sinks within one shared grace period (``CLOSE_GRACE``):
whatever the brokers and receivers do, a SIGTERM still ends the daemon within seconds;
what is not delivered stays in the event store's outbox and goes out after the next start.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from audio.control import DetectionSwitch
from audio.events import Event, SoundEvent
from vggish.environment import MQTT_PASSWORD_ENV, WEBHOOK_SECRET_ENV, env_value

logger = logging.getLogger("daemon")

CLOSE_GRACE = 1.5
"""Seconds the home automation sinks together get to deliver what is pending at a stop."""


def add_home_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mqtt_*``, ``--ha_discovery_prefix``, ``--no_ha_discovery``, ``--webhook*``."""
    from audio.sinks.mqtt import DEFAULT_DISCOVERY_PREFIX, DEFAULT_PREFIX

    # No defaults here (None: not given): the flags override the saved configuration
    # (the web page's) only where they are given.
    group = parser.add_argument_group("MQTT and Home Assistant (flags override the saved "
                                      "configuration for this run)")
    group.add_argument("--mqtt_url", metavar="URL",
                       help="publish to this broker: mqtt://[user[:password]@]host[:port], "
                            "or mqtts:// for TLS (password also from env "
                            f"{MQTT_PASSWORD_ENV})")
    group.add_argument("--mqtt_ca", metavar="FILE",
                       help="with mqtts://: the CA certificate(s) that signed the broker's "
                            "(default: the system's)")
    group.add_argument("--mqtt_prefix", metavar="TOPIC",
                       help=f"topic prefix (default {DEFAULT_PREFIX}): topics are "
                            f"<prefix>/<device_id>/...")
    group.add_argument("--mqtt_device_id", metavar="ID",
                       help="device id in topics and Home Assistant (default: the host "
                            "name as a slug)")
    group.add_argument("--ha_discovery_prefix", metavar="TOPIC", help="Home Assistant's discovery prefix (default "
                                             f"{DEFAULT_DISCOVERY_PREFIX})")
    group.add_argument("--no_ha_discovery", action="store_true",
                       help="do not publish Home Assistant discovery")
    group.add_argument("--mqtt_no_predictions", action="store_true",
                       help="do not publish each window's predictions")
    hooks = parser.add_argument_group("webhooks (flags override the saved configuration)")
    hooks.add_argument("--webhook", action="append", default=[], metavar="URL",
                       help="POST each sound event start and end as JSON here; repeatable")
    hooks.add_argument("--webhook_secret", metavar="SECRET",
                       help="sign the bodies (X-Hub-Signature-256); or env "
                            f"{WEBHOOK_SECRET_ENV}, which ps does not show")


class HomeSinks:
    """The MQTT sink and the webhooks as one loop sink (see the module docstring).

    ``reconfigure_mqtt`` / ``reconfigure_webhooks`` (the settings page, from any thread)
    replace a sink by one built on the new settings, or remove it (None); the loop keeps
    handing this group its windows and records. A replaced sink keeps its outbox cursor
    (same consumer name: nothing committed is skipped or sent twice); a removed one drops
    its consumer, so that it holds back no pruning, and starts from then when it comes back.
    """

    def __init__(self, store: Any, *, model: str = "sound classifier") -> None:
        self.store = store
        self.model = model
        self.detection = DetectionSwitch()
        self.mqtt: Any = None
        self.webhooks: Any = None
        self._sounds: list[str] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def sinks(self) -> list[Any]:
        return [s for s in (self.mqtt, self.webhooks) if s is not None]

    def status_sources(self) -> dict[str, Callable[[], Any]]:
        """``{name: status()}`` for ``/api/status``: ``mqtt`` and ``webhooks`` (each
        ``{"state": "disabled"}`` when not configured)."""
        return {"mqtt": lambda: self._status(self.mqtt),
                "webhooks": lambda: self._status(self.webhooks)}

    @staticmethod
    def _status(sink: Any) -> dict[str, Any]:
        return {"state": "disabled"} if sink is None else sink.status()

    def reconfigure_mqtt(self, settings: Any) -> None:
        """New ``MqttSettings`` (or None: off). The old client says ``offline`` and goes."""
        from audio.sinks.mqtt import CONSUMER, MqttSink

        with self._lock:  # the old client goes first: the new one has the same client id
            old, self.mqtt = self.mqtt, None
            if old is not None:
                old.close(timeout=0)
            if settings is None:
                if old is not None:
                    self.store.remove_consumer(CONSUMER)
                return
            self.mqtt = MqttSink(settings, store=self.store, detection=self.detection,
                                 sounds=self._sounds, model=self.model)

    def reconfigure_webhooks(self, settings: Any) -> None:
        """New ``WebhookSettings`` (or None: off); URLs no longer listed lose their
        consumer."""
        from audio.sinks.webhook import WebhookSink, consumer_name

        with self._lock:
            old, self.webhooks = self.webhooks, None
            if old is not None:
                old.close(timeout=0)
                kept = set(settings.urls) if settings is not None else set()
                for url in set(old.settings.urls) - kept:
                    self.store.remove_consumer(consumer_name(url))
            if settings is not None:
                self.webhooks = WebhookSink(settings, store=self.store)

    def set_sounds(self, names: Iterable[str]) -> None:
        """The listened sounds (known once the models are loaded)."""
        self._sounds = list(names)
        if self.mqtt is not None:
            self.mqtt.set_sounds(self._sounds)

    def handle(self, event: Event) -> None:
        for sink in self.sinks:
            sink.handle(event)

    def handle_sound(self, record: SoundEvent) -> None:
        for sink in self.sinks:
            sink.handle_sound(record)

    def close(self) -> None:
        """Deliver within ``CLOSE_GRACE`` (all together), then close each (idempotent)."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + CLOSE_GRACE
        for sink in self.sinks:
            if not sink.flush(max(0.0, deadline - time.monotonic())):
                logger.warning("%s: not everything delivered at exit (kept in the event "
                               "store: sent after the next start)", type(sink).__name__)
        for sink in self.sinks:
            try:
                sink.close(timeout=0)
            except Exception:
                logger.exception("closing %s failed", type(sink).__name__)


def settings_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """(``MqttSettings`` or None, ``WebhookSettings`` or None) from the flags and the
    environment; raises ``MqttConfigError``/``WebhookConfigError`` in one line."""
    from audio.sinks.mqtt import (
        DEFAULT_DISCOVERY_PREFIX,
        DEFAULT_PREFIX,
        default_device_id,
        mqtt_settings,
    )
    from audio.sinks.webhook import webhook_settings

    device_id = args.mqtt_device_id or default_device_id()
    mqtt = mqtt_settings(
        args.mqtt_url, password=env_value(MQTT_PASSWORD_ENV), ca=args.mqtt_ca,
        prefix=args.mqtt_prefix or DEFAULT_PREFIX, device_id=device_id,
        discovery=not args.no_ha_discovery,
        discovery_prefix=args.ha_discovery_prefix or DEFAULT_DISCOVERY_PREFIX,
        predictions=not args.mqtt_no_predictions) if args.mqtt_url else None
    hooks = webhook_settings(args.webhook, args.webhook_secret
                             or env_value(WEBHOOK_SECRET_ENV), device_id) \
        if args.webhook else None
    return mqtt, hooks


def build_home_sinks(args: argparse.Namespace, store: Any,
                     settings: tuple[Any, Any] | None = None) -> HomeSinks:
    """The sinks the flags ask for, or ``settings`` (``(MqttSettings | None,
    WebhookSettings | None)``: the daemon's saved configuration with the flags over it,
    ``web.home``); none: an empty group. Raises ``UsageError`` subclasses
    (``MqttConfigError``, ``WebhookConfigError``) in one line, before any connection is
    attempted."""
    mqtt, hooks = settings if settings is not None else settings_from_args(args)
    home = HomeSinks(store, model=f"{getattr(args, 'backend', None) or 'vggish'} sound "
                                  f"classifier")
    if mqtt is not None:
        home.reconfigure_mqtt(mqtt)
    if hooks is not None:
        home.reconfigure_webhooks(hooks)
    return home

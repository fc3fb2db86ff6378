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

    group = parser.add_argument_group("MQTT and Home Assistant")
    group.add_argument("--mqtt_url", metavar="URL",
                       help="publish to this broker: mqtt://[user[:password]@]host[:port], "
                            "or mqtts:// for TLS (password also from env "
                            f"{MQTT_PASSWORD_ENV})")
    group.add_argument("--mqtt_ca", metavar="FILE",
                       help="with mqtts://: the CA certificate(s) that signed the broker's "
                            "(default: the system's)")
    group.add_argument("--mqtt_prefix", default=DEFAULT_PREFIX, metavar="TOPIC",
                       help=f"topic prefix (default {DEFAULT_PREFIX}): topics are "
                            f"<prefix>/<device_id>/...")
    group.add_argument("--mqtt_device_id", metavar="ID",
                       help="device id in topics and Home Assistant (default: the host "
                            "name as a slug)")
    group.add_argument("--ha_discovery_prefix", default=DEFAULT_DISCOVERY_PREFIX,
                       metavar="TOPIC", help="Home Assistant's discovery prefix (default "
                                             f"{DEFAULT_DISCOVERY_PREFIX})")
    group.add_argument("--no_ha_discovery", action="store_true",
                       help="do not publish Home Assistant discovery")
    group.add_argument("--mqtt_no_predictions", action="store_true",
                       help="do not publish each window's predictions")
    hooks = parser.add_argument_group("webhooks")
    hooks.add_argument("--webhook", action="append", default=[], metavar="URL",
                       help="POST each sound event start and end as JSON here; repeatable")
    hooks.add_argument("--webhook_secret", metavar="SECRET",
                       help="sign the bodies (X-Hub-Signature-256); or env "
                            f"{WEBHOOK_SECRET_ENV}, which ps does not show")


class HomeSinks:
    """The MQTT sink and the webhooks as one loop sink (see the module docstring)."""

    def __init__(self, sinks: Iterable[Any], detection: DetectionSwitch,
                 sources: dict[str, Callable[[], Any]]) -> None:
        self.sinks = list(sinks)
        self.detection = detection
        self._sources = sources
        self._closed = False

    def status_sources(self) -> dict[str, Callable[[], Any]]:
        """``{name: status()}`` for ``/api/status`` (``mqtt``, ``webhooks``: present only
        when configured)."""
        return dict(self._sources)

    def set_sounds(self, names: Iterable[str]) -> None:
        names = list(names)
        for sink in self.sinks:
            if hasattr(sink, "set_sounds"):
                sink.set_sounds(names)

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


def build_home_sinks(args: argparse.Namespace, store: Any) -> HomeSinks:
    """The sinks the flags ask for (none: an empty group). Raises ``UsageError``
    subclasses (``MqttConfigError``, ``WebhookConfigError``) in one line."""
    from audio.sinks.mqtt import MqttSink, default_device_id, mqtt_settings
    from audio.sinks.webhook import WebhookSink, webhook_settings

    device_id = args.mqtt_device_id or default_device_id()
    mqtt = mqtt_settings(
        args.mqtt_url, password=env_value(MQTT_PASSWORD_ENV), ca=args.mqtt_ca,
        prefix=args.mqtt_prefix, device_id=device_id, discovery=not args.no_ha_discovery,
        discovery_prefix=args.ha_discovery_prefix,
        predictions=not args.mqtt_no_predictions) if args.mqtt_url else None
    hooks = webhook_settings(args.webhook, args.webhook_secret
                             or env_value(WEBHOOK_SECRET_ENV), device_id) \
        if args.webhook else None
    detection = DetectionSwitch()
    sinks: list[Any] = []
    sources: dict[str, Callable[[], Any]] = {}
    if mqtt is not None:
        model = f"{getattr(args, 'backend', None) or 'vggish'} sound classifier"
        mqtt_sink = MqttSink(mqtt, store=store, detection=detection, model=model)
        sinks.append(mqtt_sink)
        sources["mqtt"] = mqtt_sink.status
    if hooks is not None:
        webhooks = WebhookSink(hooks, store=store)
        sinks.append(webhooks)
        sources["webhooks"] = webhooks.status
    return HomeSinks(sinks, detection, sources)

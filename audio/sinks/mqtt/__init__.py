"""MQTT sink: sound events to an MQTT broker, with Home Assistant discovery.

``daemon.py --mqtt_url mqtt://[user[:password]@]host[:port]`` publishes under
``<prefix>/<device_id>`` (``topics`` lists every topic and payload): availability with a
last will, each sound event change as JSON (QoS 1, from the event store's outbox: nothing
committed is lost across broker or daemon restarts, at least once, a duplicate carrying
the same id), ``ON``/``OFF`` per listened sound, the Home Assistant event entity's
``sound_event``, the level about once a second, each window's predictions, and a switch
that pauses detection. Home Assistant finds the device through one retained device-based
discovery message (``discovery``).

Modules: ``settings`` (the broker, topics and options, validated; ``public()`` for status
and the page), ``topics`` (topic names and small payloads), ``discovery`` (Home Assistant's
device config), ``outbox`` (rows to messages, acknowledgements to the cursor), ``sink``
(paho's client and the sender thread). paho-mqtt 2.x, callback API version 2.
"""

from __future__ import annotations

from audio.sinks.mqtt.outbox import CONSUMER
from audio.sinks.mqtt.settings import (
    DEFAULT_DISCOVERY_PREFIX,
    DEFAULT_PREFIX,
    MqttConfigError,
    MqttSettings,
    default_device_id,
    mqtt_settings,
    with_password,
)
from audio.sinks.mqtt.sink import MqttSink
from audio.sinks.mqtt.topics import Topics, sound_slug

__all__ = ["CONSUMER", "DEFAULT_DISCOVERY_PREFIX", "DEFAULT_PREFIX", "MqttConfigError",
           "MqttSettings", "MqttSink", "Topics", "default_device_id", "mqtt_settings",
           "sound_slug", "with_password"]

"""Home Assistant MQTT discovery: one retained device-based message for the whole device.

``<discovery_prefix>/device/<device_id>/config`` holds ``dev`` (the device), ``o`` (the
origin: this program), ``avty`` (``<base>/availability``; ``online``/``offline``) and
``cmps``, the components, each with a stable ``unique_id``:

* ``sound_<slug>``: a ``binary_sensor`` with ``device_class: sound`` per listened sound,
  state topic ``<base>/sound/<slug>`` (``ON``/``OFF``); named after the sound, so Home
  Assistant makes ``binary_sensor.<device>_<slug>`` of it;
* ``sound_event``: one ``event`` entity whose ``event_types`` are the listened sounds'
  slugs (state topic ``<base>/sound_event``); absent when no sound is listened to (an
  event entity needs at least one type);
* ``level``: a ``sensor`` of the level in dBFS (``{"dbfs": ...}`` on ``<base>/level``).
  dBFS is relative to digital full scale, not a sound pressure, so it has no
  ``sound_pressure`` device class: its unit is ``dBFS``;
* ``detection``: a ``switch`` (``<base>/detect/set``, state ``<base>/detect/state``).

A sound no longer listened to is removed the way Home Assistant documents for device
discovery: its component is sent once more with its platform only (``{"p":
"binary_sensor"}``), and its retained state is cleared (an empty retained payload). The
sink finds the components of the previous configuration in the retained discovery message
the broker hands it when it subscribes to its own discovery topic.

That retained message is input from the broker, which anyone allowed to publish there may
have written: nothing in it is trusted but the component ids, and only ids of the form
this program gives (``valid_component_id``, at most ``MAX_PREVIOUS`` of them). The state
topic cleared for a removed sound is recomputed from its id under the device's own base
(``<base>/sound/<slug>``), never taken from the message's ``state_topic``: a planted
message naming another device's topics must not make this daemon wipe them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from audio.sinks.mqtt.topics import OFF, OFFLINE, ON, ONLINE, Topics, sound_slug

ORIGIN_NAME = "audio-analysis"
SUPPORT_URL = "https://github.com/devicehive/devicehive-audio-analysis"
SOUND_PREFIX = "sound_"
"""Components named ``sound_<slug>`` are the listened sounds' binary sensors."""
EVENT_COMPONENT = "sound_event"
PLATFORMS = frozenset({"binary_sensor", "event", "sensor", "switch"})
"""The platforms of the components this program publishes (a removal names one)."""
MAX_PREVIOUS = 256
"""Components of a retained discovery looked at, at most (a bigger one is not ours)."""
_COMPONENT_ID = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
_MAX_ID = 96


def valid_component_id(key: object) -> bool:
    """Whether ``key`` is an id this program could have given a component: lower case
    letters and digits in ``_``-separated runs (``sound_`` + a ``sound_slug``)."""
    return isinstance(key, str) and len(key) <= _MAX_ID and bool(_COMPONENT_ID.fullmatch(key))


def previous_components(cmps: object) -> dict[str, Any]:
    """The components of a retained discovery's ``cmps`` worth looking at: valid ids
    (``valid_component_id``) with a mapping as config, at most ``MAX_PREVIOUS``; other
    entries are ignored."""
    if not isinstance(cmps, Mapping) or len(cmps) > MAX_PREVIOUS:
        return {}
    return {key: config for key, config in cmps.items()
            if valid_component_id(key) and isinstance(config, Mapping)}


def _sound_component(topics: Topics, device_id: str, name: str) -> dict[str, Any]:
    slug = sound_slug(name)
    return {"p": "binary_sensor", "name": name[:1].upper() + name[1:],
            "device_class": "sound", "state_topic": topics.sound(name),
            "payload_on": ON, "payload_off": OFF, "unique_id": f"{device_id}_sound_{slug}"}


def components(topics: Topics, device_id: str, sounds: Iterable[str]) -> dict[str, Any]:
    """The ``cmps`` of the device for these listened sounds."""
    names = list(dict.fromkeys(sounds))
    cmps: dict[str, Any] = {f"{SOUND_PREFIX}{sound_slug(n)}": _sound_component(topics,
                                                                               device_id, n)
                            for n in names}
    if names:
        cmps[EVENT_COMPONENT] = {"p": "event", "name": "Sound",
                               "event_types": [sound_slug(n) for n in names],
                               "state_topic": topics.sound_event,
                               "unique_id": f"{device_id}_sound_event"}
    cmps["level"] = {"p": "sensor", "name": "Sound level (dBFS)", "unit_of_measurement":
                     "dBFS", "state_class": "measurement", "state_topic": topics.level,
                     "value_template": "{{ value_json.dbfs }}", "icon": "mdi:waveform",
                     "unique_id": f"{device_id}_level"}
    cmps["detection"] = {"p": "switch", "name": "Detection", "command_topic":
                         topics.detect_set, "state_topic": topics.detect_state,
                         "payload_on": ON, "payload_off": OFF, "icon": "mdi:ear-hearing",
                         "unique_id": f"{device_id}_detection"}
    return cmps


def removed(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The components of ``previous`` (a retained ``cmps``) that ``current`` lacks, as
    removal entries (platform only); entries that were removals already are left out."""
    out = {}
    for key, config in previous_components(previous).items():
        if key in current:
            continue
        platform = config.get("p") or config.get("platform")
        if platform in PLATFORMS and set(config) - {"p", "platform"}:
            out[key] = {"p": platform}
    return out


def removed_state_topics(topics: Topics, removals: Iterable[str]) -> list[str]:
    """The retained state topics of removed sound components, to be cleared: each
    recomputed from the component id under this device's base (``<base>/sound/<slug>``),
    whatever the retained message said its ``state_topic`` was (module docstring)."""
    out = []
    for key in removals:
        if valid_component_id(key) and key.startswith(SOUND_PREFIX) \
                and key != EVENT_COMPONENT:  # the event entity's topic is not retained
            topic = topics.sound(key[len(SOUND_PREFIX):])
            if topic.startswith(f"{topics.base}/sound/"):
                out.append(topic)
    return out


def device_config(topics: Topics, device_id: str, sounds: Iterable[str], *, version: str,
                  model: str, removals: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The retained discovery payload (see the module docstring)."""
    return {
        "dev": {"ids": [f"{ORIGIN_NAME}_{device_id}"], "name": device_id,
                "mf": ORIGIN_NAME, "mdl": model, "sw": version},
        "o": {"name": ORIGIN_NAME, "sw": version, "url": SUPPORT_URL},
        "avty": [{"topic": topics.availability, "payload_available": ONLINE,
                  "payload_not_available": OFFLINE}],
        "qos": 1,
        "cmps": {**components(topics, device_id, sounds), **(removals or {})},
    }

"""The MQTT sink's topics and the payloads that are not a sound event's JSON.

With ``<base> = <prefix>/<device_id>``:

* ``<base>/availability``: ``online`` (retained, QoS 1) after connecting; ``offline``
  (retained) as the last will and on a clean shutdown.
* ``<base>/events``: one JSON message per sound event change (``audio.sinks.payloads``),
  QoS 1, not retained, delivered from the event store's outbox.
* ``<base>/sound/<sound>``: ``ON``/``OFF``, retained, per listened sound; ``<sound>`` is
  the sound's name as a slug (``smoke alarm`` -> ``smoke_alarm``).
* ``<base>/sound_event``: ``{"event_type": "<sound slug>", "score", "dbfs", "id"}`` at
  each event start, QoS 1 (the state topic of Home Assistant's event entity).
* ``<base>/level``: ``{"dbfs": -31.2}`` about once a second, QoS 0.
* ``<base>/predictions``: each window's predictions (the object of ``/api/events``), QoS 0.
* ``<base>/detect/set`` (``ON``/``OFF``, subscribed) and ``<base>/detect/state``
  (retained).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from audio.events import SoundEvent

ON, OFF = "ON", "OFF"
ONLINE, OFFLINE = "online", "offline"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def sound_slug(name: str) -> str:
    """A sound's name as one topic level and Home Assistant event type: lower case
    letters, digits and ``_`` (``Smoke alarm`` -> ``smoke_alarm``)."""
    return _NOT_SLUG.sub("_", name.lower()).strip("_") or "sound"


@dataclass(frozen=True)
class Topics:
    base: str
    discovery_prefix: str
    device_id: str

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    def sound(self, name: str) -> str:
        return f"{self.base}/sound/{sound_slug(name)}"

    @property
    def sound_event(self) -> str:
        return f"{self.base}/sound_event"

    @property
    def level(self) -> str:
        return f"{self.base}/level"

    @property
    def predictions(self) -> str:
        return f"{self.base}/predictions"

    @property
    def detect_set(self) -> str:
        return f"{self.base}/detect/set"

    @property
    def detect_state(self) -> str:
        return f"{self.base}/detect/state"

    @property
    def discovery(self) -> str:
        """Home Assistant's device-based discovery topic of this device."""
        return f"{self.discovery_prefix}/device/{self.device_id}/config"

    @property
    def ha_status(self) -> str:
        """Where Home Assistant says ``online`` when it (re)starts."""
        return f"{self.discovery_prefix}/status"


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def sound_event_payload(record: SoundEvent) -> dict[str, Any]:
    """What Home Assistant's event entity gets at a start (other keys are attributes)."""
    return {"event_type": sound_slug(record.sound), "score": round(float(record.peak_score), 4),
            "dbfs": round(float(record.peak_dbfs), 1), "id": record.id}


def level_payload(dbfs: float) -> dict[str, float]:
    return {"dbfs": round(float(dbfs), 1)}

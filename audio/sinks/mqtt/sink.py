"""The MQTT sink: sound events from the event store's outbox, live state, Home Assistant.

Threads. ``handle``/``handle_sound`` (the loop's thread) only record what happened and
wake the sender: they never touch the network. paho's network thread (``loop_start``)
owns the socket, reconnects with its own backoff (``reconnect_min``..``reconnect_max``)
and runs the callbacks, which only record and wake too. The sender thread does the
publishing: availability, discovery, states, levels, predictions, and the outbox's events
(``audio.sinks.mqtt.outbox``). No paho call is made with the sink's lock held (paho calls
``on_publish`` with its own lock held).

Session. The client id is stable (``audio-analysis-<device_id>``) and the session
persistent (MQTT 3.1.1, ``clean_session=False``): the broker keeps the subscription to
``detect/set`` and what was sent to it while the daemon was away, and paho sends again,
on the same session, the QoS 1 messages not acknowledged when a connection broke. New
rows are published only once those are acknowledged, so the order is kept.

States. ``<base>/sound/<sound>`` and ``<base>/detect/state`` are retained, published at
QoS 0 on each change and all of them again on every connection: a state topic holds the
latest value, and QoS 0 keeps paho from resending an old ``ON`` after a newer ``OFF``.
After a ``kill -9`` the first connection of the next process sets every sound ``OFF``.

Level. The loop hands sinks windows, not frames; a window is 1-7 s long. The sink cuts
each window's audio into one-second pieces and publishes their RMS levels (dBFS) one per
second, so ``<base>/level`` moves about once a second, one window behind the audio. A
window without audio (a source that gives none) publishes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from audio.control import DetectionSwitch
from audio.detect import rms_dbfs
from audio.events import Event, SoundEvent
from audio.sinks.mqtt import discovery
from audio.sinks.mqtt.availability import Availability
from audio.sinks.mqtt.outbox import MAX_IN_FLIGHT, Message, Outbox, row_messages
from audio.sinks.mqtt.settings import MqttConfigError, MqttSettings
from audio.sinks.mqtt.topics import OFF, OFFLINE, ON, Topics, dumps, level_payload
from audio.sinks.mqtt.topics import sound_slug as slug_of
from audio.store import Store, StoreError

logger = logging.getLogger("audio.mqtt")

LEVEL_SECONDS = 1.0
IDLE_WAIT = 0.25
"""The sender's longest sleep: acknowledgements and level ticks are checked this often."""
STOP_JOIN = 0.5
"""How long a stop waits for paho's thread (a daemon thread: it cannot delay the exit)."""
OFFLINE_ACK_WAIT = 2.0
"""How long a stop waits for the broker's PUBACK of ``offline`` before it drops the
connection without DISCONNECT (``audio.sinks.mqtt.availability``)."""


def _version() -> str:
    try:
        return metadata.version("audio-analysis")
    except metadata.PackageNotFoundError:
        return "dev"


def _acked(handle: mqtt.MQTTMessageInfo) -> bool:
    return handle.is_published()


def second_levels(audio: np.ndarray, rate: int) -> list[float]:
    """RMS dBFS of each whole second of ``audio`` (a shorter tail joins the last one)."""
    step = int(rate * LEVEL_SECONDS)
    starts = list(range(0, max(1, audio.shape[0] - step + 1), step)) or [0]
    ends = [*starts[1:], audio.shape[0]]
    return [rms_dbfs(audio[a:b]) for a, b in zip(starts, ends, strict=True) if b > a]


class MqttSink:
    """The :class:`audio.events.Sink` that publishes to an MQTT broker (module docstring).

    ``store``: the daemon's event store (events come from its outbox, consumer ``mqtt``).
    ``detection``: the switch ``<base>/detect/set`` turns (None: the commands are ignored).
    ``sounds``: the listened sounds' names; None: not known yet (``set_sounds`` gives them,
    and changes them later).
    """

    def __init__(self, settings: MqttSettings, *, store: Store,
                 detection: DetectionSwitch | None = None,
                 sounds: Iterable[str] | None = None,
                 model: str = "sound classifier") -> None:
        self.settings = settings
        self.topics = Topics(settings.base, settings.discovery_prefix, settings.device_id)
        self._detection = detection
        self._model = model
        self._cond = threading.Condition()
        self._sounds: dict[str, str] = {slug_of(n): n for n in sounds or ()}
        self._sounds_known = sounds is not None
        """Discovery waits until the sounds are known (the models loaded): published
        without them, it would remove their entities from Home Assistant for a moment."""
        self._previous: dict[str, Any] = {}
        """The components the broker holds (retained), as far as the sink knows."""
        self._new_rows = True
        self._active: dict[str, set[int]] = {}
        self._states: deque[tuple[str, str]] = deque()
        self._live: deque[str] = deque(maxlen=4)
        self._levels: deque[float] = deque(maxlen=16)
        self._next_level = 0.0
        self._todo: set[str] = set()
        self._generation = 0
        self._connected = False
        self._stop = threading.Event()
        self.state, self.last_error, self.connected_since = "connecting", None, None
        self.reconnects = 0
        self._outbox = Outbox(store)
        self._client = self._make_client()
        self._availability = Availability(self._client, self.topics.availability,
                                          self._stop.is_set)
        if detection is not None:
            detection.subscribe(self._detection_changed)
        self._sender = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._client.connect_async(settings.host, settings.port, settings.keepalive)
        self._client.loop_start()
        self._sender.start()

    # ---- paho ----------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311)
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca or None)
            except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
                raise MqttConfigError(f"MQTT TLS: cannot use the CA file {s.ca!r}: "
                                      f"{error}") from None
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(s.reconnect_min, s.reconnect_max)  # type: ignore[arg-type]
        client.connect_timeout = s.connect_timeout
        client.max_inflight_messages_set(MAX_IN_FLIGHT * 4)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            self._set(state="disconnected", last_error=f"broker refused: {reason}")
            return
        topics = [(self.topics.detect_set, 1)]
        if self.settings.discovery:
            topics += [(self.topics.ha_status, 1), (self.topics.discovery, 1)]
        client.subscribe(topics)
        self._availability.connected()
        logger.info("MQTT: connected to %s as %s (session %s)", self.settings.url,
                    self.settings.client_id, "resumed" if flags.session_present else "new")
        with self._cond:
            self._connected = True
            self._generation += 1
            self._todo |= {"discovery", "states"}
            self._states.clear()  # "states" publishes every current one
            self.state, self.last_error, self.connected_since = "connected", None, time.time()
            self._cond.notify_all()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._set(state="disconnected",
                  last_error=f"cannot connect to {self.settings.host}:{self.settings.port}")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            self.connected_since = None
            if not self._stop.is_set():
                self.state, self.last_error = "disconnected", f"connection lost: {reason}"
                self.reconnects += was
            self._cond.notify_all()
        if was and not self._stop.is_set():
            logger.warning("MQTT: connection to %s lost (%s); reconnecting", self.settings.url,
                           reason)

    def _on_publish(self, *_args: Any) -> None:
        with self._cond:  # paho holds its own lock here: take nothing that calls paho
            self._cond.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: Any) -> None:
        payload = message.payload.decode("utf-8", "replace").strip()
        if message.topic == self.topics.detect_set:
            if payload.upper() in (ON, OFF) and self._detection is not None:
                self._detection.set(payload.upper() == ON, by="MQTT")
            with self._cond:
                self._todo.add("detect")  # the state says what is, even for a bad command
                self._cond.notify_all()
        elif message.topic == self.topics.ha_status and payload == "online":
            logger.info("MQTT: Home Assistant is online: publishing the discovery again")
            self._mark("discovery", "states")
        elif message.topic == self.topics.discovery and message.retain and payload:
            self._previous_discovery(payload)

    def _previous_discovery(self, payload: str) -> None:
        """The retained discovery (an earlier configuration's, or ours): what it has more
        than the current one is removed at the next publication."""
        try:
            previous = discovery.previous_components(json.loads(payload).get("cmps"))
        except (ValueError, AttributeError, RecursionError):  # raised here, paho's thread
            return  # would end: a message nested too deep for json is ignored too
        with self._cond:
            self._previous = previous
            current = discovery.components(self.topics, self.settings.device_id,
                                           self._sounds.values())
            if self._sounds_known and discovery.removed(previous, current):
                self._todo.add("discovery")
                self._cond.notify_all()

    # ---- the Sink contract (loop thread) ----------------------------------------------
    def handle(self, event: Event) -> None:
        with self._cond:
            if self.settings.predictions:
                self._live.append(dumps(event.as_dict()))
            if event.audio is not None:
                self._levels.extend(second_levels(np.asarray(event.audio), event.sample_rate))
            self._new_rows = True
            self._cond.notify_all()

    def handle_sound(self, record: SoundEvent) -> None:
        """Its ``ON``/``OFF`` now; its messages come from the outbox (already committed)."""
        slug = slug_of(record.sound)
        with self._cond:
            active = self._active.setdefault(slug, set())
            before = bool(active)
            if record.kind == "end":
                active.discard(record.id)
            else:
                active.add(record.id)
            if slug in self._sounds and bool(active) != before:
                self._states.append((slug, ON if active else OFF))
            self._new_rows = True
            self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is pending for up to ``timeout`` s, then say ``offline``: a
        DISCONNECT once the broker acknowledged it, or else no DISCONNECT, so that the
        broker publishes the last will (``audio.sinks.mqtt.availability``)."""
        self.flush(timeout)
        self._stop.set()
        if self._detection is not None:  # a replaced sink is not told of changes any more
            self._detection.unsubscribe(self._detection_changed)
        with self._cond:
            self._cond.notify_all()
        self._sender.join(STOP_JOIN)
        acknowledged = self._availability.say_offline(OFFLINE_ACK_WAIT)
        if acknowledged:
            self._client.disconnect()
        elif self._connected:
            logger.warning("MQTT: the broker did not acknowledge 'offline' within %.0f s: "
                           "dropping the connection (its last will says offline)",
                           OFFLINE_ACK_WAIT)
        stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(STOP_JOIN)
        if not acknowledged:
            self._availability.drop()
        self._set(state="stopped")

    # ---- control (any thread) --------------------------------------------------------
    def set_sounds(self, names: Iterable[str]) -> None:
        """The listened sounds became known (the models loaded) or changed: the discovery
        is published again, and the components of sounds no longer listened removed."""
        with self._cond:
            self._sounds = {slug_of(n): n for n in names}
            self._sounds_known = True
            self._todo |= {"discovery", "states"}
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every committed event is acknowledged (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._outbox_drained():
                    return True
            except StoreError:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._cond:
                self._cond.wait(min(left, 0.05))

    def status(self) -> dict[str, Any]:
        with self._cond:
            out = {"state": self.state, "connected_since": self.connected_since,
                   "last_error": self.last_error, "reconnects": self.reconnects,
                   "sent": self._outbox.sent, "in_flight": len(self._outbox.flights),
                   "sounds": sorted(self._sounds),
                   "detecting": None if self._detection is None else self._detection.on,
                   **self.settings.public()}
        try:
            outbox = self._outbox.status()
        except StoreError as error:
            outbox = {"error": str(error)}
        out.update(outbox=outbox, pending=outbox.get("pending"),
                   duplicates=outbox.get("duplicates"))
        return out

    def _outbox_drained(self) -> bool:
        return self._outbox.drained()

    # ---- the sender thread -------------------------------------------------------------
    def _set(self, **fields: Any) -> None:
        with self._cond:
            for key, value in fields.items():
                setattr(self, key, value)
            self._cond.notify_all()

    def _mark(self, *todo: str) -> None:
        with self._cond:
            self._todo.update(todo)
            self._cond.notify_all()

    def _detection_changed(self, _on: bool) -> None:
        self._mark("detect")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except StoreError as error:
                if self._stop.is_set():
                    break
                logger.error("MQTT: %s", error)
                self._set(last_error=str(error))
                self._stop.wait(1.0)
            except Exception as error:  # never kill the thread: log, show, go on
                logger.exception("MQTT: unexpected error")
                self._set(last_error=f"{type(error).__name__}: {error}")
                self._stop.wait(1.0)

    def _step(self) -> None:
        with self._cond:
            if not self._connected or not (self._todo or self._states or self._live
                                           or self._new_rows or self._level_due()):
                self._cond.wait(IDLE_WAIT)
            if not self._connected:
                return
            generation = self._generation
            self._new_rows = False
            todo, self._todo = self._todo, set()
            if not self._sounds_known and "discovery" in todo:
                todo.discard("discovery")
                self._todo.add("discovery")
            states = list(self._states)
            self._states.clear()
            live = list(self._live)
            self._live.clear()
            level = self._due_level()
        self._publish_control(todo, states)
        for payload in live:
            self._client.publish(self.topics.predictions, payload, qos=0)
        if level is not None:
            self._client.publish(self.topics.level, dumps(level_payload(level)), qos=0)
        self._deliver(generation)

    def _level_due(self) -> bool:
        return bool(self._levels) and time.monotonic() >= self._next_level

    def _due_level(self) -> float | None:
        now = time.monotonic()
        if not self._level_due():
            return None
        self._next_level = max(self._next_level, now - LEVEL_SECONDS / 2) + LEVEL_SECONDS
        return self._levels.popleft()

    def _publish_control(self, todo: set[str], states: list[tuple[str, str]]) -> None:
        publish = self._client.publish
        if "discovery" in todo and self.settings.discovery:
            self._publish_discovery()
        if "states" in todo:
            with self._cond:
                states = [(s, ON if self._active.get(s) else OFF) for s in self._sounds]
            todo.add("detect")
        for slug, value in states:
            publish(self.topics.sound(slug), value, qos=0, retain=True)
        if "detect" in todo:
            on = self._detection is None or self._detection.on
            publish(self.topics.detect_state, ON if on else OFF, qos=0, retain=True)

    def _publish_discovery(self) -> None:
        """The device's discovery, with removal entries for the components the broker
        holds that the current configuration lacks (their retained states cleared)."""
        with self._cond:
            current = discovery.components(self.topics, self.settings.device_id,
                                           self._sounds.values())
            gone = discovery.removed(self._previous, current)
            cleared = discovery.removed_state_topics(self.topics, gone)
            self._previous = current
        config = discovery.device_config(self.topics, self.settings.device_id,
                                         self._sounds.values(), version=_version(),
                                         model=self._model, removals=gone)
        self._client.publish(self.topics.discovery, dumps(config), qos=1, retain=True)
        for topic in cleared:
            self._client.publish(topic, b"", qos=1, retain=True)
        if gone:
            logger.info("MQTT: removed from the discovery: %s", ", ".join(sorted(gone)))

    def _deliver(self, generation: int) -> None:
        """Settle the acknowledged rows, then publish the next ones (in order: none while
        rows of an earlier connection still wait for their acknowledgement)."""
        outbox = self._outbox
        if outbox.old_in_flight(generation):
            resent = outbox.resent(generation)
            logger.info("MQTT: %d event row(s) unacknowledged at the disconnect sent again",
                        resent)
        outbox.settle(_acked)
        with self._cond:
            listened = set(self._sounds)
        room = MAX_IN_FLIGHT - outbox.in_flight()
        while room > 0:
            rows = outbox.rows()
            for record in rows:
                messages = row_messages(record, self.topics, listened)
                if len(messages) > room:
                    return
                outbox.launched(record.seq, [self._publish(m) for m in messages], generation)
                room -= len(messages)
            if not rows:
                return
            outbox.settle(_acked)  # rows without messages (windows) are passed at once

    def _publish(self, message: Message) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(message.topic, message.payload, qos=message.qos,
                                    retain=message.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # The connection broke just now: paho keeps a QoS 1 message and sends it after
            # reconnecting; its acknowledgement is awaited like any other.
            info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        return info

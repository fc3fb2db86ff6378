"""The MQTT sink against a real broker (mosquitto on a loopback port) and a real event
store: topics and payloads, Home Assistant discovery, the cursor moved on PUBACK only,
a broker restart, the detection switch, settings and their public view."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from audio.commit import Committer
from audio.control import DetectionSwitch
from audio.events import Event, Prediction, SoundEvent
from audio.sinks.mqtt import MqttConfigError, MqttSink, mqtt_settings
from audio.sinks.mqtt.sink import second_levels
from audio.store import Store
from tests.fixtures_mqtt import Broker, Subscriber

BASE = "audio-analysis/kitchen"
DISCOVERY = "homeassistant/device/kitchen/config"
WAIT = 30.0


def _record(kind: str, id_: int, sound: str = "dog") -> SoundEvent:
    now = time.time()
    return SoundEvent(kind=kind, id=id_, sound=sound, classes=("Bark",), start=1.0, end=2.5,
                      peak_score=0.9, mean_score=0.7, peak_dbfs=-18.25, mean_dbfs=-21.0,
                      source="mic", start_time=now - 1.5, end_time=now)


def _sink(broker: Broker, store: Store, sounds=("dog", "smoke alarm"), **options) -> MqttSink:
    settings = mqtt_settings(broker.url, device_id="kitchen", **options)
    return MqttSink(settings, store=store, detection=options.pop("detection", None),
                    sounds=sounds)


def _events(sub: Subscriber) -> list[tuple[str, int]]:
    return [(m.json()["type"], m.json()["id"]) for m in sub.on(f"{BASE}/events")]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "events.db") as db:
        yield db


def test_topics_payloads_and_discovery(mqtt_broker, store):
    sub = Subscriber(mqtt_broker)
    commit = Committer(store)
    sink = _sink(mqtt_broker, store)
    try:
        sub.wait_for(lambda m: any(x.topic == DISCOVERY for x in m), WAIT, "discovery")
        window = Event(id=0, timestamp=time.time(), start=0.0, end=2.0,
                       predictions=(Prediction("Bark", 0.8),), source="mic",
                       audio=np.full(32000, 0.1, np.float32))
        sink.handle(commit.window(window))
        for record in (_record("start", 1), _record("end", 1),
                       _record("start", 2, "smoke alarm")):
            sink.handle_sound(commit.sound(record))
        sub.wait_for(lambda m: len(sub.on(f"{BASE}/events")) == 3
                     and len(sub.on(f"{BASE}/level")) == 2, WAIT, "events and levels")
        assert sink.flush(WAIT)
    finally:
        sink.close()
    sub.wait_for(lambda m: sub.on(f"{BASE}/availability")[-1:] and
                 sub.on(f"{BASE}/availability")[-1].payload == "offline", WAIT, "offline")
    sub.close()
    assert [m.payload for m in sub.on(f"{BASE}/availability")] == ["online", "offline"]
    assert _events(sub) == [("start", 2), ("end", 2), ("start", 4)]  # ids: store seqs
    start = sub.on(f"{BASE}/events")[0].json()
    assert set(start) == {"type", "id", "sound", "classes", "start", "end", "timestamp",
                          "score", "peak_score", "dbfs", "source"}
    assert start["sound"] == "dog" and start["score"] == 0.7 and start["dbfs"] == -18.2
    assert [m.json() for m in sub.on(f"{BASE}/sound_event")] == [
        {"event_type": "dog", "score": 0.9, "dbfs": -18.2, "id": 2},
        {"event_type": "smoke_alarm", "score": 0.9, "dbfs": -18.2, "id": 4}]
    assert [m.payload for m in sub.on(f"{BASE}/sound/dog")][-2:] == ["ON", "OFF"]
    assert [m.payload for m in sub.on(f"{BASE}/sound/smoke_alarm")][-1] == "ON"
    assert [m.json() for m in sub.on(f"{BASE}/level")] == [{"dbfs": -20.0}] * 2
    assert sub.on(f"{BASE}/predictions")[0].json()["predictions"] == [
        {"label": "Bark", "score": 0.8}]
    assert sub.on(f"{BASE}/detect/state")[-1].payload == "ON"
    assert store.cursor("mqtt") == store.last_seq()
    config = sub.on(DISCOVERY)[-1].json()
    cmps = config["cmps"]
    assert set(cmps) == {"sound_dog", "sound_smoke_alarm", "sound_event", "level",
                         "detection"}
    assert cmps["sound_smoke_alarm"] == {
        "p": "binary_sensor", "name": "Smoke alarm", "device_class": "sound",
        "state_topic": f"{BASE}/sound/smoke_alarm", "payload_on": "ON",
        "payload_off": "OFF", "unique_id": "kitchen_sound_smoke_alarm"}
    assert cmps["sound_event"]["event_types"] == ["dog", "smoke_alarm"]
    assert cmps["sound_event"]["state_topic"] == f"{BASE}/sound_event"
    assert cmps["level"]["p"] == "sensor" and cmps["level"]["unit_of_measurement"] == "dBFS"
    assert cmps["detection"]["command_topic"] == f"{BASE}/detect/set"
    assert len({c["unique_id"] for c in cmps.values()}) == 5
    assert config["avty"] == [{"topic": f"{BASE}/availability", "payload_available": "online",
                               "payload_not_available": "offline"}]
    assert set(config["dev"]) == {"ids", "name", "mf", "mdl", "sw"}
    assert set(config["o"]) == {"name", "sw", "url"}
    late = Subscriber(mqtt_broker, (DISCOVERY, f"{BASE}/availability"), "late")
    late.wait_for(lambda m: len(m) == 2, WAIT, "the retained messages")
    late.close()
    assert all(m.retain for m in late.messages)


def test_the_cursor_moves_on_puback_only_and_a_broker_restart_loses_nothing(
        mqtt_broker, store):
    sub = Subscriber(mqtt_broker, (f"{BASE}/events",))
    commit = Committer(store)
    sink = _sink(mqtt_broker, store)
    try:
        sink.handle_sound(commit.sound(_record("start", 1)))
        sub.wait_for(lambda m: len(m) == 1, WAIT, "the first event")
        assert sink.flush(WAIT)
        mqtt_broker.stop()
        for record in (_record("end", 1), _record("start", 2), _record("end", 2)):
            sink.handle_sound(commit.sound(record))
        time.sleep(1.0)
        assert store.cursor("mqtt") == 1  # nothing acknowledged while the broker is down
        assert sink.status()["pending"] == 3 and sink.status()["state"] == "disconnected"
        mqtt_broker.start()
        sub.wait_for(lambda m: len(m) >= 4, WAIT, "the events after the restart")
        assert sink.flush(WAIT)
        assert sink.status()["reconnects"] >= 1
    finally:
        sink.close()
        sub.close()
    assert _events(sub) == [("start", 1), ("end", 1), ("start", 3), ("end", 3)]
    assert store.cursor("mqtt") == store.last_seq() == 4


def test_sounds_no_longer_listened_are_removed(mqtt_broker, store):
    sink = _sink(mqtt_broker, store, sounds=("dog", "siren"))
    try:
        sink.flush(WAIT)
    finally:
        time.sleep(0.5)
        sink.close()
    before = Subscriber(mqtt_broker, (DISCOVERY, f"{BASE}/sound/+"), "before")
    before.wait_for(lambda m: len(m) == 3, WAIT, "discovery and two states")
    before.close()
    sub = Subscriber(mqtt_broker, (DISCOVERY, f"{BASE}/sound/siren"), "watcher")
    sink = _sink(mqtt_broker, store, sounds=None)  # the sounds are known later
    try:
        time.sleep(1.0)
        assert not [m for m in sub.messages if not m.retain]  # nothing before the sounds
        sink.set_sounds(["dog"])
        sub.wait_for(lambda m: any(x.topic == DISCOVERY and not x.retain for x in m), WAIT,
                     "the new discovery")
    finally:
        sink.close()
        sub.close()
    cmps = [m for m in sub.messages if m.topic == DISCOVERY][-1].json()["cmps"]
    assert cmps["sound_siren"] == {"p": "binary_sensor"}  # Home Assistant removes it
    assert "sound_dog" in cmps and cmps["sound_event"]["event_types"] == ["dog"]
    assert sub.on(f"{BASE}/sound/siren")[-1].payload == ""  # retained state cleared
    after = Subscriber(mqtt_broker, (f"{BASE}/sound/+",), "after")
    after.wait_for(lambda m: len(m) >= 1, WAIT, "the retained dog state")
    time.sleep(0.5)
    after.close()
    assert [m.topic for m in after.messages] == [f"{BASE}/sound/dog"]


def test_detect_set_turns_the_switch_and_the_state_follows(mqtt_broker, store):
    switch = DetectionSwitch()
    sub = Subscriber(mqtt_broker, (f"{BASE}/detect/state",))
    sink = MqttSink(mqtt_settings(mqtt_broker.url, device_id="kitchen"), store=store,
                    detection=switch, sounds=["dog"])
    try:
        sub.wait_for(lambda m: m and m[-1].payload == "ON", WAIT, "state ON")
        sub.client.publish(f"{BASE}/detect/set", "OFF", qos=1)
        sub.wait_for(lambda m: m[-1].payload == "OFF", WAIT, "state OFF")
        assert switch.on is False and sink.status()["detecting"] is False
        switch.set(True, by="the web page")  # any other hand on the switch is shown too
        sub.wait_for(lambda m: m[-1].payload == "ON", WAIT, "state ON again")
        sub.client.publish(f"{BASE}/detect/set", "maybe", qos=1)
        sub.wait_for(lambda m: len(m) >= 4, WAIT, "the state after a bad command")
        assert switch.on is True
    finally:
        sink.close()
        sub.close()


def test_settings_from_the_url_and_what_is_shown(tmp_path):
    s = mqtt_settings("mqtts://ha:s3cret@broker.lan", device_id="kitchen", prefix="home/audio")
    assert (s.host, s.port, s.tls, s.username, s.password) == ("broker.lan", 8883, True, "ha",
                                                               "s3cret")
    assert s.base == "home/audio/kitchen" and s.client_id == "audio-analysis-kitchen"
    shown = json.dumps(s.public()) + repr(s)
    assert "s3cret" not in shown and s.public()["password_set"] is True
    assert mqtt_settings("mqtt://u@h", password="env-pw", device_id="k").password == "env-pw"
    assert mqtt_settings("mqtt://h:1884", device_id="k").port == 1884
    for url, options in [("http://h", {}), ("mqtt://h/topic", {}), ("mqtt://", {}),
                         ("mqtt://h", {"device_id": "Not A Slug"}),
                         ("mqtt://h", {"device_id": "k", "prefix": "a/#"}),
                         ("mqtt://h", {"device_id": "k", "ca": str(tmp_path / "ca.pem")}),
                         ("mqtts://h", {"device_id": "k", "ca": str(tmp_path / "none.pem")})]:
        with pytest.raises(MqttConfigError):
            mqtt_settings(url, **options)


def test_levels_are_per_second_of_the_window():
    audio = np.concatenate([np.full(16000, 0.1, np.float32), np.zeros(16000, np.float32),
                            np.full(8000, 0.5, np.float32)])
    levels = second_levels(audio, 16000)
    assert len(levels) == 2 and levels[0] == pytest.approx(-20.0)
    assert levels[1] == pytest.approx(20 * np.log10(np.sqrt(0.25 * 8000 / 24000)))


def test_the_settings_page_can_switch_the_broker_settings_at_run_time(mqtt_broker, store):
    """What the web page will call: ``HomeSinks.reconfigure_mqtt`` (and the status)."""
    from audio.sinks.factory import HomeSinks

    sub = Subscriber(mqtt_broker, ("audio-analysis/+/availability",))
    home = HomeSinks(store)
    status = home.status_sources()["mqtt"]
    assert status() == {"state": "disabled"}
    home.set_sounds(["dog"])
    home.reconfigure_mqtt(mqtt_settings(mqtt_broker.url, device_id="before"))
    sub.wait_for(lambda m: [x.payload for x in m] == ["online"], WAIT, "before online")
    home.reconfigure_mqtt(mqtt_settings(mqtt_broker.url.replace("//", "//u@"),
                                        device_id="after", password="pw"))
    sub.wait_for(lambda m: len(m) == 3, WAIT, "before offline, after online")
    assert [(m.topic.split("/")[1], m.payload) for m in sub.messages] == [
        ("before", "online"), ("before", "offline"), ("after", "online")]
    shown = status()
    assert shown["device_id"] == "after" and shown["password_set"] and "pw" not in str(shown)
    assert shown["sounds"] == ["dog"]
    home.reconfigure_mqtt(None)
    assert status() == {"state": "disabled"}
    assert "mqtt" not in {c.name for c in store.consumers()}
    home.close()
    sub.close()


FOREIGN_STATE = "victim/alarm_panel/state"
FOREIGN_CONFIG = "homeassistant/device/frontdoor/config"
PLANTED = json.dumps({"cmps": {
    "sound_zz": {"p": "binary_sensor", "state_topic": FOREIGN_STATE},
    "sound_yy": {"p": "binary_sensor", "state_topic": FOREIGN_CONFIG}}})


def _retained(broker: Broker, topics: tuple[str, ...], name: str) -> dict[str, str]:
    """What the broker holds retained on ``topics`` (a fresh subscriber, 1.5 s of them)."""
    sub = Subscriber(broker, topics, name)
    time.sleep(1.5)
    sub.close()
    return {m.topic: m.payload for m in sub.messages if m.retain}


def test_a_planted_discovery_never_makes_the_sink_touch_foreign_topics(mqtt_broker, store):
    """Issue 23: a retained discovery message naming another device's topics as the
    ``state_topic`` of stale components: only this device's own topics are cleared."""
    base, own = "audio-analysis/adv4", "homeassistant/device/adv4/config"
    planter = Subscriber(mqtt_broker, ("planter/none",), "planter")
    for topic, payload in [(FOREIGN_STATE, "ARMED"), (FOREIGN_CONFIG, '{"name": "door"}'),
                           (f"{base}/sound/zz", "ON"), (f"{base}/sound/yy", "OFF"),
                           (own, PLANTED)]:
        planter.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    planter.close()
    watcher = Subscriber(mqtt_broker, (FOREIGN_STATE, FOREIGN_CONFIG, own, f"{base}/sound/+"),
                         "watcher")
    sink = MqttSink(mqtt_settings(mqtt_broker.url, device_id="adv4"), store=store,
                    sounds=["dog"])
    try:
        watcher.wait_for(lambda m: any(x.topic == own and not x.retain for x in m), WAIT,
                         "the new discovery")
        time.sleep(3.0)  # the issue saw the foreign topics wiped 3 s after connecting
    finally:
        sink.close()
        watcher.close()
    live = [(m.topic, m.payload) for m in watcher.messages if not m.retain]
    assert not [t for t, _ in live if not t.startswith((f"{base}/", own))], live
    held = _retained(mqtt_broker, (FOREIGN_STATE, FOREIGN_CONFIG, f"{base}/sound/+"), "after")
    assert held == {FOREIGN_STATE: "ARMED", FOREIGN_CONFIG: '{"name": "door"}',
                    f"{base}/sound/dog": "OFF"}  # zz and yy (ours, stale) cleared
    cmps = [m for m in watcher.messages if m.topic == own][-1].json()["cmps"]
    assert cmps["sound_zz"] == cmps["sound_yy"] == {"p": "binary_sensor"}  # removed
    assert "sound_dog" in cmps


def test_removals_trust_only_component_ids_this_program_could_have_given():
    from audio.sinks.mqtt.discovery import removed, removed_state_topics
    from audio.sinks.mqtt.topics import Topics

    topics = Topics("audio-analysis/adv4", "homeassistant", "adv4")
    sensor = {"p": "binary_sensor", "state_topic": FOREIGN_STATE}
    previous = {"sound_zz": sensor, "sound_a/+/b": sensor, "sound_#": sensor,
                "Sound_Up": sensor, "sound_": sensor, "sound_x": {**sensor, "p": "lock"},
                "sound_event": {"p": "event", "state_topic": FOREIGN_STATE},
                "level": "not a mapping", "sound_" + "a" * 200: sensor}
    gone = removed(previous, {})
    assert gone == {"sound_zz": {"p": "binary_sensor"}, "sound_event": {"p": "event"}}
    assert removed_state_topics(topics, gone) == [
        "audio-analysis/adv4/sound/zz"]  # recomputed from the id; never sound_event's
    assert removed_state_topics(topics, ["sound_a/+/b", "sound_#", "Sound_Up", "sound_",
                                         "sound_a" * 50]) == []
    many = {f"sound_s{i}": sensor for i in range(300)}  # not a discovery of ours
    assert removed(many, {}) == {}


def test_a_planted_discovery_nested_too_deep_is_ignored(mqtt_broker, store):
    """json.loads raises RecursionError on it: raised in paho's callback, it would end
    paho's network thread (nothing read any more: no acknowledgement, no command)."""
    own = "homeassistant/device/adv4/config"
    planter = Subscriber(mqtt_broker, ("planter/none",), "planter")
    planter.client.publish(own, '{"cmps": ' + "[" * 100_000, qos=1,
                           retain=True).wait_for_publish(10)
    planter.close()
    events = "audio-analysis/adv4/events"
    watcher = Subscriber(mqtt_broker, (own, events), "watcher")
    sink = MqttSink(mqtt_settings(mqtt_broker.url, device_id="adv4"), store=store,
                    sounds=["dog"])
    try:
        watcher.wait_for(lambda m: any(x.topic == own and not x.retain for x in m), WAIT,
                         "the new discovery")
        time.sleep(1.0)
        record = _record("start", 1)
        store.append(record)
        sink.handle_sound(record)
        watcher.wait_for(lambda m: any(x.topic == events for x in m), WAIT, "the event")
        assert sink.flush(WAIT) and store.cursor("mqtt") == 1  # its PUBACK was read
    finally:
        sink.close()
        watcher.close()


def test_no_disconnect_before_the_broker_acknowledged_offline(tmp_path, store, caplog):
    """Issue 23: a clean DISCONNECT discards the last will, so it must come only after
    the PUBACK of ``offline``. A broker that does not answer at the stop (SIGSTOP) gets
    no DISCONNECT: once it runs again it publishes the will, and ``offline`` is kept."""
    import signal

    from tests.conftest import require_tool
    from tests.fixtures_mqtt import MOSQUITTO

    require_tool(MOSQUITTO)
    broker = Broker(tmp_path / "mosquitto", debug_log=True).start()
    try:
        sink = _sink(broker, store)
        assert sink.flush(WAIT)
        Subscriber(broker, (f"{BASE}/availability",), "online").wait_for(
            lambda m: m and m[-1].payload == "online", WAIT, "online")
        broker.proc.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            sink.close()
        finally:
            took = time.monotonic() - started
            broker.proc.send_signal(signal.SIGCONT)
        held = _retained(broker, (f"{BASE}/availability",), "after")
        log = broker.log()
    finally:
        broker.stop()
    print(f"\nclose() with the broker stopped: {took:.2f} s")
    assert held == {f"{BASE}/availability": "offline"}
    assert "Received DISCONNECT from audio-analysis-kitchen" not in log
    assert "Client audio-analysis-kitchen closed its connection" in log  # the will
    assert "did not acknowledge 'offline'" in caplog.text
    assert took < 6, took

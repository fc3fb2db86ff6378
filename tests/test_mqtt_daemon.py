"""daemon.py publishing to a real broker (mosquitto on a loopback port), end to end: the
acceptance of issue 16 on a file assembled from real clips (a dog bark, a siren) with
``--listen dog,siren`` and the real YAMNet.

* A subscriber sees the retained discovery with its components, ``online``, ``start``
  then ``end`` for the dog and the siren, ``ON`` then ``OFF`` on their topics, and
  ``offline`` after SIGTERM; after a ``kill -9``, ``offline`` as the last will.
* The broker stopped for 15 s mid-run and restarted, then the daemon killed with ``kill
  -9`` and restarted on the same event store: every sound event record committed (by
  either daemon) reaches the subscriber, in order, at least once (a duplicate carries the
  same id).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_shared
from tests.daemon_process import DaemonProcess
from tests.fixtures_mqtt import Broker, Subscriber, free_port

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
DEVICE = "e2e"
BASE = f"audio-analysis/{DEVICE}"
DISCOVERY = f"homeassistant/device/{DEVICE}/config"
WAIT = 120.0


def assembled(directory: Path) -> Path:
    """[4 s silence][dog bark][6 s silence][siren][4 s silence], 16 kHz (the clips are
    the shared UrbanSound samples; the dog is found at 3.8-8.2 s, the siren 13.4-18.7 s)."""
    from audio.io import mono_blocks, open_audio, write_wav

    root = require_shared("audio", "urbansound_samples")
    clips = []
    for name in ("dogbark", "siren"):
        with open_audio(root / f"{name}.wav") as reader:
            clips.append(np.concatenate(list(mono_blocks(reader, RATE))))
    silence = [np.zeros(s * RATE, np.float32) for s in (4, 6, 4)]
    audio = np.concatenate([silence[0], clips[0], silence[1], clips[1], silence[2]])
    return write_wav(directory / "dog_then_siren.wav", audio, RATE)


class Daemon(DaemonProcess):
    """daemon.py (YAMNet, the assembled file looped at real-time pace, 1 s windows)
    publishing to ``broker``."""

    def __init__(self, tmp_path: Path, name: str, broker: Broker, wav: Path, db: Path,
                 *extra: str) -> None:
        self.port = free_port()
        yamnet = require_shared("models", "yamnet", "yamnet.tflite")
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}
        self.log = tmp_path / f"daemon-{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "daemon.py"), "--source", str(wav),
                 "--min_time", "1", "--backend", "yamnet", "--yamnet_model", str(yamnet),
                 "--listen", "dog,siren", "--port", str(self.port),
                 "--config", str(tmp_path / "config.json"), "--db", str(db),
                 "--mqtt_url", broker.url, "--mqtt_device_id", DEVICE, "--quiet", *extra],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def delivered_all(self, what: str) -> dict:
        return self.wait(lambda s: s["mqtt"]["state"] == "connected"
                         and s["mqtt"]["pending"] == 0, what)



def _events(sub: Subscriber) -> list[tuple[str, str, int]]:
    return [(m.json()["type"], m.json()["sound"], m.json()["id"])
            for m in sub.on(f"{BASE}/events")]


def _payloads(sub: Subscriber, topic: str) -> list[str]:
    return [m.payload for m in sub.on(topic)]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.shared
def test_home_assistant_sees_the_device_its_sounds_and_its_availability(tmp_path,
                                                                        mqtt_broker):
    wav, db = assembled(tmp_path), tmp_path / "events.db"
    sub = Subscriber(mqtt_broker)
    daemon = Daemon(tmp_path, "a", mqtt_broker, wav, db)
    try:
        sub.wait_for(lambda m: len({e[1] for e in _events(sub) if e[0] == "end"}) == 2,
                     WAIT, "the ends of the dog and the siren")
        daemon.delivered_all("delivery")
        code, took = daemon.terminate()
        assert code == 0, daemon.log.read_text()[-3000:]
        assert took < 8, f"SIGTERM took {took:.2f} s"  # 5 s is the goal; load adds to it
        sub.wait_for(lambda m: _payloads(sub, f"{BASE}/availability")[-1] == "offline",
                     WAIT, "offline")
    finally:
        daemon.stop()
    events = _events(sub)
    firsts = [(kind, sound) for kind, sound, _ in events[:4]]
    assert firsts == [("start", "dog"), ("end", "dog"), ("start", "siren"), ("end", "siren")]
    assert events[0][2] == events[1][2] != events[2][2] == events[3][2]  # ids pair up
    for sound in ("dog", "siren"):
        states = _payloads(sub, f"{BASE}/sound/{sound}")
        assert states[0] == "OFF" and "ON" in states
        assert states[states.index("ON"):][:2] == ["ON", "OFF"]
    assert [m.json()["event_type"] for m in sub.on(f"{BASE}/sound_event")][:2] == ["dog",
                                                                                   "siren"]
    assert _payloads(sub, f"{BASE}/availability")[0] == "online"
    assert sub.on(f"{BASE}/level") and sub.on(f"{BASE}/predictions")
    late = Subscriber(mqtt_broker, (DISCOVERY, f"{BASE}/availability"), "late")
    late.wait_for(lambda m: len(m) == 2, WAIT, "the retained discovery and availability")
    late.close()
    assert all(m.retain for m in late.messages)
    assert late.on(f"{BASE}/availability")[0].payload == "offline"
    cmps = late.on(DISCOVERY)[0].json()["cmps"]
    assert {k: c["p"] for k, c in cmps.items()} == {
        "sound_dog": "binary_sensor", "sound_siren": "binary_sensor",
        "sound_event": "event", "level": "sensor", "detection": "switch"}
    assert cmps["sound_dog"]["device_class"] == "sound"
    assert cmps["sound_event"]["event_types"] == ["dog", "siren"]
    # kill -9: the broker publishes the last will.
    daemon = Daemon(tmp_path, "b", mqtt_broker, wav, db)
    try:
        count = len(_payloads(sub, f"{BASE}/availability"))
        sub.wait_for(lambda m: len(_payloads(sub, f"{BASE}/availability")) > count, WAIT,
                     "online again")
        assert _payloads(sub, f"{BASE}/availability")[-1] == "online"
        daemon.kill9()
        sub.wait_for(lambda m: _payloads(sub, f"{BASE}/availability")[-1] == "offline",
                     WAIT, "the last will")
    finally:
        daemon.stop()
        sub.close()


def _committed(db: Path) -> list[tuple[str, str, int]]:
    """Every sound event record in the store, in order, as (kind, sound, id)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT body FROM records WHERE kind = 'sound' ORDER BY seq")
        return [(b["kind"], b["sound"], b["id"]) for b in (json.loads(r) for (r,) in rows)]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.shared
def test_no_event_is_lost_across_a_broker_outage_and_a_kill(tmp_path, mqtt_broker):
    wav, db = assembled(tmp_path), tmp_path / "events.db"
    sub = Subscriber(mqtt_broker, (f"{BASE}/events",))
    daemons = []
    try:
        a = Daemon(tmp_path, "a", mqtt_broker, wav, db)
        daemons.append(a)
        sub.wait_for(lambda m: len(m) >= 2, WAIT, "the first event")
        mqtt_broker.stop()  # 15 s without a broker: records are committed meanwhile
        a.wait(lambda s: s["mqtt"]["state"] == "disconnected", "the disconnect")
        before = a.status()["loop"]["sound_records"]
        time.sleep(15)
        during = a.status()["loop"]["sound_records"] - before
        mqtt_broker.start()
        a.delivered_all("delivery after the broker's restart")
        records = a.status()["loop"]["sound_records"]
        a.wait(lambda s: s["loop"]["sound_records"] > records, "a record to kill it on")
        a.kill9()  # maybe before the broker acknowledged it
        b = Daemon(tmp_path, "b", mqtt_broker, wav, db)
        daemons.append(b)
        b.wait(lambda s: s["loop"]["sound_records"] >= 2, "the restarted daemon's events")
        b.delivered_all("delivery after the kill")
        code, _took = b.terminate()
        assert code == 0, b.log.read_text()[-3000:]
        committed = _committed(db)
        sub.wait_for(lambda m: len(m) >= len(committed), WAIT, "every committed record")
        time.sleep(1.0)
    finally:
        for daemon in daemons:
            daemon.stop()
        sub.close()
    received = _events(sub)
    first_seen = list(dict.fromkeys(received))
    print(f"\n{len(committed)} sound records committed ({during} during the outage), "
          f"{len(received)} messages received, {len(received) - len(first_seen)} duplicates")
    assert during >= 1  # the outage did hold records back
    assert first_seen == committed  # none lost, order kept; duplicates only repeat
    assert len(received) - len(first_seen) <= 16  # at most what one kill left in flight


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def _how_it_closed(log: str, client: str) -> str:
    """How ``client``'s last connection ended in a slice of mosquitto's debug log:
    ``acknowledged`` (its ``offline`` PUBLISH, the PUBACK, then its DISCONNECT),
    ``unacknowledged`` (a DISCONNECT before the PUBACK), ``no offline`` (a DISCONNECT
    without it: the will discarded, the retained ``online`` stays), ``last will`` (the
    socket closed without DISCONNECT: the broker published the will)."""
    offline = re.search(rf"Received PUBLISH from {client} \(d\d, q1, r1, m(\d+), "
                        rf"'{BASE}/availability', \.\.\. \(7 bytes\)\)", log)
    disconnect = log.find(f"Received DISCONNECT from {client}")
    if disconnect < 0:
        return "last will" if f"Client {client} closed its connection" in log else "open"
    if offline is None or offline.start() > disconnect:
        return "no offline"
    puback = log.find(f"Sending PUBACK to {client} (m{offline.group(1)},", offline.end())
    return "acknowledged" if 0 <= puback < disconnect else "unacknowledged"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.shared
def test_offline_is_acknowledged_before_the_connection_closes_at_every_sigterm(tmp_path):
    """Issue 23: after SIGTERM the retained ``availability`` stayed ``online`` in 1 of 4
    runs (MQTT and a webhook). 20 starts and SIGTERMs at different moments: each time
    the broker's log shows ``offline`` received and acknowledged before the DISCONNECT,
    and the retained value is ``offline``."""
    broker = Broker(tmp_path / "mosquitto", debug_log=True).start()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    wav, db = assembled(tmp_path), tmp_path / "events.db"
    outcomes, took = [], []
    try:
        for run in range(20):
            daemon = Daemon(tmp_path, f"run{run}", broker, wav, db, "--webhook", hook)
            try:
                daemon.wait(lambda s: s["mqtt"]["state"] == "connected"
                            and s["loop"].get("windows_processed", 0) >= 1, "running")
                time.sleep(run % 5 * 0.4)  # stopped at different moments of the stream
                mark = len(broker.log())
                code, seconds = daemon.terminate()
            finally:
                daemon.stop()
            assert code == 0, daemon.log.read_text()[-3000:]
            assert "did not acknowledge" not in daemon.log.read_text()
            time.sleep(0.3)  # the broker's log is written as it goes
            retained = Subscriber(broker, (f"{BASE}/availability",), f"check{run}")
            retained.wait_for(lambda m: len(m) >= 1, WAIT, "the retained availability")
            retained.close()
            closed = _how_it_closed(broker.log()[mark:], f"audio-analysis-{DEVICE}")
            outcomes.append((closed, retained.messages[0].payload))
            took.append(seconds)
    finally:
        receiver.shutdown()
        broker.stop()
    failed = [o for o in outcomes if o != ("acknowledged", "offline")]
    print(f"\n{len(outcomes)} SIGTERMs: {len(failed)} without an acknowledged offline "
          f"{failed}; shutdown {min(took):.2f}-{max(took):.2f} s, median "
          f"{statistics.median(took):.2f} s")
    assert not failed, outcomes
    assert max(took) < 8, took  # 5 s is the goal; a loaded machine adds to it

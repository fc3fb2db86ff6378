"""A real MQTT broker for the tests: Debian's mosquitto on a free loopback port, and a
subscriber that records everything it receives.

The broker runs with its own configuration (``listener PORT 127.0.0.1``, anonymous
clients, persistence in the test's directory) and is stopped by its pid; ``stop()`` then
``start()`` restarts it on the same port with what it persisted (retained messages, the
subscribers' sessions and the QoS 1 messages queued for them), like a broker that was
restarted by its service manager. The tests skip where mosquitto is not installed
(``scripts/setup.sh --with-test-tools`` installs it) and fail in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:``port`` (see the module docstring)."""

    def __init__(self, directory: Path, *, debug_log: bool = False) -> None:
        """``debug_log``: mosquitto logs every packet (``log()`` shows what each client
        sent and was acknowledged, in order)."""
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {directory}/\nautosave_interval 1\n"
            f"log_dest file {directory}/mosquitto.log\nmax_queued_messages 10000\n"
            + ("log_type all\n" if debug_log else "")
            # As root, mosquitto changes to the user "mosquitto", which may not write in
            # the test's directory (pytest makes it 0700): no log, no persistence.
            + ("user root\n" if os.geteuid() == 0 else ""))

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file), and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass(frozen=True)
class Received:
    topic: str
    payload: str
    retain: bool
    time: float

    def json(self) -> object:
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed (QoS 1) to ``topics`` with a persistent session, so that
    what is published while the broker restarts still reaches it; records every message."""

    def __init__(self, broker: Broker, topics: tuple[str, ...] = ("#",),
                 client_id: str = "test-subscriber") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the test subscriber could not subscribe")

    def _on_message(self, _client: object, _userdata: object, message: object) -> None:
        received = Received(message.topic, message.payload.decode("utf-8", "replace"),  # type: ignore[attr-defined]
                            bool(message.retain), time.time())  # type: ignore[attr-defined]
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float,
                 what: str) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"timed out waiting for {what}; topics seen: "
                                         f"{topics}")
                self._cond.wait(min(left, 0.5))
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto on a free loopback port (stopped at the end of the test)."""
    require_tool(MOSQUITTO)
    broker = Broker(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()

"""``<base>/availability``: what the sink says about itself, and how it leaves the broker.

Home Assistant shows the device unavailable when the retained value is ``offline``. It is
``online`` after each connection, and ``offline`` as the last will and at a stop. A stop
must never leave ``online`` behind, whatever the timing:

* a clean DISCONNECT makes the broker discard the will, so it is sent only once the
  broker has acknowledged (PUBACK) the ``offline`` published just before it;
* without that acknowledgement within a bound, the connection is dropped without
  DISCONNECT: the broker then publishes the will, ``offline`` too;
* a connection that comes up while the sink stops (paho reconnects on its own) says
  ``offline``, not ``online``: the choice and the publication are made under one lock, so
  an ``online`` can never be queued after the stop's ``offline``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from audio.sinks.mqtt.topics import OFFLINE, ONLINE


class Availability:
    """Publishes ``online``/``offline`` (retained, QoS 1) on ``topic`` for ``client``;
    ``stopping()`` says whether the sink is being stopped."""

    def __init__(self, client: mqtt.Client, topic: str, stopping: Callable[[], bool]) -> None:
        self._client = client
        self._topic = topic
        self._stopping = stopping
        self._lock = threading.Lock()  # never held while waiting, nor with the sink's lock

    def connected(self) -> None:
        """Called in ``on_connect``: ``online``, or ``offline`` when the sink is stopping."""
        with self._lock:
            payload = OFFLINE if self._stopping() else ONLINE
            self._client.publish(self._topic, payload, qos=1, retain=True)

    def say_offline(self, wait: float) -> bool:
        """Publish ``offline``; True once the broker acknowledged it (within ``wait`` s),
        False when it did not or there is no connection (call it once ``stopping()``)."""
        with self._lock:
            if not self._client.is_connected():
                return False
            info = self._client.publish(self._topic, OFFLINE, qos=1, retain=True)
        try:
            info.wait_for_publish(wait)
        except (RuntimeError, ValueError):  # not queued, or the connection broke
            return False
        return info.is_published()

    def drop(self) -> None:
        """Close the socket without DISCONNECT (the broker publishes the last will)."""
        sock = self._client.socket()
        with contextlib.suppress(OSError, AttributeError):
            sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]

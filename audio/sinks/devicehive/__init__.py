"""DeviceHive sink: one notification per classified window and one ``soundEvent`` per sound
event start and end, delivered once and in order.

The ``devicehive`` client library (2.1.6, 2018) is used for the protocol (authentication,
token refresh, ``put_device``, ``notification/insert``) but not for its connection
management, which does not fit a daemon:

* ``DeviceHive.connect()`` blocks its caller, retries 10 times and then raises, and its
  polling loops sleep 1 µs (an idle connection burns a quarter of a core). We call it with
  ``transport_keep_alive=False`` (it then only starts the transport thread and returns) and
  pass sleep times that make idle cost ~0; our own thread owns reconnection, with
  exponential backoff that never gives up.
* A WebSocket request whose connection drops waits 30 s for a reply that never comes, and a
  server that closes the connection cleanly leaves the transport "alive" forever. Every
  request therefore runs on a per-connection executor thread; the sink thread waits for it
  in short slices, watching the socket, and abandons the connection (and the thread, which
  ends on its own) as soon as the socket is gone or ``request_timeout`` passes.
* A notification in flight when the connection drops may or may not have been stored. Each
  notification carries a unique client timestamp (strictly increasing, ms precision); after
  reconnecting, the sink lists the device's latest notifications and re-sends only when it
  is not among them. That is what makes delivery exactly-once, in order.

The loop thread only appends to a bounded deque (``handle`` never blocks); when it is full,
the oldest notification is dropped and counted.

Modules: ``settings`` (what to connect to, validated), ``notification`` (the wire form),
``connection`` (one library connection with deadlines), ``sink`` (the queue and the
sender thread).
"""

from __future__ import annotations

from audio.sinks.devicehive.notification import (
    SOUND_NOTIFICATION_NAME,
    OutgoingNotification,
    build_notification,
    build_sound_notification,
    format_timestamp,
)
from audio.sinks.devicehive.settings import (
    DEFAULT_NOTIFICATION_NAME,
    DEFAULT_QUEUE_SIZE,
    SCHEMES,
    DeviceHiveConfigError,
    DeviceHiveSettings,
)
from audio.sinks.devicehive.sink import DeviceHiveSink

__all__ = [
    "DEFAULT_NOTIFICATION_NAME",
    "DEFAULT_QUEUE_SIZE",
    "SCHEMES",
    "SOUND_NOTIFICATION_NAME",
    "DeviceHiveConfigError",
    "DeviceHiveSettings",
    "DeviceHiveSink",
    "OutgoingNotification",
    "build_notification",
    "build_sound_notification",
    "format_timestamp",
]

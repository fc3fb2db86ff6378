"""DeviceHive sink: one notification per classified window and one ``soundEvent`` per sound
event start and end, delivered once and in order.

The ``devicehive`` client library (2.1.6, 2018) is used for the protocol (authentication,
token refresh, ``put_device``, ``notification/insert``) but not for its connection
management, which does not fit a daemon:

* ``DeviceHive.connect()`` blocks its caller, retries 10 times and then raises, and its
  polling loops sleep 1 µs (an idle connection burns a quarter of a core). We start the
  library's transport ourselves, as ``connect(transport_keep_alive=False)`` does (it only
  starts the transport thread and returns), with sleep times that make idle cost ~0; our
  own thread owns reconnection, with exponential backoff that never gives up.
* A WebSocket request whose connection drops waits 30 s for a reply that never comes, and a
  server that closes the connection cleanly leaves the transport "alive" forever. Every
  request therefore runs on its own daemon thread; the sink thread waits for it in short
  slices, watching the socket, and abandons the connection as soon as the socket is gone
  or ``request_timeout`` passes.
* A notification in flight when the connection drops may or may not have been stored. Each
  notification carries a unique client timestamp (strictly increasing, ms precision); after
  reconnecting, the sink lists the device's latest notifications and re-sends only when it
  is not among them. That is what makes delivery exactly-once, in order. A server that
  refuses the lookup (a token that may not list notifications) gets it again: at least
  once, the possible duplicate counted.
* The library's transports leak a thread and a socket per failed connection attempt and
  wait 30 s for a reply whatever happens; ours (``transport``) end both on every failure,
  abandonment or close.

With an event store (the daemon), the sink delivers from the store's outbox: nothing
committed is lost, whatever happens to the process, and a restart resumes from the
cursor (``feeds``). Without one (library use) the loop thread only appends to a bounded
deque (``handle`` never blocks); when it is full, the oldest notification is dropped and
counted.

Modules: ``settings`` (what to connect to, validated; ``redact_url``), ``notification``
(the wire form), ``transport`` (the library's transports, made to end), ``connection``
(one connection with deadlines), ``feeds`` (the outbox or the in-memory queue), ``sink``
(the sender thread).
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
    is_redacted_of,
    redact_url,
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
    "is_redacted_of",
    "redact_url",
]

"""DeviceHive sink (see ``audio.sinks.devicehive.sink``): the names callers import."""

from __future__ import annotations

from audio.sinks.devicehive.sink import (
    DEFAULT_NOTIFICATION_NAME,
    DEFAULT_QUEUE_SIZE,
    SCHEMES,
    DeviceHiveConfigError,
    DeviceHiveSettings,
    DeviceHiveSink,
    OutgoingNotification,
    build_notification,
    format_timestamp,
)

__all__ = [
    "DEFAULT_NOTIFICATION_NAME",
    "DEFAULT_QUEUE_SIZE",
    "SCHEMES",
    "DeviceHiveConfigError",
    "DeviceHiveSettings",
    "DeviceHiveSink",
    "OutgoingNotification",
    "build_notification",
    "format_timestamp",
]

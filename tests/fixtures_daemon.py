"""Fixtures for the daemon, web and DeviceHive tests: a running DeviceHive test server and
a way to make loop events without running a model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from audio.events import Event, Prediction
from tests.dh_server import DeviceHiveTestServer


@pytest.fixture
def dh_server() -> Iterator[DeviceHiveTestServer]:
    """A DeviceHive v3 test server on 127.0.0.1 (stopped at the end of the test)."""
    server = DeviceHiveTestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """``make_event(i)`` -> an Event with id ``i``, two predictions and a 0.96 s window."""

    def factory(i: int, labels: tuple[str, ...] = ("Speech", "Music"),
                timestamp: float | None = None) -> Event:
        predictions = tuple(Prediction(label, round(0.9 / (k + 1) - i * 1e-4, 6))
                            for k, label in enumerate(labels))
        return Event(id=i, timestamp=time.time() if timestamp is None else timestamp,
                     start=0.96 * i, end=0.96 * (i + 1), predictions=predictions,
                     source="test")

    return factory

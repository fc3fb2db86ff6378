"""Fixtures for the daemon, web and DeviceHive tests: a running DeviceHive test server and
a way to make loop events without running a model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from audio.events import Event, Prediction, SoundEvent
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


@pytest.fixture
def make_sound() -> Callable[..., SoundEvent]:
    """``make_sound(kind, id)`` -> a ``dog`` SoundEvent record (start 12.4 s, end 15.1 s)."""

    def factory(kind: str, id_: int = 1, sound: str = "dog", start: float = 12.4,
                end: float = 15.1, start_time: float | None = 1_700_000_012.4,
                source: str = "mic") -> SoundEvent:
        end_time = None if start_time is None else start_time + end - start
        return SoundEvent(kind=kind, id=id_, sound=sound, classes=("Dog", "Bark"),
                          start=start, end=end, peak_score=0.83, mean_score=0.61,
                          peak_dbfs=-18.2, mean_dbfs=-21.0, source=source,
                          start_time=start_time, end_time=end_time)

    return factory


def random_model_args(directory: Path) -> list[str]:
    """daemon.py flags for random-weight VGGish files in the official formats (benches:
    Google's checkpoint cannot be fetched here; the cost is the same). The classifier is
    the shipped bundle."""
    from tests.fixtures_vggish import (
        random_vggish_variables,
        write_official_checkpoint,
        write_pca_params,
    )

    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = directory / "vggish_model.ckpt"
    if not checkpoint.exists():
        write_official_checkpoint(checkpoint, random_vggish_variables())
    pca = directory / "vggish_pca_params.npz"
    if not pca.exists():
        write_pca_params(pca)
    return ["--vggish_checkpoint", str(checkpoint), "--pca_params", str(pca)]


@pytest.fixture(scope="session")
def classifier_bundle() -> Path:
    """The shipped classifier bundle (committed under models/)."""
    from yt8m.bundle import resolve_bundle_path

    shipped = resolve_bundle_path(None)
    if not (shipped / "config.json").is_file():
        pytest.fail(f"the shipped classifier bundle is missing: {shipped}", pytrace=False)
    return shipped

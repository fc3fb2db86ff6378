"""The sink that hands every event to a function (tests, benchmarks, embedding)."""

from __future__ import annotations

from collections.abc import Callable

from audio.events import Event


class CallbackSink:
    """Calls ``function(event)`` for every event (glue for tests, benchmarks, embedding)."""

    def __init__(self, function: Callable[[Event], None]) -> None:
        self._function = function

    def handle(self, event: Event) -> None:
        self._function(event)

    def close(self) -> None:
        pass

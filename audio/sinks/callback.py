"""The sink that hands every event to a function (tests, benchmarks, embedding)."""

from __future__ import annotations

from collections.abc import Callable

from audio.events import Event, SoundEvent


class CallbackSink:
    """Calls ``function(event)`` for every window and ``on_sound(record)`` for every sound
    event record (glue for tests, benchmarks, embedding); sound records are ignored
    without ``on_sound``."""

    def __init__(self, function: Callable[[Event], None],
                 on_sound: Callable[[SoundEvent], None] | None = None) -> None:
        self._function = function
        self._on_sound = on_sound

    def handle(self, event: Event) -> None:
        self._function(event)

    def handle_sound(self, record: SoundEvent) -> None:
        if self._on_sound is not None:
            self._on_sound(record)

    def close(self) -> None:
        pass

"""Run-time controls of the processing loop that other threads set: detection on or off.

Home automation pauses detection ("not while we are home"): Home Assistant's switch sends
``OFF`` on ``<base>/detect/set`` (``audio.sinks.mqtt``), and the web page's toggle turns
the same switch (``web.app.WebApp.set_detection``). The loop reads the switch on its own thread before each piece of audio
(``audio.loop.ProcessingLoop``): while it is off, nothing is pushed into the event stream,
so no sound event starts; the events active when it went off end at once (their ``end``
records are delivered, so every ``ON`` gets its ``OFF``). Windows are still classified,
logged and shown: what is paused is detection, not listening.

Whoever shows the state (the MQTT sink's retained ``detect/state``) subscribes and is told
of every change, whoever made it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class DetectionSwitch:
    """Whether sound events are followed now; ``set`` from any thread."""

    def __init__(self, on: bool = True) -> None:
        self._on = on
        self._lock = threading.Lock()
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def on(self) -> bool:
        return self._on

    def set(self, on: bool, by: str = "") -> bool:
        """Turn detection on or off; True when that changed it. Listeners are told after
        the change, on the caller's thread (they must not block)."""
        with self._lock:
            changed = self._on != on
            self._on = on
            listeners = list(self._listeners)
        if changed:
            logger.info("sound event detection %s%s", "resumed" if on else "paused",
                        f" ({by})" if by else "")
            for listener in listeners:
                try:
                    listener(on)
                except Exception:
                    logger.exception("a detection switch listener failed")
        return changed

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(on)`` after every change."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[bool], None]) -> None:
        """Stop telling ``listener`` (a sink replaced at run time); unknown ones are ignored."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

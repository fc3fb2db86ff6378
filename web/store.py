"""The last events of the loop, kept in memory for the pages, the JSON API and the stream:
classified windows, and beside them the last sound events (one entry per event, its
``start`` record replaced by its ``update`` and ``end`` records as they come)."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from audio.events import Event, SoundEvent

MAX_EVENTS = 1000
MAX_SOUNDS = 200


class EventStore:
    """The last events, for the pages and the API; also a loop sink (``handle`` is O(1))."""

    def __init__(self, maxlen: int = MAX_EVENTS, max_sounds: int = MAX_SOUNDS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._sounds: deque[dict[str, Any]] = deque(maxlen=max_sounds)
        self.sounds_total = 0
        self._cond = threading.Condition()
        self.total = 0
        self.closed = False

    def handle(self, event: Event) -> None:
        record = {"id": event.id, "timestamp": event.timestamp, "start": event.start,
                  "end": event.end, "source": event.source,
                  "predictions": [p.as_dict() for p in event.predictions]}
        with self._cond:
            if self._events and record["id"] <= self._events[-1]["id"]:
                # ids must grow for the ?since= cursor; a restarted loop numbers from 1 again
                record["id"] = self._events[-1]["id"] + 1
            self._events.append(record)
            self.total += 1
            self._cond.notify_all()

    def handle_sound(self, record: SoundEvent) -> None:
        """Keep the event: a ``start`` adds it, later records of it replace its entry."""
        entry = {**record.as_dict(), "active": record.kind != "end"}
        with self._cond:
            for i in range(len(self._sounds) - 1, -1, -1):
                if self._sounds[i]["id"] == record.id and self._sounds[i]["active"]:
                    self._sounds[i] = entry
                    break
            else:
                self._sounds.append(entry)
                self.sounds_total += 1

    def sounds(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last ``limit`` sound events, newest first (active ones with their latest
        record: ``kind`` start or update, ``active`` true)."""
        with self._cond:
            return [dict(e) for e in list(reversed(self._sounds))[:limit]]

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def last_id(self) -> int:
        with self._cond:
            return self._events[-1]["id"] if self._events else 0

    def newest(self, since: int = 0, limit: int = 10) -> list[dict[str, Any]]:
        """Events with id > ``since``, newest first, at most ``limit``."""
        with self._cond:
            out = []
            for record in reversed(self._events):
                if record["id"] <= since or len(out) >= limit:
                    break
                out.append(record)
            return out

    def page(self, since: int, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Like ``newest``, from the events with id < ``before`` (a history page)."""
        if before is None:
            return self.newest(since, limit)
        with self._cond:
            older = [r for r in self._events if since < r["id"] < before]
        return older[::-1][:limit]

    def after(self, last_id: int) -> list[dict[str, Any]]:
        """Events with id > ``last_id``, oldest first."""
        with self._cond:
            return [r for r in self._events if r["id"] > last_id]

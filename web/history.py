"""Where the pages, the API and the stream read events from: the daemon's durable store
(:class:`audio.store.Store`), or, without one (tests, library use), the in-memory
:class:`web.store.EventStore`.

Both are read through one small interface, :class:`History`. Ids are the store's ``seq``
(monotonic across restarts, shared by windows and sound events), so a page's cursor
(``?before=``) and an SSE client's ``Last-Event-ID`` keep their meaning across restarts.

Live rows: the store has no hook that tells a reader about a commit, so a watcher thread
polls ``last_seq()`` (a lookup of the largest rowid, some 20 µs) every
``POLL_INTERVAL_S``; the stream and the API's cache read the watcher's value, never the
database, to learn whether anything is new. A row reaches a stream within about
``POLL_INTERVAL_S`` plus the stream's own wait.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from audio.store import SOUND, WINDOW, Record, Store, StoreError
from web.store import EventStore

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1
SOUND_SCAN_LIMIT = 5000
"""Sound records read at most to collect the last N sound events (each event has a start,
its updates and an end)."""


class History(Protocol):
    durable: bool

    def last_id(self) -> int: ...

    def current_last_id(self) -> int: ...

    def counts(self) -> dict[str, Any]: ...

    def newest(self, since: int, before: int | None, limit: int) -> list[dict[str, Any]]: ...

    def after(self, last_id: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]: ...

    def sounds(self, limit: int) -> list[dict[str, Any]]: ...

    def sounds_total(self) -> int | None: ...

    def close(self) -> None: ...


class MemoryHistory:
    """The last events kept in memory by an :class:`EventStore` (lost on restart)."""

    durable = False

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def last_id(self) -> int:
        return self.store.last_id

    def current_last_id(self) -> int:
        return self.store.last_id

    def counts(self) -> dict[str, Any]:
        return {"total": self.store.total, "last_id": self.store.last_id}

    def newest(self, since: int, before: int | None, limit: int) -> list[dict[str, Any]]:
        return self.store.page(since, before, limit)

    def after(self, last_id: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        return [(r["id"], "prediction", r) for r in self.store.after(last_id)[:limit]]

    def sounds(self, limit: int) -> list[dict[str, Any]]:
        return self.store.sounds(limit)

    def sounds_total(self) -> int | None:
        return self.store.sounds_total

    def close(self) -> None:
        self.store.close()


def window_json(record: Record) -> dict[str, Any]:
    """A window row as the API shows it: the event's fields, ``id`` the store's seq (the
    loop's own window number, which restarts with the process, as ``window``)."""
    data = record.item.as_dict()
    return {**data, "window": data["id"], "id": record.seq, "stored": record.stored}


def sound_json(record: Record) -> dict[str, Any]:
    item = record.item
    return {**item.as_dict(), "seq": record.seq, "active": item.kind != "end"}


class StoreHistory:
    """History read from the durable store; a watcher thread follows its last seq."""

    durable = True

    def __init__(self, store: Store, poll_interval: float = POLL_INTERVAL_S) -> None:
        self.store = store
        self._interval = poll_interval
        self._last = store.last_seq()
        self._count_lock = threading.Lock()
        self._counted_to = 0
        self._sounds_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="web-store-watcher",
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._last = self.store.last_seq()
            except StoreError as error:  # closed under us, or a disk error: say it once
                if not self._stop.is_set():
                    logger.warning("web: cannot follow the event store: %s", error)
                return

    def last_id(self) -> int:
        """The last seq the watcher saw (at most ``POLL_INTERVAL_S`` old; no query)."""
        return self._last

    def current_last_id(self) -> int:
        """The last seq now (one query)."""
        self._last = max(self._last, self.store.last_seq())
        return self._last

    def counts(self) -> dict[str, Any]:
        stats = self.store.stats()
        return {"total": stats.rows, "last_id": self._last, "first_id": stats.first_seq,
                "durable": True}

    def newest(self, since: int, before: int | None, limit: int) -> list[dict[str, Any]]:
        records = self.store.history(before_seq=before, limit=limit, kinds=[WINDOW])
        return [window_json(r) for r in records if r.seq > since]

    def after(self, last_id: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        out = []
        for record in self.store.since(last_id, limit=limit):
            if record.kind == SOUND:
                out.append((record.seq, "sound", sound_json(record)))
            else:
                out.append((record.seq, "prediction", window_json(record)))
        return out

    def sounds(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` sound events, newest first, each with its latest record."""
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        before, scanned = None, 0
        while len(seen) < limit and scanned < SOUND_SCAN_LIMIT:
            page = self.store.history(before_seq=before, limit=200, kinds=[SOUND])
            if not page:
                break
            for record in page:
                item = record.item
                key = (item.id, item.source, item.start_time, item.start)
                if key not in seen and len(seen) < limit:
                    seen[key] = sound_json(record)
            before, scanned = page[-1].seq, scanned + len(page)
        return list(seen.values())

    def sounds_total(self) -> int | None:
        """Sound events started: those in the store when first asked, plus each one since
        (each call counts only the rows added after the previous one; pruning does not
        lower the figure)."""
        with self._count_lock:
            added, self._counted_to = self.store.count_sound_starts(self._counted_to)
            self._sounds_total += added
            return self._sounds_total

    def close(self) -> None:
        """Stop the watcher (the store itself belongs to the daemon, which closes it)."""
        self._stop.set()
        self._thread.join(1.0)


def history_for(source: EventStore | Store | History) -> History:
    if isinstance(source, EventStore):
        return MemoryHistory(source)
    if isinstance(source, Store):
        return StoreHistory(source)
    return source

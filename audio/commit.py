"""Ids for what the loop hands its sinks, and the commit to the event store before they see it.

Without a store (``capture.py``, library use) windows are numbered 1, 2, 3... per run and
sound event records keep the detector's ids (1, 2, 3... per run, shared by an event's
``start``, ``update`` and ``end``).

With a store (``daemon.py``) every window and every sound event record is committed
before any sink sees it, and the ids come from the store's ``seq``, which is monotonic
across restarts and never reused:

* a window's ``Event.id`` is its row's seq;
* a sound event's ``SoundEvent.id`` is the seq of its ``start`` record: its ``update`` and
  ``end`` records carry the same id (as they did with the detector's ids), each in a row
  of its own with a larger seq.

So an id seen on the page, in ``/api/events``, in a DeviceHive notification or in the log
is the same everywhere and is never given twice, before or after a restart. What is stored
is exactly what the sinks get (the row holds the id), so a row read back from the outbox
after a crash builds the same notification. Nothing is ever shown or sent that the store
does not hold.

When the store cannot be written
--------------------------------
A full file system, or another program holding the file's write lock for longer than
the busy timeout, makes a commit fail. That record and every later one are then kept in
order in a bounded queue in memory (a window without its audio: the store keeps none)
and retried at most every ``RETRY_SECONDS``, each retry waiting at most
``RETRY_BUSY_TIMEOUT`` for a lock, so that the loop keeps up with the audio meanwhile
(the loop also retries when no audio comes). The queue is committed in a few
transactions as soon as the store can be written again; the sinks then get its records,
late but in order, with the ids they would have had. (On a full file system the store
first truncates its WAL, which is often what filled it: :meth:`audio.store.Store.append_numbered`.)

If the queue overflows (``DEFAULT_BACKLOG`` records: some 17 minutes of 1 s windows),
its oldest record is dropped, and counted:

* a window, or an event's ``update``: it is gone;
* an event's ``start``: the whole event goes, its queued and later records too, so that
  neither a sink nor the store ever gets an update or end without its start;
* an event's ``end``: its start was committed (it is older than anything queued), so an
  end is owed: a synthetic one (the lost end's figures, ``synthetic="store_overflow"``)
  is committed, before the queue, as soon as the store can be written. Only events open
  when the outage began can owe one.

What the queue still holds when the stream ends (one last try is made, waiting the
store's full busy timeout) is lost, and said. A start committed before such an end then
has no end in the store; nor has one when the daemon was killed. So a run that starts
with a store first closes what an earlier run left open (:meth:`Committer.close_unfinished`):
each such event gets an ``end`` marked ``synthetic="unfinished"`` (the figures of its last
stored record), committed and delivered like any record, so that no sensor stays on and
no webhook receiver keeps a start without an end.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Union, cast

from audio.events import Event, SoundEvent
from audio.store import StoreError
from audio.store.records import encode

if TYPE_CHECKING:
    from audio.store import Store

logger = logging.getLogger(__name__)

Item = Union[Event, SoundEvent]  # noqa: UP007 (a runtime alias, as in audio.store)

DEFAULT_BACKLOG = 1000
"""Records kept in memory while the store cannot be written (about 1 KB each)."""
RETRY_SECONDS = 1.0
RETRY_BUSY_TIMEOUT = 0.05
"""Seconds a retry waits for another program's lock (the first try waits the store's)."""
FLUSH_CHUNK = 64
"""Queued records committed per transaction (a small WAL growth on a small disk)."""
STORE_OVERFLOW = "store_overflow"
UNFINISHED = "unfinished"
COUNTERS = ("store_errors", "store_failed_writes", "store_recovered", "store_synthetic_ends")
"""``store_errors``: records never stored (so never delivered): dropped from a full queue,
or still queued when the stream ended; ``store_failed_writes``: commits that failed;
``store_recovered``: records committed from the queue; ``store_synthetic_ends``."""


class Committer:
    """Numbers windows and sound events, and commits them to ``store`` when there is one
    (queued and retried while it cannot be written: the module's docstring).

    Used on the loop's thread only (``stats()`` from any).
    """

    def __init__(self, store: Store | None = None, *, backlog: int = DEFAULT_BACKLOG,
                 retry_seconds: float = RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if backlog < 1:
            raise ValueError(f"the backlog must hold at least one record, got {backlog}")
        self.store = store
        self._window_ids = itertools.count(1)
        self._sound_ids: dict[int, int] = {}
        """The detector's id of each open sound event whose start is committed -> the id
        it was given (the seq of its start record); forgotten at its end."""
        self._queue: deque[Item] = deque()
        self._owed: dict[int, SoundEvent] = {}
        """Synthetic ends to commit (by detector id) before the queue."""
        self._abandoned: set[int] = set()
        """Detector ids of events whose start was dropped: their records are dropped."""
        self._limit = backlog
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._next_try = 0.0
        self._failing_since: float | None = None
        self._overflowed = False
        self._recovered = 0
        """Records committed from the queue since the outage began."""
        self._counts = dict.fromkeys(COUNTERS, 0)

    @property
    def waiting(self) -> int:
        """Records waiting for the store to be writable (synthetic ends included)."""
        return len(self._owed) + len(self._queue)

    def stats(self) -> dict[str, int]:
        return {**self._counts, "store_queued": self.waiting}

    def commit(self, item: Item) -> list[Item]:
        """What may now go to the sinks, in order: ``item`` numbered and, with a store,
        committed, after the queued records that could be committed now. Empty when
        ``item`` had to be queued (or was dropped)."""
        if self.store is None:
            if isinstance(item, Event):
                return [replace(item, id=next(self._window_ids))]
            return [item]
        if isinstance(item, SoundEvent) and item.id in self._abandoned:
            self._drop_abandoned(item)
            return []
        committed = self.retry() if self.waiting else []
        if self.waiting:
            self._enqueue(item)
            return committed
        try:
            return committed + self._store([item], None)
        except StoreError as error:
            self._failed(error)
            self._enqueue(item)
        except Exception:
            logger.exception("not delivered: %s could not be stored", _what(item))
            self._drop(item)
        return committed

    def window(self, event: Event) -> Event:
        """``event`` numbered and committed now, without the queue (a caller that hands
        one item to its sinks itself, as the sinks' tests do); raises StoreError."""
        return cast(Event, self._now(event))

    def sound(self, record: SoundEvent) -> SoundEvent:
        """``record`` with its event's id, committed now (as :meth:`window`)."""
        return cast(SoundEvent, self._now(record))

    def _now(self, item: Item) -> Item:
        if self.store is None:
            return self.commit(item)[0]
        return self._store([item], None, orphans=True)[0]

    def retry(self, *, force: bool = False,
              busy_timeout: float | None = RETRY_BUSY_TIMEOUT) -> list[Item]:
        """Commit what is waiting, when a retry is due (or ``force``); returns what was
        committed, in order, for the sinks. ``busy_timeout`` None: the store's own."""
        if not self.waiting or (not force and self._clock() < self._next_try):
            return []
        committed: list[Item] = []
        try:
            if self._owed:
                committed += self._store(list(self._owed.values()), busy_timeout)
                self._counts["store_synthetic_ends"] += len(self._owed)
                self._owed.clear()
            while self._queue:
                chunk = list(itertools.islice(self._queue, FLUSH_CHUNK))
                committed += self._store(chunk, busy_timeout)
                for _ in chunk:
                    self._queue.popleft()
        except StoreError as error:
            self._failed(error)
        except Exception:  # a record the store cannot take: not worth retrying
            self._drop_unstorable()
        self._counts["store_recovered"] += len(committed)
        self._recovered += len(committed)
        if not self.waiting and self._failing_since is not None:
            logger.warning("the event store can be written again after %.1f s: %d queued "
                           "records committed", self._clock() - self._failing_since,
                           self._recovered)
            self._failing_since, self._overflowed, self._recovered = None, False, 0
        return committed

    def finish(self) -> list[Item]:
        """The stream has ended: one last try; what is still queued is lost (logged)."""
        committed = self.retry(force=True, busy_timeout=None)
        if self.waiting:
            logger.error("%d records could not be stored before the end and are lost "
                         "(the event store: %s)", self.waiting, self.store and self.store.path)
            self._counts["store_errors"] += self.waiting
            self._queue.clear()
            self._owed.clear()
        return committed

    def close_unfinished(self) -> list[SoundEvent]:
        """Synthetic ends, committed, for the sound events an earlier run left open
        (module docstring); call once, before the first record. A store that cannot be
        read or written now leaves them open (logged): the next start tries again."""
        if self.store is None:
            return []
        try:
            ends = [replace(cast(SoundEvent, record.item), kind="end", synthetic=UNFINISHED)
                    for record in self.store.unfinished_sounds()]
            self.store.append_many(ends)  # one transaction; each keeps its event's id
        except StoreError as error:
            logger.error("%s: the sound events an earlier run left open stay open", error)
            return []
        if ends:
            logger.warning("closed %d sound event(s) an earlier run left open (%s)",
                           len(ends), ", ".join(f"{e.sound} #{e.id}" for e in ends))
        self._counts["store_synthetic_ends"] += len(ends)
        return ends

    # -- storing ---------------------------------------------------------------------------

    def _store(self, items: Sequence[Item], busy_timeout: float | None, *,
               orphans: bool = False) -> list[Item]:
        """Commit ``items`` in one transaction with their ids; the ids of open events
        are updated only once it is committed. ``orphans``: an update or end of an event
        whose start was never stored is stored too, the first row of its event, whose
        seq names it (:meth:`window` and :meth:`sound`); else it is dropped."""
        store = cast("Store", self.store)
        storable = list(items) if orphans else self._with_starts(items)
        ids: dict[int, int] = {}

        def number(batch: Sequence[Item], first: int) -> list[Item]:
            ids.clear()
            ids.update(self._sound_ids)
            numbered: list[Item] = []
            for seq, item in enumerate(batch, first):
                if isinstance(item, SoundEvent):
                    if item.kind == "start" or item.id not in ids:
                        ids[item.id] = seq
                    numbered.append(replace(item, id=ids[item.id]))
                else:
                    numbered.append(replace(item, id=seq))
            return numbered

        stored = store.append_numbered(storable, number, busy_timeout=busy_timeout)
        for item in storable:
            if isinstance(item, SoundEvent) and item.kind == "end":
                ids.pop(item.id, None)
        self._sound_ids = ids
        return stored

    def _with_starts(self, items: Sequence[Item]) -> list[Item]:
        """``items`` less any update or end whose start is neither committed nor before
        it in ``items`` (none should be: the queue drops whole events)."""
        known, kept = set(self._sound_ids), []
        for item in items:
            if isinstance(item, SoundEvent):
                if item.kind == "start":
                    known.add(item.id)
                elif item.id not in known:
                    logger.error("not delivered: %s, its start was never stored", _what(item))
                    self._counts["store_errors"] += 1
                    continue
            kept.append(item)
        return kept

    def _failed(self, error: StoreError) -> None:
        self._counts["store_failed_writes"] += 1
        self._next_try = self._clock() + self._retry_seconds
        if self._failing_since is None:
            self._failing_since = self._clock()
            logger.error("%s: keeping the records in memory (up to %d) and retrying every "
                         "%g s", error, self._limit, self._retry_seconds)

    # -- the queue -------------------------------------------------------------------------

    def _enqueue(self, item: Item) -> None:
        while len(self._queue) >= self._limit:
            self._drop_oldest()
        self._queue.append(replace(item, audio=None) if isinstance(item, Event) else item)

    def _drop_oldest(self) -> None:
        oldest = self._queue.popleft()
        if not self._overflowed:
            self._overflowed = True
            logger.error("the event store still cannot be written and %d records are "
                         "queued: dropping the oldest (an event that loses its end gets a "
                         "synthetic one)", self._limit)
        self._drop(oldest)
        if isinstance(oldest, SoundEvent) and oldest.kind == "end" \
                and oldest.id in self._sound_ids:
            self._owed[oldest.id] = replace(oldest, synthetic=STORE_OVERFLOW)
            logger.warning("%s is lost: a synthetic end will close it", _what(oldest))

    def _drop(self, item: Item) -> None:
        """``item`` is not stored; a start takes its whole event with it."""
        self._counts["store_errors"] += 1
        if isinstance(item, SoundEvent) and item.kind == "start":
            self._abandoned.add(item.id)
            ours = [r for r in self._queue if isinstance(r, SoundEvent) and r.id == item.id]
            self._queue = deque(r for r in self._queue if not (
                isinstance(r, SoundEvent) and r.id == item.id))
            self._counts["store_errors"] += len(ours)
            if any(r.kind == "end" for r in ours):
                self._abandoned.discard(item.id)

    def _drop_unstorable(self) -> None:
        """Drop the first waiting record the store cannot encode (not simply the head:
        the good records before it would go in its place, one per retry)."""
        waiting = [*self._owed.values(), *self._queue]
        culprit = next((item for item in waiting if not _encodes(item)), waiting[0])
        owed = next((key for key, end in self._owed.items() if end is culprit), None)
        if owed is not None:
            del self._owed[owed]
        else:
            self._queue = deque(item for item in self._queue if item is not culprit)
        logger.error("not delivered: %s could not be stored", _what(culprit))
        self._drop(culprit)

    def _drop_abandoned(self, record: SoundEvent) -> None:
        self._counts["store_errors"] += 1
        if record.kind == "end":
            self._abandoned.discard(record.id)


def _encodes(item: Item) -> bool:
    try:
        encode(item)
    except Exception:
        return False
    return True


def _what(item: Item) -> str:
    if isinstance(item, Event):
        return f"window {item.start:.2f}-{item.end:.2f} s of {item.source}"
    return f"the {item.kind} of sound event {item.id} ({item.sound})"

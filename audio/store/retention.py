"""Retention: which old rows go, and the thread that removes them.

Rows go when they are older than ``days`` or beyond the newest ``max_rows``, oldest first,
but never one that a consumer has not delivered yet: an outage of the DeviceHive server
keeps its backlog. That protection ends at ``hard_max_rows``: beyond it the oldest rows go
whether delivered or not, because a consumer that never comes back (a revoked token, a
server gone for good) must not grow the file until the disk is full, nor stall the
pruning. The consumers whose rows were removed have their cursor moved past them in the
same transaction (so they resume at the oldest row that is left, never stall on a hole),
the number is added to their ``lost`` counter (shown in status) and a warning is logged.
The newest row is never deleted, whatever the limits: it keeps the ids' high-water mark
(see :mod:`audio.store.schema`).

Deletion goes in chunks of :data:`CHUNK_ROWS`, each its own short transaction, so a first
prune of a large backlog does not hold up the loop's appends.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from audio.store.files import StoreError

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 30.0
DEFAULT_MAX_ROWS = 1_000_000
"""About 58 days of the daemon's 5 s windows, 11.6 days of 1 s ones; about 260 MB of file
for windows of 5 classes (``bench/store_write.py``: 26 MiB per 100,000), twice that at the
default hard cap."""
DEFAULT_INTERVAL = 600.0
CHUNK_ROWS = 5000

Writer = Callable[[], AbstractContextManager[sqlite3.Connection]]


@dataclass(frozen=True)
class Retention:
    """``days``: keep rows this long (None: no age limit); ``max_rows``: keep at most this
    many delivered rows; ``hard_max_rows``: never more rows than this, delivered or not
    (default twice ``max_rows``); ``interval``: seconds between background prunes."""

    days: float | None = DEFAULT_DAYS
    max_rows: int = DEFAULT_MAX_ROWS
    hard_max_rows: int | None = None
    interval: float = DEFAULT_INTERVAL

    def __post_init__(self) -> None:
        if self.days is not None and not (math.isfinite(self.days) and self.days >= 0):
            raise StoreError(f"retention days must be a number >= 0, got {self.days}")
        if self.max_rows < 0:
            raise StoreError(f"the row limit must be >= 0, got {self.max_rows}")
        if self.hard_max_rows is not None and self.hard_max_rows < self.max_rows:
            raise StoreError(f"the hard row cap ({self.hard_max_rows}) must be at least the "
                             f"row limit ({self.max_rows})")
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise StoreError(f"the pruning interval must be > 0 s, got {self.interval}")

    @property
    def hard_cap(self) -> int:
        return 2 * self.max_rows if self.hard_max_rows is None else self.hard_max_rows


@dataclass(frozen=True)
class PruneResult:
    """What one prune did: rows deleted, and per consumer the undelivered rows it lost."""

    deleted: int = 0
    lost: dict[str, int] = field(default_factory=dict)


def _age_bound(conn: sqlite3.Connection, days: float | None, now: float, last: int) -> int:
    """The last seq older than the age limit (rows are scanned from the oldest; the scan
    stops at the first young one, so it costs what is to be deleted)."""
    if days is None:
        return 0
    cutoff = now - days * 86400.0
    row = conn.execute("SELECT seq FROM records WHERE stored >= ? ORDER BY seq LIMIT 1",
                       (cutoff,)).fetchone()
    return last if row is None else row[0] - 1


def _plan(conn: sqlite3.Connection, retention: Retention, now: float) -> tuple[int, int]:
    """``(first, bound)``: rows ``first..bound`` are to go (none when bound < first)."""
    first, last = conn.execute("SELECT min(seq), max(seq) FROM records").fetchone()
    if first is None:
        return 0, -1
    wanted = max(_age_bound(conn, retention.days, now, last), last - retention.max_rows)
    (protect,) = conn.execute("SELECT min(cursor) FROM consumers").fetchone()
    soft = wanted if protect is None else min(wanted, protect)
    # The newest row stays whatever the limits: its seq is the ids' high-water mark.
    return first, min(last - 1, max(soft, last - retention.hard_cap))


def _drop_undelivered(conn: sqlite3.Connection, first: int, bound: int) -> dict[str, int]:
    """Move the cursors behind ``bound`` to it, counting what each consumer loses."""
    lost: dict[str, int] = {}
    rows = conn.execute("SELECT name, cursor FROM consumers WHERE cursor < ?", (bound,))
    for name, cursor in rows.fetchall():
        lost[name] = bound - max(cursor, first - 1)
        conn.execute("UPDATE consumers SET cursor = ?, lost = lost + ? WHERE name = ?",
                     (bound, lost[name], name))
        logger.warning("event store over its hard cap: %d rows not yet delivered to %s "
                       "were dropped (its cursor moved from %d to %d)",
                       lost[name], name, cursor, bound)
    return lost


def prune(writer: Writer, retention: Retention, now: float,
          stop: threading.Event | None = None) -> PruneResult:
    """Apply ``retention`` at time ``now``; ``stop`` ends it between chunks."""
    with writer() as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            first, bound = _plan(conn, retention, now)
            lost = _drop_undelivered(conn, first, bound) if bound >= first else {}
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    deleted = 0
    for upto in _chunks(first, bound):
        if stop is not None and stop.is_set():
            break
        with writer() as conn:
            deleted += conn.execute("DELETE FROM records WHERE seq <= ?", (upto,)).rowcount
    if deleted:
        logger.info("event store: pruned %d rows (up to seq %d)", deleted, bound)
    return PruneResult(deleted=deleted, lost=lost)


def _chunks(first: int, bound: int) -> Iterator[int]:
    upto = first - 1
    while upto < bound:
        upto = min(bound, upto + CHUNK_ROWS)
        yield upto


class Pruner:
    """Runs ``job(stop)`` now and then every ``interval`` seconds on its own thread until
    :meth:`stop`, which joins it. A failing prune is logged; the next one tries again."""

    def __init__(self, job: Callable[[threading.Event], object], interval: float) -> None:
        self._job = job
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audio-store-prune",
                                         daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._job(self._stop)
            except Exception:
                logger.exception("pruning the event store failed")
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

"""The event store: one SQLite file holding the ordered log, the outbox cursors and the
retention, safe to share between the loop, the sinks' threads and the web layer.

Threads: one writer connection, used under a lock (appends, cursor moves, pruning); reads
go through a small pool of their own connections, which WAL lets read the last committed
state while the writer writes, never blocking it nor being blocked by it. Every public
method turns an sqlite3 or OS failure into a one-line :class:`StoreError`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from audio.store import outbox, schema
from audio.store.files import (
    BUSY_TIMEOUT_MS,
    SYNCHRONOUS_MODES,
    DaemonLock,
    StoreError,
    connect,
    prepare_directory,
    resolve_db_path,
    secure_files,
    store_error,
)
from audio.store.outbox import START_NOW, ConsumerStatus
from audio.store.readers import ReaderPool
from audio.store.records import KINDS, SOUND, Item, Record, decode, encode
from audio.store.retention import Pruner, PruneResult, Retention, prune

logger = logging.getLogger(__name__)

DEFAULT_SYNCHRONOUS = "FULL"
_INSERT = "INSERT INTO records (kind, stored, body) VALUES (?, ?, ?)"
_INSERT_SEQ = "INSERT INTO records (seq, kind, stored, body) VALUES (?, ?, ?, ?)"
_COLUMNS = "SELECT seq, kind, stored, body FROM records"
SMALL_WAL_PAGES = 8
"""``wal_autocheckpoint`` once the file system has been full (SQLite's default is 1000)."""
_NO_BOUND = 2**63 - 1
"""SQLite's largest integer: ``seq < _NO_BOUND`` holds for every row."""


@dataclass(frozen=True)
class StoreStats:
    """What status shows of the store: the retained seq range and the file's size."""

    path: str
    first_seq: int | None
    last_seq: int
    rows: int
    bytes: int
    schema_version: int

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _kinds_clause(kinds: Iterable[str] | None) -> tuple[str, list[object]]:
    if kinds is None:
        return "", []
    chosen = sorted(set(kinds))
    unknown = [k for k in chosen if k not in KINDS]
    if unknown or not chosen:
        raise ValueError(f"record kinds are {KINDS}, got {chosen}")
    return f" AND kind IN ({', '.join('?' * len(chosen))})", list(chosen)


def _row(item: Item, stored: float) -> tuple[str, float, str]:
    kind, body = encode(item)
    return kind, stored, body


def _disk_full(error: StoreError) -> bool:
    cause = error.__cause__
    return getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or \
        "disk is full" in str(cause)


@contextmanager
def _waiting(conn: sqlite3.Connection, seconds: float | None) -> Iterator[None]:
    """``conn`` waits ``seconds`` for a lock inside the block (the default again after)."""
    if seconds is None:
        yield
        return
    conn.execute(f"PRAGMA busy_timeout = {max(0, round(seconds * 1000))}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a limit must be a positive integer, got {limit!r}")


class Store:
    """The durable log of window predictions and sound events (see the package's docstring).

    ``path``: the file, or None for :func:`resolve_db_path`'s default; ``synchronous``:
    ``NORMAL`` or ``FULL`` (what each guarantees: the package's docstring); ``clock``: unix
    seconds, stamped on each row and used by the age retention (tests inject one);
    ``prune_in_background``: start the pruning thread (it prunes at once, then every
    ``retention.interval`` seconds; :meth:`prune` prunes on demand either way).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 retention: Retention | None = None, synchronous: str = DEFAULT_SYNCHRONOUS,
                 clock: Callable[[], float] = time.time, prune_in_background: bool = True,
                 idle_readers: int = 4) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous must be one of {SYNCHRONOUS_MODES}, "
                             f"got {synchronous!r}")
        self.path = resolve_db_path(path)
        self.retention = retention or Retention()
        self.synchronous = synchronous.upper()
        self._clock = clock
        prepare_directory(self.path)
        self._daemon_lock = DaemonLock(self.path)
        try:
            secure_files(self.path)
            self._conn = connect(self.path, self.synchronous)
            try:
                self.migrated_from = schema.migrate(self._conn, self.path)
            except BaseException:
                self._conn.close()
                raise
        except sqlite3.Error as error:
            self._daemon_lock.release()
            raise store_error(self.path, "open", error) from error
        except BaseException:
            self._daemon_lock.release()
            raise
        self._write_lock = threading.Lock()
        self._closed = False
        self._readers = ReaderPool(self.path, idle_readers)
        self._pruner = (Pruner(self._prune_job, self.retention.interval)
                        if prune_in_background else None)
        logger.debug("event store %s open (schema %d, from %d)", self.path,
                     schema.SCHEMA_VERSION, self.migrated_from)

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _writer(self, action: str = "write to") -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            if self._closed:
                raise StoreError(f"event store {self.path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as error:
                self._rollback()
                raise store_error(self.path, action, error) from error
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        """End a transaction an error interrupted, so the next one can begin."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("rolling back in the event store %s failed", self.path)

    @contextmanager
    def _reader(self, action: str = "read") -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError(f"event store {self.path} is closed")
        try:
            with self._readers.connection() as conn:
                yield conn
        except sqlite3.Error as error:
            raise store_error(self.path, action, error) from error

    def _records(self, sql: str, params: Iterable[object]) -> list[Record]:
        with self._reader() as conn:
            return [decode(*row) for row in conn.execute(sql, list(params))]

    # -- appending -------------------------------------------------------------------------

    def append(self, item: Item, *, numbered: bool = False) -> int:
        """Store one Event or SoundEvent; committed when this returns. Returns its seq.

        ``numbered``: the item is stored with its ``id`` set to its own seq (the id it
        came with is ignored), so the caller can hand its sinks ``replace(item, id=seq)``,
        equal to what is stored: that is how the loop gives windows and sound events ids
        that are monotonic across restarts. The seq is taken as the largest one plus one
        inside the write transaction, which is the rowid SQLite would give (the newest row
        is never deleted, and this process is the file's only writer: ``files``).
        """
        if numbered:
            [stored] = self.append_numbered(
                [item], lambda batch, first: [replace(batch[0], id=first)])
            return int(stored.id)
        kind, body = encode(item)
        with self._writer("append to") as conn:
            seq = conn.execute(_INSERT, (kind, self._clock(), body)).lastrowid
        return int(seq)  # type: ignore[arg-type]

    def append_numbered(self, items: Sequence[Item],
                        number: Callable[[Sequence[Item], int], list[Item]], *,
                        busy_timeout: float | None = None) -> list[Item]:
        """Store ``items`` in one transaction (all or none), as ``number(items, first)``
        gives them, ``first`` being the seq of the first one's row, the others' following
        (the caller sets the ids: :mod:`audio.commit`); returns what was stored.
        ``number`` may be called again (after a checkpoint, below).

        ``busy_timeout``: seconds to wait for another connection's lock instead of
        ``BUSY_TIMEOUT_MS`` (a retry that must not hold the loop up).

        A full file system: on a small one the WAL is what fills it (it grows to some
        ``wal_autocheckpoint`` pages, 4 MB, before a checkpoint lets it be reused), so from
        the first time on the WAL is kept small (``SMALL_WAL_PAGES``) for the rest of the
        run, checkpointed and truncated, and the transaction tried once more (the
        checkpoint needs room for the file to grow: it may only succeed once the disk has
        some again, at a later retry).
        """
        if not items:
            return []
        try:
            return self._insert_numbered(items, number, busy_timeout)
        except StoreError as error:
            if not _disk_full(error) or not self._truncate_wal():
                raise
        logger.debug("event store %s: the file system was full; the WAL was truncated",
                     self.path)
        return self._insert_numbered(items, number, busy_timeout)

    def _insert_numbered(self, items: Sequence[Item],
                         number: Callable[[Sequence[Item], int], list[Item]],
                         busy_timeout: float | None) -> list[Item]:
        with self._writer("append to") as conn, _waiting(conn, busy_timeout):
            conn.execute("BEGIN IMMEDIATE")
            first, stored = outbox.last_seq(conn) + 1, self._clock()
            done = number(items, first)
            if len(done) != len(items):
                raise ValueError(f"numbering {len(items)} items gave {len(done)}")
            conn.executemany(_INSERT_SEQ, [(seq, *_row(item, stored))
                                           for seq, item in enumerate(done, first)])
            conn.execute("COMMIT")
        return done

    def _truncate_wal(self) -> bool:
        """Keep the WAL small from now on; checkpoint it into the file and truncate it.
        True when done."""
        try:
            with self._writer("checkpoint") as conn:
                conn.execute(f"PRAGMA wal_autocheckpoint = {SMALL_WAL_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit = {SMALL_WAL_PAGES * 4096}")
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except StoreError as error:
            logger.debug("%s", error)
            return False
        return not busy

    def append_many(self, items: Iterable[Item]) -> list[int]:
        """Store several items in one transaction (all or none; one commit for all)."""
        rows = [encode(item) for item in items]
        if not rows:
            return []
        with self._writer("append to") as conn:
            conn.execute("BEGIN IMMEDIATE")
            stored = self._clock()
            seqs = [int(conn.execute(_INSERT, (kind, stored, body)).lastrowid)  # type: ignore[arg-type]
                    for kind, body in rows]
            conn.execute("COMMIT")
        return seqs

    # -- reading ---------------------------------------------------------------------------

    def history(self, before_seq: int | None = None, limit: int = 50,
                kinds: Iterable[str] | None = None) -> list[Record]:
        """Newest first: up to ``limit`` records with seq < ``before_seq`` (all when None).
        The next page is ``history(before_seq=page[-1].seq)``."""
        _check_limit(limit)
        clause, params = _kinds_clause(kinds)
        bound = _NO_BOUND if before_seq is None else before_seq
        return self._records(f"{_COLUMNS} WHERE seq < ?{clause} ORDER BY seq DESC LIMIT ?",
                             [bound, *params, limit])

    def since(self, seq: int, limit: int = 1000, kinds: Iterable[str] | None = None
              ) -> list[Record]:
        """Oldest first: up to ``limit`` records with seq > ``seq`` (an SSE client's
        ``Last-Event-ID``; ids hold across restarts). Rows pruned meanwhile are skipped."""
        _check_limit(limit)
        clause, params = _kinds_clause(kinds)
        return self._records(f"{_COLUMNS} WHERE seq > ?{clause} ORDER BY seq LIMIT ?",
                             [seq, *params, limit])

    def count_sound_starts(self, after_seq: int = 0) -> tuple[int, int]:
        """``(sound events started after after_seq, the newest seq counted up to)``: lets
        a caller keep a running count of sound events with queries over new rows only."""
        with self._reader() as conn, self._readers.snapshot(conn):
            last = outbox.last_seq(conn)
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM records WHERE seq > ? AND seq <= ? AND kind = ? "
                "AND json_extract(body, '$.kind') = 'start'", [after_seq, last, SOUND]
            ).fetchone()
        return int(count), last

    def unfinished_sounds(self) -> list[Record]:
        """The newest record (its start or last update) of each sound event that has no
        end in the store, oldest first: events a run left open because it was killed, or
        stopped while the store could not be written (``audio.commit`` closes them)."""
        return self._records(
            f"{_COLUMNS} WHERE seq IN (SELECT MAX(seq) FROM records WHERE kind = ? "
            "GROUP BY json_extract(body, '$.id') "
            "HAVING SUM(json_extract(body, '$.kind') = 'end') = 0 "
            "AND SUM(json_extract(body, '$.kind') = 'start') > 0) ORDER BY seq", [SOUND])

    def last_seq(self) -> int:
        """The newest seq ever given (0 for a new store); the next append gets a larger one."""
        with self._reader() as conn:
            return outbox.last_seq(conn)

    def stats(self) -> StoreStats:
        with self._reader() as conn, self._readers.snapshot(conn):
            first, last = outbox.first_seq(conn), outbox.last_seq(conn)
            version = schema.user_version(conn)
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal"))
                   if p.exists())
        return StoreStats(path=str(self.path), first_seq=first, last_seq=last,
                          rows=0 if first is None else last - first + 1, bytes=size,
                          schema_version=version)

    # -- outbox ----------------------------------------------------------------------------

    def register(self, name: str, start: str = START_NOW) -> int:
        """Add consumer ``name`` (kept as it is when it exists); return its cursor. A new
        one starts from ``now`` (rows appended from now on) or ``oldest`` (every row kept)."""
        with self._writer("register a consumer in") as conn:
            return outbox.register(conn, name, start, self._clock())

    def cursor(self, name: str) -> int:
        """The last seq ``name`` has delivered."""
        with self._reader() as conn:
            return outbox.cursor_of(conn, name)

    def pending(self, name: str, limit: int = 100) -> list[Record]:
        """The next ``limit`` rows ``name`` has not delivered, in order."""
        _check_limit(limit)
        return self.since(self.cursor(name), limit)

    def advance(self, name: str, seq: int) -> int:
        """``name`` has delivered every row up to ``seq``: move its cursor there (forward
        only, atomically); returns the cursor."""
        with self._writer("advance a cursor in") as conn:
            return outbox.advance(conn, name, seq)

    def count_duplicates(self, name: str, count: int = 1) -> None:
        """``name`` sent ``count`` rows again after an uncertain delivery (persisted)."""
        with self._writer("count duplicates in") as conn:
            outbox.count_duplicates(conn, name, count)

    def remove_consumer(self, name: str) -> bool:
        with self._writer("remove a consumer from") as conn:
            return outbox.remove(conn, name)

    def consumers(self) -> list[ConsumerStatus]:
        with self._reader() as conn, self._readers.snapshot(conn):
            return outbox.statuses(conn)

    # -- retention and closing -------------------------------------------------------------

    def prune(self, stop: threading.Event | None = None) -> PruneResult:
        """Apply the retention now (the background thread calls this too)."""
        return prune(lambda: self._writer("prune"), self.retention, self._clock(), stop)

    def _prune_job(self, stop: threading.Event) -> None:
        self.prune(stop)

    def close(self) -> None:
        """Stop and join the pruning thread, close every connection, release the file."""
        if self._pruner is not None:
            self._pruner.stop()
            self._pruner = None
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._readers.close()
            self._conn.close()
            self._daemon_lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

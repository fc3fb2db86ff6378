"""The readers' connections: a small pool, so that history pages, SSE resumes and the
sinks' ``pending()`` read the last committed state beside the writer (WAL lets any number
of readers and one writer work at once) without opening a connection per read.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audio.store.files import BUSY_TIMEOUT_MS


class ReaderPool:
    """Connections opened on demand and kept (at most ``idle`` of them) for the next read.

    ``query_only`` makes a reader unable to write, whatever a bug asks of it. A connection
    in use when the pool closes is closed by its user's thread on release (closing it from
    here, under a running query, is not safe).
    """

    def __init__(self, path: Path, idle: int) -> None:
        self._path = path
        self._idle_max = max(0, idle)
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._lock:
                keep = not self._closed and len(self._idle) < self._idle_max
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @staticmethod
    @contextmanager
    def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
        """Several reads of one committed state (one read transaction)."""
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

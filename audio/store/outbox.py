"""Outbox cursors: how far each consumer (a network sink) has delivered the log.

A consumer is a name (``devicehive``, later ``mqtt``, ``webhook:<url>``) with a cursor,
the last seq it has delivered. It reads the rows after its cursor in order
(:meth:`Store.pending`) and moves the cursor only once the server has confirmed them
(:meth:`Store.advance`: forward only, one ``UPDATE ... WHERE cursor < ?``, so a late or
repeated confirmation can never move it back). After a restart it resumes from its cursor.
A consumer added to a store that already holds rows starts from now (only what is appended
from then on) or from the oldest retained row: :data:`START_POINTS`.

A sink that cannot tell whether the server got a row (the connection broke before the
answer) and sends it again records that with :meth:`Store.count_duplicates`; the count is
persisted with the cursor so status can show it across restarts.

These functions take the writer's or a reader's connection; the store serialises writes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from audio.store.files import StoreError

START_NOW = "now"
START_OLDEST = "oldest"
START_POINTS = (START_NOW, START_OLDEST)


@dataclass(frozen=True)
class ConsumerStatus:
    """One consumer as status shows it: ``pending`` rows not yet delivered, ``duplicates``
    rows sent again after an uncertain delivery, ``lost`` rows the hard cap removed
    before delivery."""

    name: str
    cursor: int
    pending: int
    duplicates: int
    lost: int
    created: float

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "cursor": self.cursor, "pending": self.pending,
                "duplicates": self.duplicates, "lost": self.lost, "created": self.created}


def last_seq(conn: sqlite3.Connection) -> int:
    """The largest seq ever given: the newest row's (retention never deletes it)."""
    row = conn.execute("SELECT max(seq) FROM records").fetchone()
    return 0 if row[0] is None else int(row[0])


def first_seq(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT min(seq) FROM records").fetchone()
    return None if row[0] is None else int(row[0])


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a consumer needs a non-empty name, got {name!r}")


def register(conn: sqlite3.Connection, name: str, start: str, now: float) -> int:
    """Add ``name`` unless it exists (its cursor is then kept); return its cursor."""
    _check_name(name)
    if start not in START_POINTS:
        raise ValueError(f"a consumer starts from one of {START_POINTS}, not {start!r}")
    first = first_seq(conn)
    cursor = last_seq(conn) if start == START_NOW or first is None else first - 1
    conn.execute("INSERT OR IGNORE INTO consumers (name, cursor, created) VALUES (?, ?, ?)",
                 (name, cursor, now))
    return cursor_of(conn, name)


def cursor_of(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT cursor FROM consumers WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise StoreError(f"no consumer {name!r} in the event store (register it first)")
    return int(row[0])


def advance(conn: sqlite3.Connection, name: str, seq: int) -> int:
    """Move the cursor forward to ``seq`` (a smaller one changes nothing); return it."""
    if seq > last_seq(conn):
        raise ValueError(f"consumer {name!r} cannot advance to {seq}: the newest row is "
                         f"{last_seq(conn)}")
    conn.execute("UPDATE consumers SET cursor = ? WHERE name = ? AND cursor < ?",
                 (seq, name, seq))
    return cursor_of(conn, name)


def count_duplicates(conn: sqlite3.Connection, name: str, count: int) -> None:
    if count < 0:
        raise ValueError(f"a duplicate count cannot be negative ({count})")
    changed = conn.execute("UPDATE consumers SET duplicates = duplicates + ? WHERE name = ?",
                           (count, name)).rowcount
    if not changed:
        cursor_of(conn, name)  # raises: unknown consumer


def remove(conn: sqlite3.Connection, name: str) -> bool:
    """Forget ``name`` (its undelivered rows stop holding back the pruning)."""
    return conn.execute("DELETE FROM consumers WHERE name = ?", (name,)).rowcount > 0


def statuses(conn: sqlite3.Connection) -> list[ConsumerStatus]:
    last = last_seq(conn)
    first = first_seq(conn)
    floor = last if first is None else first - 1
    rows = conn.execute("SELECT name, cursor, duplicates, lost, created FROM consumers "
                        "ORDER BY name").fetchall()
    return [ConsumerStatus(name=name, cursor=cursor, pending=last - max(cursor, floor),
                           duplicates=duplicates, lost=lost, created=created)
            for name, cursor, duplicates, lost, created in rows]

"""The store's tables and their migrations, versioned with ``PRAGMA user_version``.

Version 0 is SQLite's value for a file nobody has versioned: a new, empty file. Each
entry of :data:`MIGRATIONS` takes the file from the version before it to its own, in one
transaction together with the new ``user_version``, so a crash during a migration leaves
the file at the old version, to be migrated again on the next start. A file of a newer
version (a newer release wrote it) or a version-0 file that already has tables (some other
program's database) is refused rather than guessed at.

Tables (version 1):

``records``
    The log. ``seq INTEGER PRIMARY KEY`` is the rowid, which SQLite gives as one more
    than the largest in the table. Ids are never reused because the newest row is never
    deleted (:mod:`audio.store.retention` keeps it whatever the limits), so the largest
    rowid only grows, across restarts and pruning. (AUTOINCREMENT would keep the same
    high-water mark in ``sqlite_sequence`` instead, but that writes a second page per
    commit: 9.1 kB instead of 4.9 kB to the disk per append, measured; a flash card's
    wear.) Deletions only ever remove a prefix (oldest first), so the retained rows are
    exactly ``first..last``: the row count is ``last - first + 1`` without a scan.
``consumers``
    One outbox cursor per consumer: ``cursor`` is the last seq it has delivered;
    ``duplicates`` counts rows it sent again after an uncertain delivery; ``lost`` counts
    rows the hard row cap removed before it delivered them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from audio.store.files import StoreError

SCHEMA_V1 = """
CREATE TABLE records (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('window', 'sound')),
    stored REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE consumers (
    name TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL CHECK (cursor >= 0),
    duplicates INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
) WITHOUT ROWID;
"""


def _to_v1(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[tuple[int, Migration], ...] = ((1, _to_v1),)
"""``(version, step)`` in order: ``step`` takes the file from the previous version to
``version``. A new version appends a step; existing steps never change."""
SCHEMA_VERSION = MIGRATIONS[-1][0]


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _foreign_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%'").fetchall()
    return sorted(name for (name,) in rows)


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the file to :data:`SCHEMA_VERSION`; return the version it had."""
    found = user_version(conn)
    if found > SCHEMA_VERSION:
        raise StoreError(f"event store {path} has schema version {found}, newer than this "
                         f"program's {SCHEMA_VERSION}: upgrade, or pass another --db")
    if found == 0 and _foreign_tables(conn):
        raise StoreError(f"{path} is an SQLite file of another program (tables: "
                         f"{', '.join(_foreign_tables(conn))}): pass another --db")
    for version, step in MIGRATIONS:
        if version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found

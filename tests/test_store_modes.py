"""The event store's files are the owner's only (issue 23): ``events.db``, ``-wal``,
``-shm`` and the lock are created 0600 and its directory 0700, whatever the umask lets
through, and files an older version left 0644 are made 0600 when the store opens."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from audio.events import Event, Prediction
from audio.store import Store

SIDES = ("", "-wal", "-shm", ".lock")


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(db: Path) -> dict[str, str]:
    return {side or "db": oct(stat.S_IMODE(os.stat(f"{db}{side}").st_mode)) for side in SIDES}


def a_window() -> Event:
    return Event(id=0, timestamp=1.7e9, start=0.0, end=1.0, predictions=(Prediction("x", 1.0),))


def test_a_new_store_is_the_owners_only(tmp_path: Path) -> None:
    db = tmp_path / "state" / "audio-analysis" / "events.db"
    with umask(0o022), Store(db, prune_in_background=False) as store:
        store.append(a_window(), numbered=True)
        found = modes(db)
    assert found == dict.fromkeys(["db", "-wal", "-shm", ".lock"], "0o600")
    assert oct(stat.S_IMODE(db.parent.stat().st_mode)) == "0o700"


def test_files_left_readable_by_others_are_made_private_at_start(tmp_path: Path) -> None:
    """Files as the previous version left them, 0644; a reader (a backup, say) keeps the
    -wal and -shm in place while the store opens again."""
    db = tmp_path / "events.db"
    with umask(0o022):
        with Store(db, prune_in_background=False) as store:
            store.append(a_window(), numbered=True)
        with closing(sqlite3.connect(db)) as reader:
            assert reader.execute("SELECT count(*) FROM records").fetchone() == (1,)
            for side in SIDES:
                os.chmod(f"{db}{side}", 0o644)
            with Store(db, prune_in_background=False) as store:
                store.append(a_window(), numbered=True)
                found = modes(db)
    assert found == dict.fromkeys(["db", "-wal", "-shm", ".lock"], "0o600")

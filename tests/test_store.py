"""The event store (audio.store): round trips, ids, cursors, retention, concurrency, errors,
and real crashes (a child process killed with SIGKILL while appending)."""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from audio.detect import SoundEvent
from audio.events import Event, Prediction
from audio.store import (
    SOUND,
    START_NOW,
    START_OLDEST,
    WINDOW,
    Retention,
    Store,
    StoreError,
    resolve_db_path,
)
from audio.store import files as store_files
from audio.store.schema import SCHEMA_VERSION

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0
KEEP_ALL = Retention(days=None, max_rows=10**9)


class Clock:
    """An injected wall clock the test moves by hand."""

    def __init__(self, now: float = 1.7e9) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def window(i: int, source: str = "mic") -> Event:
    return Event(id=i, timestamp=1.7e9 + i, start=5.0 * i, end=5.0 * i + 5.0, source=source,
                 predictions=(Prediction("Dog", 0.123456789 + i * 1e-9),
                              Prediction("Bark", 1 / 3)))


def sound(i: int, kind: str = "end") -> SoundEvent:
    return SoundEvent(kind=kind, id=i, sound="dog", classes=("Dog", "Bark"), start=1.5 * i,
                      end=1.5 * i + 1.0, peak_score=0.9, mean_score=0.7, peak_dbfs=-12.5,
                      mean_dbfs=-20.25, source="mic", start_time=1.7e9 + i,
                      end_time=None if kind == "start" else 1.7e9 + i + 1.0)


def open_store(path: Path, **kwargs: object) -> Store:
    kwargs.setdefault("prune_in_background", False)
    return Store(path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "events.db"


# -- round trips and ids ---------------------------------------------------------------------

def test_round_trip_of_both_kinds_across_reopen(db: Path) -> None:
    items = [window(1), sound(1, "start"), sound(1, "update"), window(2), sound(1, "end")]
    with open_store(db) as store:
        seqs = [store.append(items[0]), *store.append_many(items[1:4])]
        seqs.append(store.append(items[4]))
    assert seqs == [1, 2, 3, 4, 5]
    with open_store(db) as store:
        records = store.since(0)
        assert [r.seq for r in records] == seqs
        assert [r.item for r in records] == items  # exact: scores are not rounded
        assert [r.kind for r in records] == [WINDOW, SOUND, SOUND, WINDOW, SOUND]
        assert [r.seq for r in store.since(0, kinds=[SOUND])] == [2, 3, 5]
        as_dict = records[1].as_dict()
        assert as_dict["seq"] == 2 and as_dict["record"] == SOUND and as_dict["kind"] == "start"
        assert as_dict["classes"] == ["Dog", "Bark"]
        assert records[0].as_dict()["predictions"][0] == {"label": "Dog", "score": 0.123457}


def test_history_pages_newest_first(db: Path) -> None:
    with open_store(db) as store:
        store.append_many([window(i) if i % 3 else sound(i) for i in range(1, 121)])
        pages, before = [], None
        while page := store.history(before_seq=before, limit=50):
            pages.append([r.seq for r in page])
            before = page[-1].seq
        assert [len(p) for p in pages] == [50, 50, 20]
        assert [seq for page in pages for seq in page] == list(range(120, 0, -1))
        sounds = store.history(limit=5, kinds=[SOUND])
        assert [r.seq for r in sounds] == [120, 117, 114, 111, 108]
        assert [r.seq for r in store.since(115, limit=3)] == [116, 117, 118]
        with pytest.raises(ValueError, match="kinds"):
            store.history(kinds=["noise"])


def test_ids_are_monotonic_across_reopen_and_never_reused_after_pruning(db: Path) -> None:
    clock = Clock()
    with open_store(db, clock=clock) as store:
        assert store.last_seq() == 0
        assert store.append_many([window(i) for i in range(5)]) == [1, 2, 3, 4, 5]
    with open_store(db, clock=clock) as store:
        assert store.append(window(5)) == 6
        clock.now += 31 * DAY  # every row is past the 30 days
        assert store.prune().deleted == 5  # the newest row stays: the ids' high-water mark
        assert [r.seq for r in store.since(0)] == [6]
    with open_store(db, clock=clock, retention=Retention(max_rows=0)) as store:
        assert store.append(window(6)) == 7
        store.prune()
        assert store.stats().first_seq == 7
    with open_store(db, clock=clock) as store:
        assert store.append(sound(1)) == 8


def test_numbered_appends_store_their_seq_as_the_id_across_reopen(db: Path) -> None:
    """What the loop does: the id stored (and read back) is the row's seq, whatever id the
    item came with, and it goes on from the high-water mark after a reopen and pruning."""
    from dataclasses import replace

    clock = Clock()
    with open_store(db, clock=clock) as store:
        assert store.append(window(99), numbered=True) == 1
        assert store.append(sound(42, "start"), numbered=True) == 2
        assert store.append(replace(sound(42), id=2)) == 3  # its end: the start's id
        assert [r.item.id for r in store.since(0)] == [1, 2, 2]
        assert store.since(0)[0].item == replace(window(99), id=1)
    with open_store(db, clock=clock, retention=Retention(max_rows=0)) as store:
        store.prune()
        assert store.append(window(7), numbered=True) == 4
        assert [(r.seq, r.item.id) for r in store.since(0)] == [(3, 2), (4, 4)]


# -- outbox cursors --------------------------------------------------------------------------

def test_cursors_per_consumer_resume_after_reopen(db: Path) -> None:
    with open_store(db) as store:
        store.append_many([window(i) for i in range(1, 4)])
        assert store.register("devicehive", START_OLDEST) == 0
        assert store.register("mqtt", START_NOW) == 3
        assert store.register("devicehive", START_NOW) == 0  # exists: kept as it was
        assert [r.seq for r in store.pending("devicehive", limit=2)] == [1, 2]
        assert store.pending("mqtt") == []
        store.append(sound(1))
        assert [r.seq for r in store.pending("mqtt")] == [4]
        assert store.advance("devicehive", 2) == 2
        assert store.advance("devicehive", 1) == 2  # never backwards
        store.count_duplicates("devicehive")
        store.count_duplicates("devicehive", 2)
        with pytest.raises(ValueError, match="newest row is 4"):
            store.advance("devicehive", 5)
        with pytest.raises(StoreError, match="no consumer 'webhook:x'"):
            store.advance("webhook:x", 1)
    with open_store(db) as store:
        assert store.cursor("devicehive") == 2 and store.cursor("mqtt") == 3
        assert [r.seq for r in store.pending("devicehive")] == [3, 4]
        status = {c.name: c for c in store.consumers()}
        assert (status["devicehive"].pending, status["devicehive"].duplicates) == (2, 3)
        assert (status["mqtt"].pending, status["mqtt"].lost) == (1, 0)
        assert store.remove_consumer("mqtt")
        assert [c.name for c in store.consumers()] == ["devicehive"]


def test_a_later_consumer_from_the_oldest_retained_row(db: Path) -> None:
    clock = Clock()
    with open_store(db, clock=clock) as store:
        store.append_many([window(i) for i in range(10)])
        clock.now += 31 * DAY
        store.append(window(10))
        store.prune()
        assert store.register("webhook:http://x", START_OLDEST) == 10
        assert [r.seq for r in store.pending("webhook:http://x")] == [11]


# -- retention -------------------------------------------------------------------------------

def test_retention_by_age_keeps_what_a_consumer_has_not_delivered(db: Path) -> None:
    clock = Clock()
    with open_store(db, clock=clock, retention=Retention(days=30)) as store:
        store.register("devicehive")
        for day in range(40):  # one row a day
            store.append(window(day))
            clock.now += DAY
        store.advance("devicehive", 5)
        assert store.prune().deleted == 5  # older rows wait for the consumer
        assert store.stats().first_seq == 6
        store.advance("devicehive", 40)
        assert store.prune().deleted == 5  # rows 6..10 are over 30 days old now
        stats = store.stats()
        assert (stats.first_seq, stats.last_seq, stats.rows) == (11, 40, 30)
        assert all(clock.now - r.stored <= 30 * DAY for r in store.since(0))


def test_retention_by_count_keeps_what_a_consumer_has_not_delivered(db: Path) -> None:
    with open_store(db, retention=Retention(days=None, max_rows=10, hard_max_rows=100)) as store:
        store.register("devicehive", START_OLDEST)
        store.append_many([window(i) for i in range(25)])
        assert store.prune().deleted == 0  # nothing delivered yet
        store.advance("devicehive", 3)
        assert store.prune().deleted == 3
        store.advance("devicehive", 20)
        assert store.prune().deleted == 12
        assert [r.seq for r in store.since(0)] == list(range(16, 26))
        assert store.consumers()[0].lost == 0


def test_hard_cap_moves_cursors_and_counts_lost_rows(db: Path, caplog: pytest.LogCaptureFixture
                                                     ) -> None:
    retention = Retention(days=None, max_rows=5, hard_max_rows=8)
    with open_store(db, retention=retention) as store:
        store.register("devicehive", START_OLDEST)
        store.register("mqtt", START_OLDEST)
        store.append_many([window(i) for i in range(20)])
        store.advance("mqtt", 10)
        with caplog.at_level(logging.WARNING, logger="audio.store.retention"):
            result = store.prune()
        assert result.deleted == 12 and result.lost == {"devicehive": 12, "mqtt": 2}
        assert [r.seq for r in store.since(0)] == list(range(13, 21))
        assert "12 rows not yet delivered to devicehive were dropped" in caplog.text
        assert [r.seq for r in store.pending("devicehive", 3)] == [13, 14, 15]  # no stall
    with open_store(db, retention=retention) as store:
        lost = {c.name: (c.cursor, c.lost, c.pending) for c in store.consumers()}
        assert lost == {"devicehive": (12, 12, 8), "mqtt": (12, 2, 8)}


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_background_pruning_and_close_joins_its_thread(db: Path) -> None:
    clock = Clock()
    before_fds = _fd_count()
    store = open_store(db, clock=clock, prune_in_background=True,
                       retention=Retention(days=1, interval=0.05))
    assert any(t.name == "audio-store-prune" for t in threading.enumerate())
    store.append_many([window(i) for i in range(10)])
    clock.now += 2 * DAY
    store.append(window(10))
    deadline = time.monotonic() + 10
    while store.stats().rows > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.stats().rows == 1  # pruned by the thread, nobody called prune()
    store.close()
    assert not any(t.name == "audio-store-prune" for t in threading.enumerate())
    assert _fd_count() == before_fds  # connections and the lock file closed
    with pytest.raises(StoreError, match="closed"):
        store.append(window(11))


# -- concurrency -----------------------------------------------------------------------------

def test_readers_read_while_the_writer_writes(db: Path) -> None:
    batch, batches = 300, 30
    seen: list[int] = []
    errors: list[BaseException] = []
    with open_store(db) as store:
        def write() -> None:
            for b in range(batches):
                store.append_many([window(b * batch + i) for i in range(batch)])

        def read() -> None:
            deadline = time.monotonic() + 60
            try:
                while (not seen or seen[-1] < batch * batches) and time.monotonic() < deadline:
                    got = [r.seq for r in store.since(seen[-1] if seen else 0, limit=10**6)]
                    if got:
                        assert got[-1] % batch == 0, "a batch seen half-committed"
                    seen.extend(got)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=write), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not errors
    assert seen == list(range(1, batch * batches + 1))


def test_reads_go_on_while_another_connection_holds_the_write_lock(db: Path, monkeypatch:
                                                                    pytest.MonkeyPatch) -> None:
    with open_store(db) as store:
        store.append(window(1))
    monkeypatch.setattr(store_files, "BUSY_TIMEOUT_MS", 200)
    with open_store(db) as store:
        other = sqlite3.connect(db, isolation_level=None)  # another program
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO records (kind, stored, body) VALUES ('window', 0, '{}')")
        assert [r.seq for r in store.since(0)] == [1]  # WAL: reading is not blocked
        with pytest.raises(StoreError, match="locked by another program") as error:
            store.append(window(2))
        assert "\n" not in str(error.value)
        other.execute("ROLLBACK")
        other.close()
        assert store.append(window(2)) == 2


# -- errors ----------------------------------------------------------------------------------

def _one_line_error(path: Path) -> str:
    with pytest.raises(StoreError) as error:
        open_store(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_unusable_files_are_refused_in_one_line(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not an SQLite file\n" * 400)
    assert "file is not a database" in _one_line_error(damaged)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert f"{blocker} is not a directory" in _one_line_error(blocker / "sub" / "events.db")
    foreign = tmp_path / "foreign.db"
    with closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE notes (text)")
    assert "another program (tables: notes)" in _one_line_error(foreign)
    newer = tmp_path / "newer.db"
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert f"schema version {SCHEMA_VERSION + 1}, newer" in _one_line_error(newer)


def test_migration_from_version_0(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # an SQLite file nobody has versioned yet
    with open_store(empty) as store:
        assert store.migrated_from == 0 and store.stats().schema_version == SCHEMA_VERSION
        store.append(window(1))
    with open_store(empty) as store:
        assert store.migrated_from == SCHEMA_VERSION
    with closing(sqlite3.connect(empty)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


HOLDER = textwrap.dedent("""
    import sys, time
    from audio.store import Store
    store = Store(sys.argv[1], prune_in_background=False)
    print("ready", flush=True)
    time.sleep(60)
""")


def test_a_second_daemon_on_the_same_file_is_refused(db: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        message = _one_line_error(db)
        assert f"in use by another process (pid {holder.pid})" in message
    finally:
        holder.kill()
        holder.wait()
    with open_store(db) as store:  # the kernel dropped the dead holder's lock
        assert store.last_seq() == 0


def test_resolve_db_path() -> None:
    home = Path.home()
    assert resolve_db_path("~/x.db", {"AUDIO_ANALYSIS_DB": "/e.db"}) == home / "x.db"
    assert resolve_db_path(None, {"AUDIO_ANALYSIS_DB": "/e.db", "XDG_STATE_HOME": "/s"}) == \
        Path("/e.db")
    assert resolve_db_path(None, {"XDG_STATE_HOME": "/s"}) == \
        Path("/s/audio-analysis/events.db")
    assert resolve_db_path(None, {"XDG_STATE_HOME": "rel"}) == \
        home / ".local/state/audio-analysis/events.db"
    assert resolve_db_path(None, {}) == home / ".local/state/audio-analysis/events.db"


# -- real crashes ----------------------------------------------------------------------------

APPENDER = textwrap.dedent("""
    import sys
    from audio.detect import SoundEvent
    from audio.events import Event, Prediction
    from audio.store import Retention, Store
    store = Store(sys.argv[1], synchronous=sys.argv[2], prune_in_background=False,
                  retention=Retention(days=None, max_rows=10**9))
    store.register("devicehive", "oldest")
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        event = Event(id=i, timestamp=float(i), start=0.0, end=5.0,
                      predictions=(Prediction("Dog", i / 1e6),))
        if i % 3:
            seqs = [store.append(event)]
        else:
            extra = SoundEvent("end", i, "dog", ("Dog",), 0.0, 1.0, 0.5, 0.5, -20.0, -20.0)
            seqs = store.append_many([event, extra])
        print(" ".join(f"{seq}:{i}" for seq in seqs), flush=True)
        if i % 7 == 0:
            print(f"advanced {store.advance('devicehive', seqs[-1])}", flush=True)
""")


def _run_and_kill(db: Path, mode: str, delay: float) -> list[str]:
    """Start the appender, let it run ``delay`` seconds, SIGKILL it; its output lines.

    A thread drains the pipe all along: were it left full, the child would sit blocked in
    ``print`` and the kill would never land in the middle of a commit."""
    child = subprocess.Popen([sys.executable, "-c", APPENDER, str(db), mode],
                             cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    chunks: list[str] = []
    drain = threading.Thread(target=lambda: chunks.append(child.stdout.read()))
    drain.start()
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    drain.join(30)
    assert child.returncode == -signal.SIGKILL
    return "".join(chunks).split("\n")[:-1]  # a line without its newline is cut


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["NORMAL", "FULL"])
def test_every_returned_append_survives_kill_9(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "events.db"
    rng = random.Random(15)
    last = 0
    for round_ in range(6):
        delay = rng.uniform(0.05, 0.6)
        lines = _run_and_kill(db, mode, delay)
        returned = [tuple(map(int, pair.split(":"))) for line in lines
                    if not line.startswith("advanced") for pair in line.split()]
        advanced = [int(line.split()[1]) for line in lines if line.startswith("advanced")]
        assert returned, f"round {round_}: nothing appended in {delay:.2f} s"
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with open_store(db) as store:
            ids = {r.seq: r.item.id for r in store.since(last, limit=10**7)}
            missing = [(seq, i) for seq, i in returned if ids.get(seq) != i]
            assert not missing, f"round {round_} ({mode}, {delay:.2f} s): lost {missing[:5]}"
            assert min(seq for seq, _ in returned) > last  # monotonic across the crash
            if advanced:
                assert store.cursor("devicehive") >= advanced[-1]
            last = store.last_seq()
            assert last >= max(seq for seq, _ in returned)


def test_sound_starts_are_counted_over_new_rows_only(db):
    """The web page's running count of sound events: one query over the rows added since
    the last count, start records only (updates and ends are the same events)."""
    store = open_store(db)
    try:
        store.append(window(1))
        for kind in ("start", "update", "end"):
            store.append(sound(1, kind))
        count, upto = store.count_sound_starts()
        assert (count, upto) == (1, 4)
        store.append(sound(2, "start"))
        store.append(window(2))
        assert store.count_sound_starts(upto) == (1, 6)
        assert store.count_sound_starts(6) == (0, 6)
    finally:
        store.close()

"""The store must not lose half of an event (issue 23): a full file system and a write lock
held by another process, through the real loop and the real store; the queue's overflow.

The full disk is a real 160 KiB tmpfs (mounting one needs root, as in CI; elsewhere these
tests are skipped, saying so) filled by a file while the loop runs, then freed. The lock
is another process's ``BEGIN EXCLUSIVE`` held longer than the store's busy timeout.
Afterwards the store file is read: every window and every record the detector emitted is
there, in order; every start has its end and no end is without its start; the sinks got
exactly the rows, in order, each already committed. Recovery times are printed.
"""

from __future__ import annotations

import errno
import itertools
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from audio.blocks import AudioWindow
from audio.detect import SoundEvent
from audio.events import Event, Prediction
from audio.loop import ProcessingLoop
from audio.store import SOUND, WINDOW, Store
from audio.store.files import BUSY_TIMEOUT_MS

RATE = 16000
PACE = 0.05
"""Seconds between two windows of the paced source."""


# -- a small file system, filled and freed ----------------------------------------------------

@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 160 KiB tmpfs, unmounted afterwards (skipped where mounting is not permitted)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 160 KiB tmpfs needs root (CI runs the tests as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path, db: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free the space).

    The store's WAL is truncated first (from a connection of the test's), so that the
    store cannot free space of its own by truncating it: the outage lasts until freed."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


# -- the loop's parts -------------------------------------------------------------------------

class PacedSource:
    """One-second windows, one every ``PACE`` s, loud in the middle two of every four;
    ``script(i)`` runs before window ``i`` and returns False to end the stream."""

    name = "paced"
    realtime = False

    def __init__(self, script: Callable[[int], bool]) -> None:
        self.script = script
        self.yielded = 0

    def windows(self, stop: threading.Event) -> Iterator[AudioWindow]:
        for i in itertools.count():
            if stop.is_set() or not self.script(i):
                return
            level = 0.9 if i % 4 in (1, 2) else 0.05
            yield AudioWindow(np.full(RATE, level, np.float32), RATE, float(i), i + 1.0,
                              time.time(), "paced")
            self.yielded += 1
            time.sleep(PACE)

    def request_window(self) -> None:
        pass

    def close(self) -> None:
        pass


class PeakProcessor:
    def predict(self, waveform: np.ndarray, sample_rate: int) -> tuple[Prediction, ...]:
        return (Prediction("peak", float(np.max(np.abs(waveform)))),)


class LoudEvents:
    """Stands in for ``EventStream``: an event lasts while the pieces are loud; it emits a
    start, an update on each further loud piece, and an end; keeps what it emitted."""

    def __init__(self) -> None:
        self.active: int | None = None
        self.next_id = 1
        self.emitted: list[SoundEvent] = []

    def _record(self, kind: str, start: float) -> SoundEvent:
        assert self.active is not None
        record = SoundEvent(kind, self.active, "loud", ("loud",), start, start + 1.0, 0.9,
                            0.9, -1.0, -1.0, "paced", start_time=time.time())
        self.emitted.append(record)
        return record

    def push(self, audio, start, *, timestamp=None, source=""):
        loud = float(np.max(np.abs(audio))) >= 0.5
        if loud and self.active is None:
            self.active, self.next_id = self.next_id, self.next_id + 1
            return [self._record("start", start)]
        if loud:
            return [self._record("update", start)]
        if self.active is not None:
            record = self._record("end", start)
            self.active = None
            return [record]
        return []

    def close(self):
        if self.active is None:
            return []
        record = self._record("end", -1.0)
        self.active = None
        return [record]


class Journal:
    """A sink noting each item with the wall-clock time it was handed over."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Event | SoundEvent]] = []

    def handle(self, event: Event) -> None:
        self.items.append((time.time(), event))

    def handle_sound(self, record: SoundEvent) -> None:
        self.items.append((time.time(), record))

    def close(self) -> None:
        pass


# -- what the store holds afterwards ----------------------------------------------------------

def orphans(records: list[SoundEvent]) -> list[str]:
    """Starts without an end and ends (or updates) without a start, in the log's order."""
    problems, open_ids = [], set()
    for record in records:
        if record.kind == "start":
            open_ids.add(record.id)
        elif record.id not in open_ids:
            problems.append(f"{record.kind} of event {record.id} without its start")
        elif record.kind == "end":
            open_ids.discard(record.id)
    return problems + [f"start of event {i} without its end" for i in sorted(open_ids)]


def check_nothing_lost(db: Path, source: PacedSource, events: LoudEvents,
                       journal: Journal) -> list:
    """Every window and record emitted is stored once, in order, the sinks got exactly the
    rows; no orphan start or end. Returns the rows."""
    with Store(db, prune_in_background=False) as store:
        rows = store.since(0, limit=100000)
    windows = [r.item for r in rows if r.kind == WINDOW]
    sounds = [r.item for r in rows if r.kind == SOUND]
    lost_windows = source.yielded - len(windows)
    lost_sounds = len(events.emitted) - len(sounds)
    lost_edges = (sum(r.kind in ("start", "end") for r in events.emitted)
                  - sum(r.kind in ("start", "end") for r in sounds))
    print(f"\nrecords dropped: {lost_windows + lost_sounds} of "
          f"{source.yielded + len(events.emitted)} ({lost_windows} windows, {lost_sounds} "
          f"sound records, {lost_edges} of them starts or ends); orphans: {orphans(sounds)}")
    assert (lost_windows, lost_sounds) == (0, 0)
    assert orphans(sounds) == []
    assert [w.start for w in windows] == [float(i) for i in range(source.yielded)]
    assert [(s.kind, s.start) for s in sounds] == [(s.kind, s.start) for s in events.emitted]
    assert [item for _, item in journal.items] == [r.item for r in rows]
    return rows


def emitted_at(item: Event | SoundEvent) -> float:
    return item.timestamp if isinstance(item, Event) else float(item.start_time or 0.0)


def recovery_after(journal: Journal, moment: float) -> float:
    """Seconds from ``moment`` until the sinks had everything emitted before it."""
    return max(t for t, item in journal.items if emitted_at(item) < moment) - moment


# -- the tests --------------------------------------------------------------------------------

def test_a_full_file_system_loses_nothing_and_recovers_quickly(small_fs: Path) -> None:
    """The file system is full from window 4 on for 3.5 s, then freed; afterwards the
    store's own WAL would fill the 160 KiB again (it is what grows), which must not lose
    anything either."""
    db = small_fs / "events.db"
    marks: dict[str, float] = {}
    filler: list[Path] = []

    def script(i: int) -> bool:
        if i == 4:
            filler.append(fill(small_fs, db))
            marks["filled"] = time.time()
        elif filler and "freed" not in marks and time.time() - marks["filled"] >= 3.5:
            filler[0].unlink()
            marks["freed"], marks["freed_at"] = time.time(), i
        return "freed" not in marks or i < marks["freed_at"] + 60

    source, events, journal = PacedSource(script), LoudEvents(), Journal()
    with Store(db, prune_in_background=False) as store:
        loop = ProcessingLoop(source, PeakProcessor(), [journal], events=events, store=store)
        loop.run()
        stats = loop.stats()
    recovery = recovery_after(journal, marks["freed"])
    print(f"\nfull disk: {stats['store_errors']} store errors; everything emitted before "
          f"reached the sinks {recovery:.2f} s after the space was freed; stats {stats}")
    check_nothing_lost(db, source, events, journal)
    assert recovery < 10.0


LOCKER = textwrap.dedent("""
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("ROLLBACK")
    print("released", time.time(), flush=True)
""")


def test_a_store_locked_by_another_process_loses_nothing(tmp_path: Path) -> None:
    """Another process holds ``BEGIN EXCLUSIVE`` for 2.4 busy timeouts (12 s)."""
    db = tmp_path / "events.db"
    hold = 2.4 * BUSY_TIMEOUT_MS / 1000
    locker: list[subprocess.Popen[str]] = []
    released: list[float] = []

    def script(i: int) -> bool:
        if i == 4:
            proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(hold)],
                                    stdout=subprocess.PIPE, text=True)
            locker.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            threading.Thread(target=lambda: released.append(
                float(proc.stdout.readline().split()[1])), daemon=True).start()
        return not released or time.time() < released[0] + 3.0

    source, events, journal = PacedSource(script), LoudEvents(), Journal()
    try:
        with Store(db, prune_in_background=False) as store:
            loop = ProcessingLoop(source, PeakProcessor(), [journal], events=events,
                                  store=store)
            loop.run()
            stats = loop.stats()
    finally:
        for proc in locker:
            proc.kill()
            proc.wait()
    recovery = recovery_after(journal, released[0])
    print(f"\nlocked store: {stats['store_errors']} store errors; everything emitted before "
          f"reached the sinks {recovery:.2f} s after the lock was released; stats {stats}")
    check_nothing_lost(db, source, events, journal)
    assert recovery < 10.0


# -- the queue's overflow ---------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.read()
    conn.execute("ROLLBACK")
""")


class Holder:
    """Another process holding the store's write lock until :meth:`release`."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(30)


def window(i: int) -> Event:
    return Event(id=0, timestamp=1.7e9 + i, start=float(i), end=i + 1.0,
                 predictions=(Prediction("peak", 0.5),), source="w")


def record(kind: str, event: str) -> SoundEvent:
    """A record of event ``event`` (a letter: the detector's id is its position + 1)."""
    return SoundEvent(kind, ord(event) - ord("A") + 1, event, (event,), 1.0, 2.0, 0.9, 0.8,
                      -3.0, -6.0, "w", start_time=1.7e9, end_time=1.7e9 + 1.0)


def name(item: Event | SoundEvent) -> str:
    """``w3``, ``sA`` (start of A), ``uA``, ``eA``; ``eA*`` for a synthetic end."""
    if isinstance(item, Event):
        return f"w{int(item.start)}"
    return f"{item.kind[0]}{item.sound}{'*' if item.synthetic else ''}"


def test_an_overflowing_queue_drops_whole_events_and_closes_the_open_ones(tmp_path: Path
                                                                          ) -> None:
    """A queue of 6 while another process holds the lock: the oldest records go; an event
    whose end went gets a synthetic end, one whose start went goes whole (its later
    records too); what is committed afterwards has no orphan, the sinks get it in order."""
    from audio.commit import STORE_OVERFLOW, Committer
    from audio.sinks.payloads import event_payload

    db = tmp_path / "events.db"
    with Store(db, prune_in_background=False) as store:
        committer = Committer(store, backlog=6, retry_seconds=0.0)
        delivered = committer.commit(record("start", "A")) + committer.commit(window(1))
        holder = Holder(db)
        try:
            queued = [record("update", "A"), window(2), record("end", "A"),
                      record("start", "B"), window(3), record("end", "B"),
                      record("start", "C"), window(4), window(5), window(6),
                      record("update", "C"), record("end", "C"), record("start", "D"),
                      window(7)]
            for item in queued:
                assert committer.commit(item) == []
            assert [name(i) for i in committer._queue] == ["w4", "w5", "w6", "sD", "w7"]
            # D ends in the queue, then its start is pushed out: D goes whole (its end
            # too); E starts, and its start is pushed out while E goes on: its update and
            # end, coming later, go too.
            for item in [window(8), record("end", "D"), record("start", "E"),
                         *map(window, range(9, 15)), record("update", "E"), record("end", "E")]:
                assert committer.commit(item) == []
            assert [name(i) for i in committer._queue] == [f"w{i}" for i in range(9, 15)]
            assert committer.stats()["store_queued"] == 7  # and A's synthetic end
        finally:
            holder.release()
        started = time.monotonic()
        delivered += committer.commit(record("start", "F")) + committer.commit(
            record("end", "F"))
        took = time.monotonic() - started
        rows = store.since(0)
    print(f"\noverflow: queue committed {took * 1000:.0f} ms after the lock was released; "
          f"stats {committer.stats()}")
    names = ["sA", "w1", "eA*", *[f"w{i}" for i in range(9, 15)], "sF", "eF"]
    assert [name(i) for i in delivered] == names
    assert [name(r.item) for r in rows] == names
    assert [r.item for r in rows] == delivered  # the sinks get exactly the rows
    assert orphans([r.item for r in rows if r.kind == SOUND]) == []
    start_a, end_a = rows[0], rows[2]
    assert end_a.item.id == start_a.seq and end_a.item.synthetic == STORE_OVERFLOW
    assert end_a.as_dict()["synthetic"] == STORE_OVERFLOW
    assert event_payload(end_a.item, end_a.stored)["synthetic"] == STORE_OVERFLOW
    assert "synthetic" not in event_payload(rows[-1].item, rows[-1].stored)
    assert "synthetic" not in rows[-1].as_dict()
    assert rows[-1].item.id == rows[-2].seq  # F's end carries its start's id
    stats = committer.stats()
    # uA w2 eA sB eB w3 sC uC eC; w4 w5 w6 sD eD w7 w8 sE uE eE
    assert stats["store_errors"] == 19 and stats["store_synthetic_ends"] == 1
    assert stats["store_queued"] == 0

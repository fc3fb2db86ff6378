"""Sound events a run left open are closed by the next (issue 23, found in review): a
daemon that stops while another process holds the store's lock, or that is killed,
leaves a start without its end; the next run with that store commits a synthetic end
(``"synthetic": "unfinished"``) before anything else. Also: the last try at the end of a
stream waits the store's full busy timeout, and a record the store cannot encode is the
one dropped from the queue, not the good record at its head.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from audio.commit import UNFINISHED, Committer
from audio.loop import ProcessingLoop
from audio.store import SOUND, Store
from tests.test_store_outage import (
    Holder,
    Journal,
    LoudEvents,
    PacedSource,
    PeakProcessor,
    name,
    orphans,
    record,
    window,
)


def sounds(store: Store) -> list:
    return [r.item for r in store.since(0, limit=1000) if r.kind == SOUND]


def test_a_stop_while_the_store_is_locked_leaves_an_event_the_next_run_closes(tmp_path: Path
                                                                               ) -> None:
    db = tmp_path / "events.db"
    with Store(db, prune_in_background=False) as store:
        committer = Committer(store, retry_seconds=0.0)
        [start] = committer.commit(record("start", "A"))
        holder = Holder(db)
        try:
            assert committer.commit(record("update", "A")) == []  # waits the busy timeout
            assert committer.commit(record("end", "A")) == []
            assert committer.finish() == []  # still locked: lost, and said
        finally:
            holder.release()
        assert committer.stats()["store_errors"] == 2
        assert orphans(sounds(store)) == [f"start of event {start.id} without its end"]

        closed = Committer(store).close_unfinished()
        assert [(name(e), e.id, e.synthetic) for e in closed] == [("eA*", start.id, UNFINISHED)]
        assert orphans(sounds(store)) == []
        assert Committer(store).close_unfinished() == []  # once only


def test_the_loop_delivers_the_closing_ends_before_its_first_record(tmp_path: Path) -> None:
    """A killed run's open events (one with an update, one without), then a new run."""
    db = tmp_path / "events.db"
    with Store(db, prune_in_background=False) as store:
        killed = Committer(store)
        first = killed.commit(record("start", "A"))[0]
        killed.commit(replace(record("update", "A"), peak_score=0.97))
        second = killed.commit(record("start", "B"))[0]
        killed.commit(record("start", "C"))
        killed.commit(record("end", "C"))

        journal = Journal()
        source = PacedSource(lambda i: i < 5)
        ProcessingLoop(source, PeakProcessor(), [journal], events=LoudEvents(),
                       store=store).run()
        got = [item for _, item in journal.items]
        rows = sounds(store)
    assert [(name(i), i.id) for i in got[:2]] == [("eA*", first.id), ("eB*", second.id)]
    assert got[0].peak_score == 0.97  # the figures of the event's last stored record
    assert orphans(rows) == []


def test_the_last_try_waits_for_a_lock_released_within_the_busy_timeout(tmp_path: Path
                                                                        ) -> None:
    """A lock that goes 1 s into the stream's end (the busy timeout is 5 s): kept."""
    db = tmp_path / "events.db"
    with Store(db, prune_in_background=False) as store:
        committer = Committer(store, retry_seconds=0.0)
        committer.commit(record("start", "A"))
        holder = Holder(db)
        try:
            assert committer.commit(record("end", "A")) == []
            threading.Timer(1.0, holder.release).start()
            started = time.monotonic()
            done = committer.finish()
            print(f"\nthe last try committed {len(done)} record(s) after "
                  f"{time.monotonic() - started:.2f} s")
        finally:
            holder.release()
        assert [name(i) for i in done] == ["eA"]
        assert orphans(sounds(store)) == []


def test_a_record_the_store_cannot_encode_is_the_one_dropped(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with Store(db, prune_in_background=False) as store:
        committer = Committer(store, retry_seconds=0.0)
        committer.commit(record("start", "A"))
        holder = Holder(db)
        try:
            bad = replace(window(2), source=object())  # not JSON: cannot be stored
            for item in (window(1), bad, window(3), record("end", "A")):
                assert committer.commit(item) == []
        finally:
            holder.release()
        committed = committer.retry(force=True)
        committed += committer.retry(force=True)
    assert [name(i) for i in committed] == ["w1", "w3", "eA"]
    assert committer.stats()["store_errors"] == 1

"""The daemon's durable event store and outbox: one SQLite file, in WAL mode.

Every window prediction (:class:`audio.events.Event`) and sound event record
(:class:`audio.detect.SoundEvent`) is appended to one ordered log and committed before any
sink sees it (:meth:`Store.append` returns after the commit). Each row gets a ``seq``:
one monotonic id across both kinds and across restarts, never reused, not even after
pruning; the web layer pages history by it and SSE clients resume with it as their
``Last-Event-ID``. Network sinks deliver from the log in order, each behind its own cursor
(:mod:`audio.store.outbox`); old rows are pruned by age and count without taking rows a
sink still has to deliver (:mod:`audio.store.retention`). The file is found by
:func:`resolve_db_path` (``--db``, ``$AUDIO_ANALYSIS_DB``, else
``$XDG_STATE_HOME/audio-analysis/events.db``) and held by one daemon at a time
(:mod:`audio.store.files`).

Durability: ``synchronous``
---------------------------
In WAL mode a commit appends the transaction's pages to the ``-wal`` file.

``NORMAL``
    The commit is written to the WAL (``write()``, into the kernel's page cache) before
    ``append()`` returns, but not synced; the WAL is synced only before each checkpoint.
    Everything committed survives the *process* dying in any way (``kill -9``, a crash,
    the OOM killer): the kernel still writes what it was given. A power cut or kernel
    panic can lose the last transactions (those the kernel had not yet written back,
    typically up to half a minute), never the file's consistency: the WAL's checksums cut
    it at the last whole transaction.
``FULL`` (the default)
    The WAL is also synced (``fsync``) at every commit: a transaction that has returned
    survives a power cut too.

FULL is the default because "committed" has to mean committed however the box stops, and
on the small boxes the daemon runs on, being unplugged is the commonest way. After a power
cut under NORMAL the lost rows' seqs would be given again to new windows, while the
DeviceHive server may already hold notifications carrying those seqs, which is just what
the sink's lookup of an uncertain delivery must not meet. The price, measured with
``bench/store_write.py`` on a VM's ext4 disk (issue 15): ``append()`` took 51-68 µs on
average under NORMAL and 180-250 µs under FULL (p99 0.1-0.3 ms and 0.6-4 ms), and wrote
9.0 kB to the disk per window instead of 4.9 kB; against one window per 5 s (or per
0.96 s at the shortest), both are small. ``NORMAL`` is a constructor argument for a card
whose syncs are slow; the crash test (``tests/test_store.py``) runs both.
"""

from audio.store.files import StoreError, resolve_db_path
from audio.store.outbox import START_NOW, START_OLDEST, ConsumerStatus
from audio.store.records import KINDS, SOUND, WINDOW, Record
from audio.store.retention import PruneResult, Retention
from audio.store.store import Store, StoreStats

__all__ = [
    "KINDS", "SOUND", "START_NOW", "START_OLDEST", "WINDOW", "ConsumerStatus", "PruneResult",
    "Record", "Retention", "Store", "StoreError", "StoreStats", "resolve_db_path",
]

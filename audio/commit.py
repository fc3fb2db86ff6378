"""Ids for what the loop hands its sinks, and the commit to the event store before they see it.

Without a store (``capture.py``, library use) windows are numbered 1, 2, 3... per run and
sound event records keep the detector's ids (1, 2, 3... per run, shared by an event's
``start``, ``update`` and ``end``).

With a store (``daemon.py``) every window and every sound event record is committed
(:meth:`audio.store.Store.append` returns after the commit) before any sink sees it, and
the ids come from the store's ``seq``, which is monotonic across restarts and never reused:

* a window's ``Event.id`` is its row's seq;
* a sound event's ``SoundEvent.id`` is the seq of its ``start`` record: its ``update`` and
  ``end`` records carry the same id (as they did with the detector's ids), each in a row
  of its own with a larger seq.

So an id seen on the page, in ``/api/events``, in a DeviceHive notification or in the log
is the same everywhere and is never given twice, before or after a restart. What is stored
is exactly what the sinks get (the row holds the id), so a row read back from the outbox
after a crash builds the same notification. A record that cannot be committed (the disk is
full, the file is damaged) raises here and reaches no sink: nothing is ever shown or sent
that the store does not hold.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import TYPE_CHECKING

from audio.events import Event, SoundEvent

if TYPE_CHECKING:
    from audio.store import Store


class Committer:
    """Numbers windows and sound events, and commits them to ``store`` when there is one.

    Used on the loop's thread only.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self._window_ids = itertools.count(1)
        self._sound_ids: dict[int, int] = {}
        """The detector's id of each open sound event -> the id it was given (the seq of
        its start record); forgotten at its end."""

    def window(self, event: Event) -> Event:
        """``event`` with its id (its ``id`` field is ignored), committed when stored."""
        if self.store is None:
            return replace(event, id=next(self._window_ids))
        return replace(event, id=self.store.append(event, numbered=True))

    def sound(self, record: SoundEvent) -> SoundEvent:
        """``record`` with its event's id, committed when stored."""
        if self.store is None:
            return record
        given = self._sound_ids.get(record.id)
        if given is None:
            # A start, or (should its start have failed to commit) the first record of
            # the event this store holds: that row's seq names the event from now on.
            given = self.store.append(record, numbered=True)
            stored = replace(record, id=given)
        else:
            stored = replace(record, id=given)
            self.store.append(stored)
        if record.kind == "end":
            self._sound_ids.pop(record.id, None)
        else:
            self._sound_ids[record.id] = given
        return stored

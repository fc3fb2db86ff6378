"""The DeviceHive sink delivering from the event store's outbox, against the real test
server: in order, the cursor moved only on confirmation, resumed by a new sink (a new
process) on the same file, the uncertain head looked up (or, refused, re-sent and counted).

The loop's own commit path (``audio.commit.Committer``) numbers and stores what the sink is
handed, as in the daemon. The daemon itself, killed and restarted, is in
``tests/test_daemon_outbox.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audio.commit import Committer
from audio.sinks.devicehive import SOUND_NOTIFICATION_NAME, DeviceHiveSettings, DeviceHiveSink
from audio.store import Store
from tests.dh_server import DeviceHiveTestServer

DEVICE = "audio-outbox-1"
CONSUMER = "devicehive"


def _settings(server: DeviceHiveTestServer, transport: str = "ws") -> DeviceHiveSettings:
    _access, refresh = server.issue_tokens()
    return DeviceHiveSettings(url=server.ws_url if transport == "ws" else server.rest_url,
                              device_id=DEVICE, refresh_token=refresh, backoff_initial=0.05,
                              backoff_max=0.3, connect_timeout=5, request_timeout=5)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "events.db", prune_in_background=False) as opened:
        yield opened


def _ids(server: DeviceHiveTestServer) -> list[tuple[str, int, str | None]]:
    """(name, id, sound kind) of every notification the server holds, in arrival order."""
    return [(n["notification"], n["parameters"]["id"], n["parameters"].get("kind"))
            for n in server.device_notifications(DEVICE)]


def _feed(sink: DeviceHiveSink, commit: Committer, items: list) -> list[int]:
    """What the loop does: commit, then hand the sink what was stored."""
    ids = []
    for item in items:
        if hasattr(item, "predictions"):
            event = commit.window(item)
            sink.handle(event)
            ids.append(event.id)
        else:
            record = commit.sound(item)
            sink.handle_sound(record)
            ids.append(record.id)
    return ids


def _outbox(sink: DeviceHiveSink) -> dict:
    outbox = sink.status()["outbox"]
    assert outbox is not None and outbox["consumer"] == CONSUMER
    return outbox


@pytest.mark.parametrize("transport", ["ws", "rest"])
def test_delivers_windows_and_sound_events_in_order_and_moves_the_cursor(
        dh_server, store, make_event, make_sound, transport):
    sink = DeviceHiveSink(_settings(dh_server, transport), store=store)
    try:
        _feed(sink, Committer(store), [
            make_event(0), make_sound("start", 7), make_event(1), make_sound("update", 7),
            make_sound("end", 7), make_event(2), make_sound("update", 8)])
        assert sink.flush(20), sink.status()
        # seqs 1..7; the sound event's id is its start's seq (2); updates are not sent
        assert _ids(dh_server) == [("audio_analysis", 1, None), (SOUND_NOTIFICATION_NAME, 2,
                                   "start"), ("audio_analysis", 3, None),
                                   (SOUND_NOTIFICATION_NAME, 2, "end"),
                                   ("audio_analysis", 6, None)]
        outbox = _outbox(sink)
        # the trailing update (seq 7) has no notification: passed over, not pending
        assert outbox == {"consumer": CONSUMER, "cursor": 7, "pending": 0, "duplicates": 0,
                          "lost": 0}
        status = sink.status()
        assert status["sent"] == 5 and status["queued"] == 0 and status["dropped"] == 0
    finally:
        sink.close()


def test_an_outage_delays_nothing_committed_and_loses_nothing(dh_server, store, make_event):
    sink = DeviceHiveSink(_settings(dh_server), store=store)
    commit = Committer(store)
    try:
        _feed(sink, commit, [make_event(0)])
        assert sink.flush(20)
        dh_server.stop()
        _feed(sink, commit, [make_event(i) for i in range(1, 6)])
        assert not sink.flush(1)
        assert _outbox(sink)["cursor"] == 1 and _outbox(sink)["pending"] == 5
        dh_server.start()
        assert sink.flush(30), sink.status()
        assert [i for _, i, _ in _ids(dh_server)] == [1, 2, 3, 4, 5, 6]
        assert _outbox(sink)["cursor"] == 6
    finally:
        sink.close()


def _leave_one_uncertain(server: DeviceHiveTestServer, store: Store, make_event) -> None:
    """A first sink delivers 1..2; the insert of 3 is stored by the server, whose
    connection is then cut, and the server goes down before the sink can ask: the sink
    ends (as a killed process would) with 3 sent and its cursor at 2."""
    sink = DeviceHiveSink(_settings(server), store=store)
    commit = Committer(store)
    try:
        _feed(sink, commit, [make_event(0), make_event(1)])
        assert sink.flush(20)
        server.drop_after_store = 1
        _feed(sink, commit, [make_event(2)])
        assert server.wait_for(lambda s: s.drop_after_store == 0, 20)
        server.stop()
        _feed(sink, commit, [make_event(3)])
    finally:
        sink.close(timeout=0)
    assert [i for _, i, _ in _ids(server)] == [1, 2, 3]
    assert store.cursor(CONSUMER) == 2


def test_a_new_sink_resumes_from_the_cursor_and_finds_the_uncertain_one(
        dh_server, store, make_event):
    """Exactly once: the head after the cursor is looked up, found, and not sent again."""
    _leave_one_uncertain(dh_server, store, make_event)
    dh_server.start()
    sink = DeviceHiveSink(_settings(dh_server), store=store)
    try:
        assert sink.flush(30), sink.status()
        assert [i for _, i, _ in _ids(dh_server)] == [1, 2, 3, 4]
        assert _outbox(sink) == {"consumer": CONSUMER, "cursor": 4, "pending": 0,
                                 "duplicates": 0, "lost": 0}
        assert ("websocket", "notification/list") in dh_server.requests
    finally:
        sink.close()


def test_a_refused_lookup_resends_and_the_duplicate_is_counted_in_the_store(
        dh_server, store, make_event):
    """At least once: the lookup refused (403), the head is sent again, counted, and the
    count survives the sink (it is in the store); delivery goes on."""
    _leave_one_uncertain(dh_server, store, make_event)
    dh_server.refuse_list = True
    dh_server.start()
    sink = DeviceHiveSink(_settings(dh_server), store=store)
    try:
        assert sink.flush(30), sink.status()
        assert [i for _, i, _ in _ids(dh_server)] == [1, 2, 3, 3, 4]
        assert _outbox(sink)["duplicates"] == 1 and _outbox(sink)["cursor"] == 4
        _feed(sink, Committer(store), [make_event(9)])  # ids go on from the store: 5
        assert sink.flush(20)
        assert [i for _, i, _ in _ids(dh_server)][-1] == 5
    finally:
        sink.close()
    (consumer,) = store.consumers()
    assert consumer.duplicates == 1


def test_disabling_removes_the_consumer_and_enabling_starts_from_then(
        dh_server, store, make_event):
    sink = DeviceHiveSink(None, store=store)
    commit = Committer(store)
    try:
        assert store.consumers() == [] and sink.status()["outbox"] is None
        _feed(sink, commit, [make_event(0)])  # before DeviceHive is configured: not sent
        sink.reconfigure(_settings(dh_server))
        _feed(sink, commit, [make_event(1)])
        assert sink.flush(20)
        assert [i for _, i, _ in _ids(dh_server)] == [2]
        sink.reconfigure(None)
        assert store.consumers() == []
        _feed(sink, commit, [make_event(2)])
        sink.reconfigure(_settings(dh_server))
        _feed(sink, commit, [make_event(3)])
        assert sink.flush(20)
        assert [i for _, i, _ in _ids(dh_server)] == [2, 4]
    finally:
        sink.close()


def _kill_while_uncertain(server: DeviceHiveTestServer, store: Store, before: list,
                          last, stored: bool) -> None:
    """A sink delivers ``before``; ``last`` goes out, the connection is cut (the server
    stored it, or with ``stored=False`` lost it) and the server refuses everything until
    the sink has ended, as a killed process would, with ``last`` uncertain. Then a new
    sink on the same store settles it."""
    sink = DeviceHiveSink(_settings(server), store=store)
    commit = Committer(store)
    try:
        _feed(sink, commit, before)
        assert sink.flush(20)
        server.fault_after_drop, server.drop_after_store = "500", 1
        _feed(sink, commit, [last])
        assert server.wait_for(lambda s: s.drop_after_store == 0, 20)
        if not stored:
            with server._lock:
                server.notifications.pop()
    finally:
        sink.close(timeout=0)
    server.fault = server.fault_after_drop = None
    sink = DeviceHiveSink(_settings(server), store=store)
    try:
        assert sink.flush(30), sink.status()
        assert _outbox(sink)["duplicates"] == 0
    finally:
        sink.close()


def test_a_sound_start_older_than_the_window_before_it_is_recognised(
        dh_server, store, make_event, make_sound):
    """Its client timestamp (the sound's start) is earlier than the window sent before it:
    built from the row alone it is the same notification in the new process, found."""
    _kill_while_uncertain(dh_server, store, [make_event(0, timestamp=1_700_000_013.0)],
                          make_sound("start", 1, start_time=1_700_000_012.4), stored=True)
    assert _ids(dh_server) == [("audio_analysis", 1, None),
                               (SOUND_NOTIFICATION_NAME, 2, "start")]


def test_two_sounds_starting_in_the_same_millisecond_are_not_taken_for_each_other(
        dh_server, store, make_sound):
    """The first is stored; the second, lost in flight, has the same name and client
    timestamp: the lookup must not take the first for it (it would be lost)."""
    _kill_while_uncertain(dh_server, store, [make_sound("start", 1, sound="dog")],
                          make_sound("start", 2, sound="bark"), stored=False)
    assert [(n["parameters"]["sound"], n["parameters"]["id"])
            for n in dh_server.device_notifications(DEVICE)] == [("dog", 1), ("bark", 2)]
    stamps = {n["timestamp"] for n in dh_server.device_notifications(DEVICE)}
    assert len(stamps) == 1  # the same millisecond indeed

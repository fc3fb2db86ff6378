"""The DeviceHive sink against the real test server (WebSocket and REST, real sockets)."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from audio.sinks.devicehive import (
    SOUND_NOTIFICATION_NAME,
    DeviceHiveConfigError,
    DeviceHiveSettings,
    DeviceHiveSink,
    build_notification,
    format_timestamp,
)
from tests.dh_server import DeviceHiveTestServer

DEVICE = "audio-test-1"


def _settings(server: DeviceHiveTestServer, transport: str, **kw) -> DeviceHiveSettings:
    _access, refresh = server.issue_tokens()
    url = server.ws_url if transport == "ws" else server.rest_url
    kw.setdefault("refresh_token", refresh)
    return DeviceHiveSettings(url=url, device_id=DEVICE, backoff_initial=0.1, backoff_max=0.5,
                              connect_timeout=3, request_timeout=3, **kw)


def _wait_count(server: DeviceHiveTestServer, n: int, timeout: float = 15) -> list[dict]:
    assert server.wait_for(lambda s: len(s.device_notifications(DEVICE)) >= n, timeout), (
        f"only {len(server.device_notifications(DEVICE))} of {n} notifications arrived")
    return server.device_notifications(DEVICE)


@pytest.mark.parametrize("transport", ["ws", "rest"])
def test_registers_device_and_sends_every_event_in_order(dh_server, make_event, transport):
    sink = DeviceHiveSink(_settings(dh_server, transport))
    try:
        events = [make_event(i, timestamp=1_700_000_000 + i) for i in range(5)]
        for event in events:
            sink.handle(event)
        got = _wait_count(dh_server, 5)
        assert dh_server.devices[DEVICE]["id"] == DEVICE
        assert ("rest" if transport == "rest" else "websocket", "device/save") in dh_server.requests
        assert len(got) == 5
        for event, note in zip(events, got, strict=True):
            assert note["notification"] == "audio_analysis"
            params = note["parameters"]
            assert params["predictions"] == [p.as_dict() for p in event.predictions]
            assert params["window"] == {"start": round(event.start, 3), "end": round(event.end, 3)}
            assert params["timestamp"] == note["timestamp"] == format_timestamp(
                int(event.timestamp * 1000))
        assert sink.flush(5)
        status = sink.status()
        assert status["state"] == "connected" and status["sent"] == 5 and status["queued"] == 0
    finally:
        sink.close()


def test_legacy_format_is_the_originals_json_name(dh_server, make_event):
    sink = DeviceHiveSink(_settings(dh_server, "ws"), legacy_format=True)
    try:
        event = make_event(0)
        sink.handle(event)
        (note,) = _wait_count(dh_server, 1)
        assert json.loads(note["notification"]) == [[p.label, p.score] for p in event.predictions]
        assert note["parameters"] is None
    finally:
        sink.close()


@pytest.mark.parametrize("transport", ["ws", "rest"])
def test_outage_delivers_everything_once_in_order(dh_server, make_event, transport):
    sink = DeviceHiveSink(_settings(dh_server, transport))
    try:
        sink.handle(make_event(0))
        _wait_count(dh_server, 1)
        dh_server.stop()
        for i in range(1, 6):  # produced while the server is down
            sink.handle(make_event(i))
            time.sleep(0.1)
        deadline = time.monotonic() + 5
        while sink.status()["state"] == "connected" and time.monotonic() < deadline:
            time.sleep(0.05)
        if transport == "ws":  # REST only notices at its next request
            assert sink.status()["state"] != "connected"
        assert sink.status()["last_error"]
        dh_server.start()
        got = _wait_count(dh_server, 6)
        assert sink.flush(10)
        got = dh_server.device_notifications(DEVICE)
        windows = [n["parameters"]["window"]["start"] for n in got]
        assert windows == [round(0.96 * i, 3) for i in range(6)]  # once each, in order
        assert sink.status()["sent"] == 6 and sink.status()["dropped"] == 0
    finally:
        sink.close()


@pytest.mark.parametrize("transport", ["ws", "rest"])
def test_notification_stored_but_reply_lost_is_not_duplicated(dh_server, make_event, transport):
    sink = DeviceHiveSink(_settings(dh_server, transport))
    try:
        sink.handle(make_event(0))
        _wait_count(dh_server, 1)
        dh_server.drop_after_store = 1  # next insert is stored, then the connection is cut
        for i in range(1, 4):
            sink.handle(make_event(i))
        _wait_count(dh_server, 4)
        assert sink.flush(10)
        time.sleep(0.3)
        got = dh_server.device_notifications(DEVICE)
        assert [n["parameters"]["window"]["start"] for n in got] == [
            round(0.96 * i, 3) for i in range(4)]
        assert sink.status()["sent"] == 4 and sink.status()["reconnects"] >= 1
    finally:
        sink.close()


def test_in_flight_resolution_when_the_server_restamps(dh_server, make_event):
    dh_server.restamp = True  # server-side timestamps: recognised by parameters instead
    sink = DeviceHiveSink(_settings(dh_server, "ws"))
    try:
        sink.handle(make_event(0))
        _wait_count(dh_server, 1)
        dh_server.drop_after_store = 1
        for i in range(1, 4):
            sink.handle(make_event(i))
        assert sink.flush(10)
        got = dh_server.device_notifications(DEVICE)
        assert [n["parameters"]["window"]["start"] for n in got] == [
            round(0.96 * i, 3) for i in range(4)]
    finally:
        sink.close()


def test_reply_lost_before_store_is_resent(dh_server, make_event):
    """The other half of the ambiguity: the server died before storing; it must be re-sent."""
    sink = DeviceHiveSink(_settings(dh_server, "ws"))
    try:
        sink.handle(make_event(0))
        _wait_count(dh_server, 1)
        with dh_server._lock:  # simulate: stored, then the store lost it (crash before commit)
            dh_server.drop_after_store = 1
        sink.handle(make_event(1))
        assert dh_server.wait_for(lambda s: s.drop_after_store == 0, 10)
        with dh_server._lock:
            dh_server.notifications.pop()  # the server "forgot" it
        assert sink.flush(10)
        got = dh_server.device_notifications(DEVICE)
        assert [n["parameters"]["window"]["start"] for n in got] == [0.0, 0.96]
    finally:
        sink.close()


def test_queue_overflow_drops_oldest_and_counts(dh_server, make_event):
    sink = DeviceHiveSink(_settings(dh_server, "ws"), queue_size=3)
    try:
        sink.handle(make_event(0))
        _wait_count(dh_server, 1)
        dh_server.stop()
        time.sleep(0.3)
        for i in range(1, 11):
            sink.handle(make_event(i))
        status = sink.status()
        assert status["dropped"] == 7 and status["queued"] == 3
        dh_server.start()
        assert sink.flush(10)
        got = dh_server.device_notifications(DEVICE)
        assert [n["parameters"]["window"]["start"] for n in got] == [
            round(0.96 * i, 3) for i in (0, 8, 9, 10)]
    finally:
        sink.close()


def test_wrong_token_is_reported_without_echoing_it(dh_server, make_event):
    bad = "eyJhbGciOiJIUzI1NiJ9.eyJwYXlsb2FkIjp7fX0.c2VjcmV0LXNpZ25hdHVyZQ"
    sink = DeviceHiveSink(_settings(dh_server, "ws", refresh_token=bad))
    try:
        sink.handle(make_event(0))
        deadline = time.monotonic() + 5
        while not sink.status()["last_error"] and time.monotonic() < deadline:
            time.sleep(0.05)
        status = sink.status()
        assert status["state"] in ("disconnected", "connecting")
        assert "401" in status["last_error"]
        assert bad not in json.dumps(status) and status["queued"] == 1
        # Fixing the credentials reconnects and delivers what waited.
        sink.reconfigure(_settings(dh_server, "ws"))
        assert sink.flush(10)
        assert len(dh_server.device_notifications(DEVICE)) == 1
    finally:
        sink.close()


def test_login_password_and_expiring_access_tokens(make_event):
    server = DeviceHiveTestServer(access_ttl=1.0).start()
    try:
        settings = DeviceHiveSettings(url=server.ws_url, device_id=DEVICE, login="dhadmin",
                                      password="dhadmin_#911", backoff_initial=0.1)
        sink = DeviceHiveSink(settings)
        sink.handle(make_event(0))
        _wait_count(server, 1)
        time.sleep(1.3)  # the access token has expired: the library refreshes it on 401
        sink.handle(make_event(1))
        _wait_count(server, 2)
        assert ("websocket", "token") in server.requests
        sink.close()
    finally:
        server.stop()


def test_unreachable_server_never_blocks_handle(make_event):
    server = DeviceHiveTestServer().start()
    url = server.ws_url
    server.stop()  # nothing listens on this port now
    sink = DeviceHiveSink(DeviceHiveSettings(url=url, device_id=DEVICE, refresh_token="x",
                                             backoff_initial=0.1))
    try:
        started = time.perf_counter()
        for i in range(200):
            sink.handle(make_event(i))
        assert time.perf_counter() - started < 0.5
        deadline = time.monotonic() + 5
        while sink.status()["state"] != "disconnected" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.status()["state"] == "disconnected" and sink.status()["queued"] == 200
    finally:
        sink.close(timeout=0.1)


def test_close_while_connecting_returns_promptly():
    # 10.255.255.1 is unroutable: the connect attempt hangs until abandoned.
    sink = DeviceHiveSink(DeviceHiveSettings(url="ws://10.255.255.1:9/api/websocket",
                                             device_id=DEVICE, refresh_token="x"))
    time.sleep(0.2)
    started = time.perf_counter()
    sink.close(timeout=0.1)
    assert time.perf_counter() - started < 2
    assert not any(t.name == "devicehive-sink" and t.is_alive() for t in threading.enumerate()
                   if t is sink._thread)


@pytest.mark.parametrize("kwargs, message", [
    ({"url": "ftp://x/api", "refresh_token": "t"}, "ws://"),
    ({"url": "ws://h:99999/api", "refresh_token": "t"}, "malformed"),
    ({"url": "ws://h/api", "device_id": "bad id!", "refresh_token": "t"}, "device id"),
    ({"url": "ws://h/api"}, "token"),
])
def test_settings_validation(kwargs, message):
    kwargs.setdefault("device_id", DEVICE)
    with pytest.raises(DeviceHiveConfigError, match=message):
        DeviceHiveSettings(**kwargs).validate()


def test_settings_repr_hides_secrets():
    text = repr(DeviceHiveSettings(url="ws://h/api", device_id=DEVICE, refresh_token="SECRET1",
                                   access_token="SECRET2", password="SECRET3"))
    assert "SECRET" not in text


def test_build_notification_formats(make_event):
    event = make_event(2)
    note = build_notification(event, 1, "2026-01-01T00:00:00.000", "x", legacy=False)
    assert note.name == "x" and set(note.parameters) == {"id", "predictions", "timestamp", "window"}
    assert note.parameters["id"] == 2
    legacy = build_notification(event, 1, "2026-01-01T00:00:00.000", "x", legacy=True)
    assert legacy.parameters is None and json.loads(legacy.name)[0][0] == "Speech"


def _rest(server: DeviceHiveTestServer, method: str, path: str, body=None, token=None):
    import http.client

    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, "/api/rest" + path,
                     body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


def test_test_server_speaks_the_documented_rest_protocol():
    """The test server itself: status codes, token expiry, 401s (what the sink relies on)."""
    server = DeviceHiveTestServer(access_ttl=0.5).start()
    try:
        assert _rest(server, "POST", "/token", {"login": "dhadmin", "password": "bad"})[0] == 401
        code, tokens = _rest(server, "POST", "/token",
                             {"login": "dhadmin", "password": "dhadmin_#911"})
        assert code == 201 and set(tokens) == {"accessToken", "refreshToken"}
        access = tokens["accessToken"]
        header, payload, _ = access.split(".")
        import base64

        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))["payload"]
        assert claims["t"] == 1 and claims["u"] == "dhadmin" and claims["e"] > 0
        assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "HS256"
        assert _rest(server, "GET", "/info")[1]["apiVersion"]
        assert _rest(server, "PUT", "/device/dev-9", {"name": "x"}, access)[0] == 204
        assert _rest(server, "PUT", "/device/dev-9", {"name": "x"}, access + "x")[0] == 401
        assert _rest(server, "PUT", "/device/bad_id!", {"name": "x"}, access)[0] == 400
        code, device = _rest(server, "GET", "/device/dev-9", token=access)
        assert code == 200 and device["id"] == "dev-9" and device["name"] == "x"
        code, note = _rest(server, "POST", "/device/dev-9/notification",
                           {"notification": "n", "parameters": {"a": 1}}, access)
        assert code == 201 and set(note) == {"id", "timestamp"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", note["timestamp"])
        time.sleep(0.7)  # the access token expires
        code, error = _rest(server, "GET", "/device/dev-9", token=access)
        assert code == 401 and "expired" in error["message"]
        code, fresh = _rest(server, "POST", "/token/refresh",
                            {"refreshToken": tokens["refreshToken"]})
        assert code == 201 and _rest(server, "GET", "/device/dev-9",
                                     token=fresh["accessToken"])[0] == 200
        assert _rest(server, "POST", "/token/refresh", {"refreshToken": access})[0] == 401
    finally:
        server.stop()


def test_sound_event_starts_and_ends_are_soundEvent_notifications_in_order(
        dh_server, make_event, make_sound):
    sink = DeviceHiveSink(_settings(dh_server, "ws"))
    try:
        sink.handle(make_event(0, timestamp=1_700_000_000))
        sink.handle_sound(make_sound("start", 7))
        sink.handle_sound(make_sound("update", 7))  # not sent
        sink.handle_sound(make_sound("end", 7))
        got = _wait_count(dh_server, 3)
        assert [n["notification"] for n in got] == ["audio_analysis", SOUND_NOTIFICATION_NAME,
                                                    SOUND_NOTIFICATION_NAME]
        start, end = got[1]["parameters"], got[2]["parameters"]
        assert {k: start[k] for k in ("kind", "id", "sound", "classes", "start")} == \
            {"kind": "start", "id": 7, "sound": "dog", "classes": ["Dog", "Bark"], "start": 12.4}
        assert end["kind"] == "end" and end["end"] == 15.1 and end["peak_dbfs"] == -18.2
        assert start["timestamp"] == got[1]["timestamp"] == format_timestamp(1_700_000_012_400)
        assert sink.flush(5) and sink.status()["sent"] == 3
    finally:
        sink.close()


def test_legacy_format_sends_no_sound_events(dh_server, make_event, make_sound):
    sink = DeviceHiveSink(_settings(dh_server, "ws"), legacy_format=True)
    try:
        sink.handle_sound(make_sound("start", 1))
        sink.handle(make_event(0))
        (note,) = _wait_count(dh_server, 1)
        assert note["parameters"] is None
        assert sink.flush(5) and sink.status()["sent"] == 1
    finally:
        sink.close()

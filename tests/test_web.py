"""The web interface over real HTTP on 127.0.0.1: API, SSE, config persistence, security."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from audio.sinks.devicehive import DeviceHiveSink
from web.config import ConfigError, DaemonConfig, default_config_path, load_config, save_config
from web.server import EventStore, WebApp, WebServer, allowed_hosts_for

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.REFRESH-SECRET"


class Site:
    def __init__(self, tmp_path: Path, config: DaemonConfig | None = None, sink=None) -> None:
        self.store = EventStore()
        self.config_path = tmp_path / "cfg" / "config.json"
        self.applied: list[DaemonConfig] = []
        sources = {"devicehive": sink.status} if sink else {}

        def on_config(cfg: DaemonConfig) -> None:
            self.applied.append(cfg)
            if sink is not None:
                sink.reconfigure(cfg.devicehive_settings())

        self.app = WebApp(self.store, config=config or DaemonConfig(),
                          config_path=self.config_path, on_config=on_config,
                          status_sources=sources, allowed_hosts=allowed_hosts_for("127.0.0.1"))
        self.server = WebServer(("127.0.0.1", 0), self.app)
        self.server.start()
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, \
                response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> dict:
        status, _, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def csrf(self) -> str:
        _, _, body = self.request("GET", "/")
        return re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()

    def post_config(self, fields: dict[str, str], origin: str | None = "same",
                    csrf: str | None = "auto") -> tuple[int, dict[str, str], bytes]:
        from urllib.parse import urlencode

        if csrf == "auto":
            fields = {**fields, "csrf_token": self.csrf()}
        elif csrf is not None:
            fields = {**fields, "csrf_token": csrf}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if origin == "same":
            headers["Origin"] = self.origin
        elif origin is not None:
            headers["Origin"] = origin
        return self.request("POST", "/config", urlencode(fields), headers)

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def test_api_events_newest_first_with_cursor_and_limit(site, make_event):
    for i in range(1, 16):
        site.store.handle(make_event(i))
    data = site.get_json("/api/events")
    ids = [e["id"] for e in data["events"]]
    assert ids == list(range(15, 5, -1))  # default: last 10, newest first
    event = data["events"][0]
    assert set(event) >= {"id", "timestamp", "predictions"}
    assert event["predictions"][0] == {"label": "Speech", "score": pytest.approx(0.9 - 15e-4)}
    assert [e["id"] for e in site.get_json("/api/events?since=12")["events"]] == [15, 14, 13]
    assert [e["id"] for e in site.get_json("/api/events?limit=2")["events"]] == [15, 14]
    assert site.get_json("/api/events?since=15")["events"] == []
    for bad in ("since=abc", "limit=0", "limit=100000", "since=-1"):
        status, _, body = site.request("GET", f"/api/events?{bad}")
        assert status == 400 and b"Traceback" not in body


def test_status_and_healthz(site, make_event):
    site.store.handle(make_event(1))
    status = site.get_json("/api/status")
    assert status["events"] == {"total": 1, "last_id": 1}
    assert set(status["devicehive"]) >= {"state", "sent", "queued", "dropped", "last_error"}
    assert status["uptime"] >= 0
    assert site.get_json("/healthz")["status"] == "ok"


def test_sse_stream_pushes_new_events(site, make_event):
    site.store.handle(make_event(1))
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=5)
    try:
        sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.2)
        threading.Timer(0.2, lambda: [site.store.handle(make_event(i)) for i in (2, 3)]).start()
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"event: prediction") < 2 and time.monotonic() < deadline:
            data += sock.recv(65536)
    finally:
        sock.close()
    assert b"text/event-stream" in data
    assert b"id: 2\n" in data and b"id: 3\n" in data and b"id: 1\n" not in data
    payload = json.loads(data.split(b"id: 3\nevent: prediction\ndata: ")[1].split(b"\n")[0])
    assert payload["id"] == 3 and payload["predictions"][0]["label"] == "Speech"


def test_pages_render_and_poll_the_api(site):
    status, headers, body = site.request("GET", "/events/")
    assert status == 200 and b'src="/static/events.js"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    _, _, js = site.request("GET", "/static/events.js")
    assert b"/api/events" in js and b"setInterval(poll, 1000)" in js
    status, _, _ = site.request("GET", "/static/../server.py")
    assert status == 404


# ---- configuration persistence ---------------------------------------------------------
def test_config_save_is_atomic_0600_and_reloads(tmp_path):
    path = tmp_path / "deep" / "dir" / "config.json"
    config = DaemonConfig(server_url="ws://h/api/websocket", device_id="d-1",
                          refresh_token=SECRET)
    save_config(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_config(path) == config
    assert not [p for p in path.parent.iterdir() if p.name != "config.json"]  # no temp left
    assert SECRET not in repr(config) and config.public()["refresh_token"] == "set"


def test_config_path_env_and_xdg(tmp_path):
    assert default_config_path({"AUDIO_ANALYSIS_CONFIG": str(tmp_path / "x.json")}) == \
        tmp_path / "x.json"
    assert default_config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == \
        tmp_path / "audio-analysis" / "config.json"
    assert load_config(tmp_path / "missing.json") == DaemonConfig()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"), ("[1]", "JSON object"),
    ('{"device_id": 5}', "device_id must be a str")])
def test_bad_config_file(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_form_saves_and_reconfigures(site):
    status, headers, _ = site.post_config({"server_url": "ws://127.0.0.1:1/api/websocket",
                                           "device_id": "dev-2", "refresh_token": SECRET})
    assert status == 303 and headers["location"] == "/?saved=1"
    saved = load_config(site.config_path)
    assert saved.refresh_token == SECRET and saved.device_id == "dev-2"
    assert stat.S_IMODE(site.config_path.stat().st_mode) == 0o600
    assert site.applied[-1] == saved
    # An empty token field keeps the token; the page says "set" but never shows it.
    status, _, _ = site.post_config({"server_url": "ws://127.0.0.1:1/api/websocket",
                                     "device_id": "dev-3"})
    assert status == 303 and load_config(site.config_path).refresh_token == SECRET
    _, _, page = site.request("GET", "/?saved=1")
    assert SECRET.encode() not in page and b"Saved; reconnecting." in page
    assert b'<span id="refresh-state">set</span>' in page
    assert SECRET not in json.dumps(site.get_json("/api/status"))
    site.post_config({"server_url": "ws://127.0.0.1:1/api/websocket", "device_id": "dev-3",
                      "clear_refresh_token": "1", "access_token": "A"})
    assert load_config(site.config_path).refresh_token == ""


def test_invalid_config_is_refused_with_an_escaped_message(site):
    status, _, page = site.post_config({"server_url": "javascript:<script>alert(1)</script>",
                                        "device_id": "<script>alert(2)</script>",
                                        "refresh_token": "t"})
    assert status == 400
    assert b"<script>alert" not in page
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not site.config_path.exists() and not site.applied


def test_stored_values_are_escaped_in_the_page(tmp_path):
    evil = '"><script>alert(1)</script>'
    save_config(tmp_path / "c.json", DaemonConfig(server_url=evil, device_id=evil))
    s = Site(tmp_path, config=load_config(tmp_path / "c.json"))
    try:
        _, _, page = s.request("GET", "/")
        assert b"<script>alert(1)" not in page
        assert b"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    finally:
        s.close()


# ---- security --------------------------------------------------------------------------
@pytest.mark.parametrize("origin, csrf", [
    ("http://evil.example", "auto"),  # cross-origin, even with the token
    ("http://evil.example", None),  # cross-origin without token
    (None, "auto"),  # no Origin and no Referer
    ("same", None),  # same origin, no token
    ("same", "wrong-token"),
])
def test_config_post_needs_same_origin_and_csrf(site, origin, csrf):
    status, _, body = site.post_config({"server_url": "ws://h/api", "device_id": "d",
                                        "refresh_token": "t"}, origin=origin, csrf=csrf)
    assert status == 403 and b"Traceback" not in body
    assert not site.config_path.exists() and not site.applied


def test_referer_is_accepted_when_origin_is_absent(site):
    from urllib.parse import urlencode

    body = urlencode({"server_url": "", "device_id": "", "csrf_token": site.csrf()})
    status, _, _ = site.request("POST", "/config", body, {
        "Content-Type": "application/x-www-form-urlencoded", "Referer": site.origin + "/"})
    assert status == 303


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "[::2]:80", ""])
def test_foreign_host_is_refused(site, host):
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=5)
    try:
        header = f"Host: {host}\r\n" if host else ""
        sock.sendall(f"GET /api/status HTTP/1.1\r\n{header}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    assert data.split(b" ")[1] in (b"400", b"421")
    assert b"devicehive" not in data


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:8000"])
def test_loopback_hosts_are_allowed(site, host):
    status, _, _ = site.request("GET", "/healthz", headers={"Host": host})
    assert status == 200


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad header line\r\n\r\n",
    b"POST /config HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
    b"Content-Length: 99999999\r\n\r\n",
    b"POST /config HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
    b"Content-Length: nope\r\n\r\n",
    b"POST /config HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n\r\n",
    b"POST /config HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /config HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\n\r\n\xff\xfe=\xff",
    b"GET /api/events?" + b"a=1&" * 100 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"DELETE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /\x00\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
])
def test_malformed_requests_get_4xx_and_the_server_lives_on(site, raw):
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=5)
    try:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    code = int(data.split(b" ")[1])
    assert 400 <= code < 500, data[:200]
    assert b"Traceback" not in data
    assert site.get_json("/healthz")["status"] == "ok"
    assert site.app.server_errors == 0


def test_status_shows_devicehive_error_without_secret(tmp_path, dh_server):
    from audio.sinks.devicehive import DeviceHiveSettings

    sink = DeviceHiveSink(DeviceHiveSettings(url=dh_server.ws_url, device_id="d-1",
                                             refresh_token=SECRET, backoff_initial=0.2))
    s = Site(tmp_path, sink=sink)
    try:
        deadline = time.monotonic() + 5
        while not s.get_json("/api/status")["devicehive"]["last_error"] \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        status = s.get_json("/api/status")
        assert "401" in status["devicehive"]["last_error"]
        assert SECRET not in json.dumps(status)
        _, _, page = s.request("GET", "/")
        assert b"Last error: " in page and b"401" in page and SECRET.encode() not in page
    finally:
        s.close()
        sink.close(timeout=0)


def test_unreachable_devicehive_never_blocks_the_page(tmp_path, make_event):
    # A server that never answers: the kernel completes the TCP handshake (the socket
    # listens) but nothing ever accepts, so the WebSocket handshake hangs until the sink
    # abandons it. (An unroutable address is not reliable: some networks answer at once.)
    import socket

    from audio.sinks.devicehive import DeviceHiveSettings

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    sink = DeviceHiveSink(DeviceHiveSettings(url=f"ws://127.0.0.1:{port}/api/websocket",
                                             device_id="d-1", refresh_token="x"))
    s = Site(tmp_path, sink=sink)
    try:
        for i in range(5):
            sink.handle(make_event(i))
        for path in ("/", "/api/status", "/events/", "/api/events"):
            started = time.perf_counter()
            status, _, _ = s.request("GET", path)
            assert status == 200 and time.perf_counter() - started < 1.0
        assert s.get_json("/api/status")["devicehive"]["state"] == "connecting"
    finally:
        s.close()
        sink.close(timeout=0)
        silent.close()


def test_config_file_mode_survives_umask(tmp_path):
    old = os.umask(0)
    try:
        save_config(tmp_path / "c.json", DaemonConfig(device_id="x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600


def test_api_sounds_and_status_show_sound_events(site, make_sound):
    assert site.get_json("/api/sounds") == {"sounds": [], "total": 0}
    site.store.handle_sound(make_sound("start", 1))
    site.store.handle_sound(make_sound("end", 1))
    site.store.handle_sound(make_sound("start", 2, sound="siren", start=20.0, end=20.5))
    data = site.get_json("/api/sounds?limit=5")
    assert data["total"] == 2
    assert [(s["id"], s["sound"], s["kind"], s["active"]) for s in data["sounds"]] == \
        [(2, "siren", "start", True), (1, "dog", "end", False)]
    assert data["sounds"][1]["end"] == 15.1 and data["sounds"][1]["classes"] == ["Dog", "Bark"]
    assert site.get_json("/api/status")["sounds"] == {"total": 2}
    status, _, body = site.request("GET", "/api/sounds?limit=0")
    assert status == 400 and b"Traceback" not in body
    _, _, page = site.request("GET", "/events/")
    assert b'id="sounds-body"' in page

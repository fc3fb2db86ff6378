"""The DeviceHive sink against a misbehaving server: nothing leaks, nothing stalls.

Real sockets and threads throughout: the test server (``tests.dh_server``) injects the
faults, and the process's own thread and descriptor counts come from ``/proc``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audio.sinks.devicehive import DeviceHiveSettings, DeviceHiveSink
from tests.conftest import require_shared
from tests.dh_server import DeviceHiveTestServer

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "audio-fault-1"


def _threads_and_fds() -> tuple[int, int]:
    status = open("/proc/self/status", encoding="ascii").read()
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    return threads, len(os.listdir("/proc/self/fd"))


def _settle(baseline: tuple[int, int], timeout: float = 10) -> tuple[int, int]:
    """The counts once they are back at ``baseline`` (or whatever they are at ``timeout``):
    the server's handler threads end a moment after each connection closes."""
    deadline = time.monotonic() + timeout
    while True:
        now = _threads_and_fds()
        if (now[0] <= baseline[0] and now[1] <= baseline[1]) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def _fast_settings(server: DeviceHiveTestServer, transport: str, **kw) -> DeviceHiveSettings:
    _access, refresh = server.issue_tokens()
    kw.setdefault("connect_timeout", 2)
    kw.setdefault("request_timeout", 2)
    return DeviceHiveSettings(url=server.ws_url if transport == "ws" else server.rest_url,
                              device_id=DEVICE, refresh_token=refresh,
                              backoff_initial=0.001, backoff_max=0.005, **kw)


def _fail_attempts(server: DeviceHiveTestServer, transport: str, attempts: int,
                   **kw) -> tuple[tuple[int, int], tuple[int, int], dict]:
    """Counts (before, after) ``attempts`` failed connection attempts by one sink."""
    before = _threads_and_fds()
    sink = DeviceHiveSink(_fast_settings(server, transport, **kw))
    try:
        start = server.connections
        assert server.wait_for(lambda s: s.connections - start >= attempts, 120), (
            f"only {server.connections - start} attempts")
        status = sink.status()
    finally:
        sink.close(timeout=0)
    return before, _settle(before), status


@pytest.mark.parametrize("fault", ["401", "500", "invalid_json", "upgrade_500"])
def test_100_failed_websocket_attempts_leak_no_thread_and_no_socket(fault):
    with DeviceHiveTestServer() as server:
        server.fault = fault
        _fail_attempts(server, "ws", 3)  # warm-up: lazy imports, first-use allocations
        before, after, status = _fail_attempts(server, "ws", 100)
    print(f"\nws {fault}: threads/fds before {before}, after 100 failures {after}")
    assert status["state"] in ("connecting", "disconnected")
    assert {"401": "401", "500": "500", "invalid_json": "not valid JSON",
            "upgrade_500": "500"}[fault] in status["last_error"]
    assert after[0] <= before[0], f"threads: {before[0]} -> {after[0]}"
    assert after[1] <= before[1], f"open descriptors: {before[1]} -> {after[1]}"


@pytest.mark.parametrize("fault", ["401", "500", "invalid_json"])
def test_failed_rest_attempts_leak_no_thread_and_no_socket(fault):
    with DeviceHiveTestServer() as server:
        server.fault = fault
        _fail_attempts(server, "rest", 3)
        before, after, _status = _fail_attempts(server, "rest", 50)
    print(f"\nrest {fault}: threads/fds before {before}, after 50 failures {after}")
    assert after == before or (after[0] <= before[0] and after[1] <= before[1]), (before, after)


@pytest.mark.parametrize("transport, fault", [("ws", "hang"), ("ws", "hang_upgrade"),
                                              ("rest", "hang")])
def test_abandoned_attempts_on_a_hanging_server_leak_nothing(transport, fault):
    """The server accepts and never answers (the upgrade, or the requests): each attempt
    is abandoned at its deadline."""
    with DeviceHiveTestServer() as server:
        server.fault = fault
        _fail_attempts(server, transport, 1, connect_timeout=0.2, request_timeout=0.2)
        before, after, status = _fail_attempts(server, transport, 10, connect_timeout=0.2,
                                               request_timeout=0.2)
    print(f"\n{transport} {fault}: threads/fds before {before}, after 10 abandoned {after}")
    assert re.search(r"0\.2 s|timed out", status["last_error"]), status["last_error"]
    assert after[0] <= before[0] and after[1] <= before[1], (before, after)


@pytest.mark.parametrize("transport", ["ws", "rest"])
def test_refused_lookup_after_a_reconnect_resends_and_counts_the_duplicate(
        dh_server, make_event, transport):
    """A token that may not list notifications (403): the uncertain one is sent again."""
    dh_server.refuse_list = True
    sink = DeviceHiveSink(_fast_settings(dh_server, transport))
    try:
        sink.handle(make_event(0))
        assert dh_server.wait_for(lambda s: len(s.device_notifications(DEVICE)) == 1, 10)
        dh_server.drop_after_store = 1  # stored, then the connection is cut: uncertain
        for i in range(1, 4):
            sink.handle(make_event(i))
        assert sink.flush(15), sink.status()
        starts = [n["parameters"]["window"]["start"]
                  for n in dh_server.device_notifications(DEVICE)]
        assert starts == [0.0, 0.96, 0.96, 1.92, 2.88]  # nothing lost, one duplicate
        status = sink.status()
        assert status["duplicates"] == 1 and status["sent"] == 4 and status["queued"] == 0
        assert ("rest" if transport == "rest" else "websocket",
                "notification/list") in dh_server.requests
        # Delivery goes on afterwards.
        sink.handle(make_event(4))
        assert sink.flush(10) and sink.status()["sent"] == 5
    finally:
        sink.close()


def _daemon_request(port: int, method: str, path: str, body: str | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _daemon_status(port: int) -> dict:
    return json.loads(_daemon_request(port, "GET", "/api/status")[1])


def _start_daemon(tmp_path: Path, server: DeviceHiveTestServer, url: str | None = None,
                  token_in_env: str | None = None) -> tuple[subprocess.Popen, int, Path]:
    """daemon.py (YAMNet, a looped file) sending to ``server``; returns once it runs.
    The refresh token goes in a flag, or in the environment with ``token_in_env``."""
    yamnet = require_shared("models", "yamnet", "yamnet.tflite")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}
    for name in ("AUDIO_ANALYSIS_CONFIG", "AUDIO_ANALYSIS_DH_REFRESH_TOKEN",
                 "AUDIO_ANALYSIS_DH_ACCESS_TOKEN"):
        env.pop(name, None)
    if token_in_env:
        env["AUDIO_ANALYSIS_DH_REFRESH_TOKEN"] = token_in_env
        token_args = ["-v"]  # INFO lines too: the log shows the URL it connects to
    else:
        token_args = ["--dh_refresh_token", server.issue_tokens()[1]]
    log = tmp_path / "daemon.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "daemon.py"), "--source",
             str(ROOT / "examples" / "speech.wav"), "--min_time", "1", "--backend", "yamnet",
             "--yamnet_model", str(yamnet), "--port", str(port),
             "--config", str(tmp_path / "config.json"), "--dh_url", url or server.ws_url,
             "--dh_device_id", DEVICE, *token_args],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if _daemon_status(port)["events"]["total"] >= 3:
                return proc, port, log
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the daemon did not start: {log.read_text()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["from_the_start", "after_connecting"])
def test_sigterm_exits_within_5_s_while_the_server_hangs(tmp_path, when):
    """The server accepts the WebSocket and never answers (from the start, or once the
    daemon is connected and sending): SIGTERM still ends the daemon within 5 s."""
    with DeviceHiveTestServer() as server:
        if when == "from_the_start":
            server.fault = "hang"
        proc, port, log = _start_daemon(tmp_path, server)
        try:
            if when == "after_connecting":
                assert server.wait_for(lambda s: len(s.device_notifications(DEVICE)) >= 1, 30)
                server.fault = "hang"  # the next insert is never answered
                time.sleep(1.5)
                dh = _daemon_status(port)["devicehive"]
                assert dh["state"] == "connected" and dh["queued"] >= 1, dh  # one is stuck
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = proc.wait(30)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"\nSIGTERM with a hanging server ({when}): exit {code} after {took:.2f} s")
    assert code == 0, log.read_text()[-2000:]
    assert took < 8, f"SIGTERM took {took:.2f} s"


# ---- credentials ---------------------------------------------------------------------
@pytest.mark.parametrize("url, shown", [
    ("http://user:pass@host/api/rest?access_token=abc",
     "http://***@host/api/rest?access_token=***"),
    ("wss://tok@h:8443/api/websocket?a=1&b", "wss://***@h:8443/api/websocket?a=***&***"),
    ("ws://h/api/websocket", "ws://h/api/websocket"),
    ("http://[::1]:80/x#secret", "http://[::1]:80/x#***"),
    ("ws://u:p@h:99999/", "***"),  # does not parse: masked whole
])
def test_redact_url(url, shown):
    from audio.sinks.devicehive import redact_url

    assert redact_url(url) == shown


def test_settings_and_config_never_show_url_credentials():
    from web.config import DaemonConfig, environment_tokens

    url = "ws://user:PASSWORD@h/api/websocket?access_token=QUERYSECRET"
    settings = DeviceHiveSettings(url=url, device_id=DEVICE, refresh_token="REFRESHSECRET")
    config = DaemonConfig(server_url=url, device_id=DEVICE, refresh_token="REFRESHSECRET")
    for text in (repr(settings), repr(config), json.dumps(config.public())):
        assert "SECRET" not in text and "PASSWORD" not in text, text
    assert config.public()["server_url"] == "ws://***@h/api/websocket?access_token=***"
    assert environment_tokens({"AUDIO_ANALYSIS_DH_REFRESH_TOKEN": " r ",
                               "AUDIO_ANALYSIS_DH_ACCESS_TOKEN": ""}) == {
        "refresh_token": "r", "access_token": None}


@pytest.mark.slow
def test_daemon_takes_the_token_from_the_environment_and_redacts_the_url(tmp_path):
    """A refresh token in the environment only (not in ``ps``), a URL with credentials:
    delivery works, and the URL is shown redacted on the page, in the status and in the
    log; the form sends the redacted URL back unchanged and the real one is kept."""
    from urllib.parse import urlencode

    with DeviceHiveTestServer() as server:
        _access, refresh = server.issue_tokens()
        url = server.ws_url.replace("ws://", "ws://someone:PASSWORD@") + "?access_token=QSECRET"
        shown = server.ws_url.replace("ws://", "ws://***@") + "?access_token=***"
        proc, port, log = _start_daemon(tmp_path, server, url=url, token_in_env=refresh)
        try:
            assert server.wait_for(lambda s: len(s.device_notifications(DEVICE)) >= 1, 30)
            status = _daemon_status(port)
            assert status["devicehive"]["url"] == status["config"]["server_url"] == shown
            assert status["config"]["refresh_token"] == "set"
            page = _daemon_request(port, "GET", "/")[1]
            assert f'value="{shown}"'.encode() in page
            csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
            code, _ = _daemon_request(port, "POST", "/config", urlencode({
                "csrf_token": csrf, "server_url": shown, "device_id": DEVICE}), {
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": f"http://127.0.0.1:{port}"})
            assert code == 303
            saved = json.loads((tmp_path / "config.json").read_text())
            assert saved["server_url"] == url  # not the redacted form
            cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read()
            assert refresh.encode() not in cmdline
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    text = log.read_text()
    assert f"connected to {shown}" in text
    for secret in ("PASSWORD", "QSECRET", refresh):
        assert secret not in text and secret.encode() not in page

"""Webhooks against receivers that misbehave (issue 23), raw sockets on 127.0.0.1: a
huge answer body is not read, a drip-fed answer is given up at the POST's deadline,
Retry-After is honoured, a redirect is retried and shown (never followed nor lost), a
410 Gone disables the URL until it is configured again."""

from __future__ import annotations

import email.utils
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from audio.commit import Committer
from audio.sinks.webhook import RETRY_AFTER_MAX, WebhookSink, retry_after
from audio.store import Store
from tests.test_webhook import WAIT, _record, _settings, _wait


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "events.db") as db:
        yield db


# ---- misbehaving receivers (issue 23): raw sockets on 127.0.0.1 ------------------------
class RawReceiver:
    """A TCP server on 127.0.0.1 that reads each request and hands the socket to
    ``answer(conn, number)``, one thread per connection; ``accepted`` holds each
    connection's ``(monotonic time, request bytes)``."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.accepted: list[tuple[float, bytes]] = []
        self.closed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            self.accepted.append((time.monotonic(), request))
            try:
                self.answer(conn, len(self.accepted))
            except OSError:
                pass  # the client went: what the misbehaving answers expect

    def bodies(self) -> list[dict]:
        return [json.loads(r.partition(b"\r\n\r\n")[2]) for _, r in self.accepted]

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def _answer(status: str, *headers: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{h}\r\n" for h in headers)
            + "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()


@pytest.fixture
def raw_servers() -> Iterator[list[RawReceiver]]:
    servers: list[RawReceiver] = []
    yield servers
    for server in servers:
        server.close()


def _raw(servers: list[RawReceiver], answer) -> RawReceiver:
    servers.append(RawReceiver(answer))
    return servers[-1]


HUGE_BODY = 300 * 1024 * 1024
RSS_PROBE = """
import json, sys, time
from dataclasses import replace
from audio.commit import Committer
from audio.events import SoundEvent
from audio.sinks.webhook import WebhookSink, webhook_settings
from audio.store import Store

def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

url, db = sys.argv[1], sys.argv[2]
with Store(db) as store:
    sink = WebhookSink(replace(webhook_settings([url], None, "k"), timeout=60.0), store=store)
    before = peak_mib()
    started = time.monotonic()
    record = SoundEvent(kind="start", id=1, sound="dog", classes=("Bark",), start=1.0,
                        end=2.0, peak_score=0.9, mean_score=0.7, peak_dbfs=-18.0,
                        mean_dbfs=-21.0, source="mic", start_time=1.7e9, end_time=1.7e9)
    sink.handle_sound(Committer(store).sound(record))
    delivered = sink.flush(120)
    took = time.monotonic() - started
    print(json.dumps({"before": before, "after": peak_mib(), "delivered": delivered,
                      "seconds": took, "sent": sink.status()["sent"]}))
    sink.close()
"""


def test_a_huge_answer_body_is_not_read(raw_servers, tmp_path):
    """A 200 with a 300 MB body: the sink's peak RSS must not grow by the body."""
    def huge(conn: socket.socket, _number: int) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BODY}\r\n\r\n".encode())
        block = b"\0" * 65536
        for _ in range(HUGE_BODY // len(block)):
            conn.sendall(block)

    server = _raw(raw_servers, huge)
    run = subprocess.run([sys.executable, "-c", RSS_PROBE, server.url,
                          str(tmp_path / "events.db")], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout)
    print(f"\nsink peak RSS with a 300 MB answer: {probe['before']:.0f} -> "
          f"{probe['after']:.0f} MiB, delivered in {probe['seconds']:.2f} s")
    assert probe["delivered"] and probe["sent"] == 1 and len(server.accepted) == 1
    assert probe["after"] - probe["before"] < 40


def test_a_drip_fed_answer_is_given_up_at_the_deadline(raw_servers, store):
    """Status line, then one byte every 0.3 s for ever: each read succeeds, so only an
    overall deadline ends the POST; the event is then retried."""
    stop = threading.Event()

    def drip(conn: socket.socket, number: int) -> None:
        if number > 1:
            conn.sendall(_answer("204 No Content"))
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while not stop.wait(0.3):
            conn.sendall(b"x")

    server = _raw(raw_servers, drip)
    sink = WebhookSink(_settings(server.url), store=store)  # timeout 2 s
    try:
        sink.handle_sound(Committer(store).sound(_record("start", 1)))
        _wait(lambda: len(server.accepted) >= 2, "the retry after the deadline")
        gave_up = server.accepted[1][0] - server.accepted[0][0]
        assert sink.flush(WAIT)
        status = sink.status()["targets"][0]
    finally:
        stop.set()
        sink.close()
    print(f"\ndrip-fed answer given up and retried after {gave_up:.2f} s (deadline 2 s)")
    assert 1.5 < gave_up < 6.0
    assert (status["sent"], status["retries"]) == (1, 1)
    assert [b["id"] for b in server.bodies()] == [1, 1]


def test_retry_after_is_honoured_in_seconds_and_as_a_date(raw_servers, store):
    def busy(conn: socket.socket, number: int) -> None:
        if number == 1:
            conn.sendall(_answer("429 Too Many Requests", "Retry-After: 2"))
        elif number == 2:
            when = email.utils.formatdate(time.time() + 3, usegmt=True)
            conn.sendall(_answer("503 Service Unavailable", f"Retry-After: {when}"))
        else:
            conn.sendall(_answer("200 OK"))

    server = _raw(raw_servers, busy)
    sink = WebhookSink(_settings(server.url), store=store)  # backoff 0.05 s
    try:
        sink.handle_sound(Committer(store).sound(_record("start", 1)))
        assert sink.flush(WAIT)
    finally:
        sink.close()
    times = [t for t, _ in server.accepted]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print("\nretried after " + ", ".join(f"{g:.2f}" for g in gaps)
          + " s (Retry-After: 2, then an HTTP date 3 s ahead)")
    assert len(gaps) == 2 and 1.9 < gaps[0] < 4.0 and 1.9 < gaps[1] < 5.0


def test_retry_after_values():
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 42, usegmt=True)
    assert retry_after("30", now) == 30.0
    assert retry_after(date, now) == pytest.approx(42.0, abs=1.0)
    assert retry_after("86400", now) == RETRY_AFTER_MAX == 300.0
    assert retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5", "²"):
        assert retry_after(bad, now) is None


def test_a_redirect_is_retried_and_shown_never_followed_nor_lost(raw_servers, store):
    elsewhere = _raw(raw_servers, lambda conn, _n: conn.sendall(_answer("200 OK")))
    redirects = 3

    def moved(conn: socket.socket, number: int) -> None:
        if number <= redirects:
            conn.sendall(_answer("307 Temporary Redirect",
                                 f"Location: {elsewhere.url}?token=secret-9"))
        else:
            conn.sendall(_answer("200 OK"))

    server = _raw(raw_servers, moved)
    sink = WebhookSink(replace(_settings(server.url), backoff_initial=0.3), store=store)
    commit = Committer(store)
    try:
        for record in (_record("start", 1), _record("end", 1)):
            sink.handle_sound(commit.sound(record))
        _wait(lambda: len(server.accepted) >= 2, "a retried redirect")
        during = sink.status()["targets"][0]
        assert sink.flush(WAIT)
        after = sink.status()["targets"][0]
    finally:
        sink.close()
    assert during["state"] in ("retrying", "sending") and during["last_status"] == 307
    assert during["location"] == f"{elsewhere.url}?***"
    assert "307" in during["last_error"] and elsewhere.url in during["last_error"]
    assert "secret-9" not in json.dumps(during)
    assert [(b["type"], b["id"]) for b in server.bodies()] == [("start", 1)] * 4 + [
        ("end", 1)]
    assert not elsewhere.accepted  # the signed body never went to the Location
    assert (after["sent"], after["rejected"], after["retries"]) == (2, 0, 3)
    assert after["location"] is None and after["pending"] == 0


def test_410_gone_disables_the_url_until_it_is_configured_again(raw_servers, store):
    gone = {"on": True}

    def answer(conn: socket.socket, _number: int) -> None:
        conn.sendall(_answer("410 Gone" if gone["on"] else "200 OK"))

    server = _raw(raw_servers, answer)
    commit = Committer(store)
    sink = WebhookSink(_settings(server.url), store=store)
    try:
        sink.handle_sound(commit.sound(_record("start", 1)))
        _wait(lambda: sink.status()["targets"][0]["disabled"], "the URL disabled")
        for record in (_record("end", 1), _record("start", 3)):
            sink.handle_sound(commit.sound(record))
        time.sleep(1.0)
        status = sink.status()
        started = time.monotonic()
        assert sink.flush(WAIT)  # nothing more will go: a stop does not wait for it
        assert time.monotonic() - started < 1.0
    finally:
        sink.close()
    target = status["targets"][0]
    assert len(server.accepted) == 1
    assert target["state"] == "disabled (410 Gone)" and target["last_status"] == 410
    assert "settings change" in target["last_error"] and status["disabled"] == 1
    assert target["pending"] == 3 and target["rejected"] == 0  # kept, not dropped
    gone["on"] = False  # the receiver is back; the settings are applied again
    again = WebhookSink(_settings(server.url), store=store)
    try:
        assert again.flush(WAIT)
    finally:
        again.close()
    assert [(b["type"], b["id"]) for b in server.bodies()] == [
        ("start", 1), ("start", 1), ("end", 1), ("start", 3)]


def test_saving_the_settings_again_re_enables_a_gone_url(raw_servers, store):
    """The settings page's ``reconfigure`` with unchanged URLs builds a gone URL anew."""
    from audio.sinks.factory import HomeSinks
    from web.config import DaemonConfig
    from web.home import reconfigure

    gone = {"on": True}
    server = _raw(raw_servers, lambda conn, _n: conn.sendall(
        _answer("410 Gone" if gone["on"] else "204 No Content")))
    home = HomeSinks(store)
    config = DaemonConfig(webhook_urls=(server.url,))
    reconfigure(home, config)
    try:
        home.handle_sound(Committer(store).sound(_record("start", 1)))
        _wait(lambda: home.webhooks.disabled, "the URL disabled")
        first = home.webhooks
        reconfigure(home, config)  # unchanged: nothing to do while no URL is gone ...
        gone["on"] = False
        assert home.webhooks is not first  # ... but this one is built anew
        assert home.webhooks.flush(WAIT)
        status = home.status_sources()["webhooks"]()
        unchanged = home.webhooks
        reconfigure(home, config)
        assert home.webhooks is unchanged  # healthy: not rebuilt for nothing
    finally:
        home.reconfigure_webhooks(None)
    assert [b["id"] for b in server.bodies()] == [1, 1]
    assert status["disabled"] == 0 and status["targets"][0]["state"] != "disabled (410 Gone)"

"""Webhooks against a real HTTP server on 127.0.0.1 and a real event store: every start
and end arrives (at least once, in order) with a valid signature through 5xx, 429 and a
dead server; a 400 is not retried; a URL that never answers holds nobody else up."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from audio.commit import Committer
from audio.events import SoundEvent
from audio.sinks.webhook import (
    WebhookConfigError,
    WebhookSink,
    webhook_settings,
)
from audio.store import Store

SECRET = "hook-secret"
WAIT = 30.0


class Receiver:
    """An HTTP server that records every POST and answers with the statuses queued in
    ``answers`` (then 200); ``hang`` makes it never answer."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.reject_ids: set[int] = set()
        self.hang = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                if receiver.hang.is_set():
                    time.sleep(60)
                status = receiver.answers.pop(0) if receiver.answers else 200
                if json.loads(body)["id"] in receiver.reject_ids:
                    status = 400
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=t"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "events.db") as db:
        yield db


def _record(kind: str, id_: int, sound: str = "dog") -> SoundEvent:
    return SoundEvent(kind=kind, id=id_, sound=sound, classes=("Bark",), start=1.0, end=2.0,
                      peak_score=0.9, mean_score=0.7, peak_dbfs=-18.0, mean_dbfs=-21.0,
                      source="mic", start_time=1.7e9, end_time=1.7e9 + 1)


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _settings(*urls: str):
    return replace(webhook_settings(urls, SECRET, "kitchen"), backoff_initial=0.05,
                   backoff_max=0.2, timeout=2.0)


def test_every_event_arrives_signed_in_order_through_failures(receiver, store):
    receiver.answers = [503, 429, 500]  # the first event is refused three times
    commit = Committer(store)
    sink = WebhookSink(_settings(receiver.url), store=store)
    try:
        records = [_record("start", 1), _record("update", 1), _record("end", 1),
                   _record("start", 2, "siren"), _record("end", 2, "siren")]
        for record in records:
            sink.handle_sound(commit.sound(record))
        assert sink.flush(WAIT)
        status = sink.status()["targets"][0]
    finally:
        sink.close()
    bodies = receiver.bodies()
    assert [(b["type"], b["id"]) for b in bodies] == [("start", 1)] * 4 + [
        ("end", 1), ("start", 4), ("end", 4)]  # updates are not sent; ids: store seqs
    assert bodies[0]["device"] == "kitchen" and bodies[0]["sound"] == "dog"
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
        assert headers["Content-Type"] == "application/json"
    assert {h["X-Audio-Analysis-Delivery"] for h, _ in receiver.requests[:4]} == {"1"}
    assert (status["sent"], status["retries"], status["rejected"]) == (4, 3, 0)
    assert status["pending"] == 0 and "token=t" not in json.dumps(sink.status())


def test_a_400_is_not_retried_and_is_shown(receiver, store):
    receiver.reject_ids = {1}
    commit = Committer(store)
    sink = WebhookSink(_settings(receiver.url), store=store)
    try:
        for record in (_record("start", 1), _record("end", 1), _record("start", 3)):
            sink.handle_sound(commit.sound(record))
        assert sink.flush(WAIT)
        status = sink.status()
    finally:
        sink.close()
    assert [(b["type"], b["id"]) for b in receiver.bodies()] == [("start", 1), ("end", 1),
                                                                  ("start", 3)]
    target = status["targets"][0]
    assert (target["sent"], target["rejected"], target["last_status"]) == (1, 2, 200)
    assert status["rejected"] == 2


def test_a_hanging_url_holds_up_neither_the_others_nor_the_stop(receiver, store):
    other = Receiver()
    other.hang.set()
    commit = Committer(store)
    sink = WebhookSink(_settings(other.url, receiver.url), store=store)
    try:
        started = time.monotonic()
        for record in (_record("start", 1), _record("end", 1)):
            sink.handle_sound(commit.sound(record))
        assert time.monotonic() - started < 0.5  # handing over never waits
        _wait(lambda: len(receiver.requests) == 2, "the healthy URL's deliveries")
        assert not sink.flush(0.5)  # the hanging one has not delivered
        names = {t["consumer"] for t in sink.status()["targets"]}
        assert len(names) == 2 and all(n.startswith("webhook:") for n in names)
    finally:
        started = time.monotonic()
        sink.close(timeout=0.5)
        took = time.monotonic() - started
        other.server.server_close()
    assert took < 3.0
    assert store.cursor(f"webhook:{_hash(other.url)}") == 0  # sent again after a restart


def _hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def test_bad_urls_are_refused_in_one_line():
    for urls in (["ftp://h/x"], ["http://"], ["http://h:99999/"], ["http://h/", "http://h/"]):
        with pytest.raises(WebhookConfigError):
            webhook_settings(urls, None, "k")

"""The web interface's routes through Starlette's TestClient: history from the durable
event store, the original's routes and configuration file, LAN sign-in, rate limiting."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from audio.detect import SoundEvent
from audio.events import Event, Prediction
from audio.store import Retention, Store
from web.auth import (
    Auth,
    Password,
    PasswordError,
    RateLimiter,
    Sessions,
    hash_password,
    verify_password,
)
from web.config import ConfigError, DaemonConfig, import_legacy_config, load_config
from web.routes import build_asgi
from web.server import EventStore, WebApp, allowed_hosts_for

HOST = "testserver"
ORIGIN = f"http://{HOST}"
PASSWORD = "correct horse battery"


def window(i: int, source: str = "mic.wav") -> Event:
    return Event(id=i, timestamp=1.7e9 + i, start=1.0 * i, end=1.0 * i + 1.0, source=source,
                 predictions=(Prediction("Dog", 0.8), Prediction("<b>Bark</b>", 0.25)))


def sound(kind: str, i: int) -> SoundEvent:
    return SoundEvent(kind=kind, id=i, sound="dog", classes=("Dog",), start=2.0 * i,
                      end=2.0 * i + 1.5, peak_score=0.9, mean_score=0.7, peak_dbfs=-12.0,
                      mean_dbfs=-20.0, source="mic.wav", start_time=1.7e9 + i,
                      end_time=None if kind == "start" else 1.7e9 + i + 1.5)


def make_app(tmp_path: Path, store, auth: Auth | None = None) -> WebApp:
    return WebApp(store, config=DaemonConfig(), config_path=tmp_path / "cfg" / "config.json",
                  allowed_hosts=allowed_hosts_for("0.0.0.0", [HOST]), auth=auth)


@pytest.fixture
def db(tmp_path: Path):
    store = Store(tmp_path / "events.db", retention=Retention(days=None, max_rows=10**6),
                  prune_in_background=False)
    yield store
    store.close()


def csrf_of(client: TestClient) -> str:
    page = client.get("/").text
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


# ---- history from the store ------------------------------------------------------------------
def test_api_events_pages_the_store_and_survives_a_restart(tmp_path, db):
    seqs = [db.append(window(i)) for i in range(1, 26)]
    db.append(sound("start", 1))
    app = make_app(tmp_path, db)
    try:
        with TestClient(build_asgi(app)) as client:
            first = client.get("/api/events?limit=10").json()
            assert [e["id"] for e in first["events"]] == seqs[::-1][:10]
            assert first["events"][0]["source"] == "mic.wav"
            assert first["events"][0]["window"] == 25 and first["last_id"] == 26
            second = client.get(f"/api/events?limit=10&before={first['next_before']}").json()
            assert [e["id"] for e in second["events"]] == seqs[::-1][10:20]
            last = client.get(f"/api/events?limit=10&before={second['next_before']}").json()
            assert [e["id"] for e in last["events"]] == seqs[::-1][20:]
            assert last["next_before"] is None
            assert [e["id"] for e in client.get("/api/events?since=23").json()["events"]] == \
                [25, 24]
            for bad in ("before=0", "before=x", "limit=0", "since=-1"):
                response = client.get(f"/api/events?{bad}")
                assert response.status_code == 400 and "Traceback" not in response.text
            assert client.get("/api/status").json()["events"]["last_id"] == 26
    finally:
        app.close()
    db.close()
    reopened = Store(tmp_path / "events.db", prune_in_background=False)
    try:
        new = reopened.append(window(1))  # the loop numbers its windows from 1 again
        app = make_app(tmp_path, reopened)
        with TestClient(build_asgi(app)) as client:
            events = client.get("/api/events?limit=3").json()["events"]
            assert [e["id"] for e in events] == [new, 25, 24] and new == 27
        app.close()
    finally:
        reopened.close()


def test_api_sounds_from_the_store_collapse_each_event(tmp_path, db):
    db.append(sound("start", 1))
    db.append(window(1))
    db.append(sound("end", 1))
    db.append(sound("start", 2))
    app = make_app(tmp_path, db)
    with TestClient(build_asgi(app)) as client:
        sounds = client.get("/api/sounds?limit=5").json()["sounds"]
    app.close()
    assert [(s["id"], s["kind"], s["active"]) for s in sounds] == [(2, "start", True),
                                                                   (1, "end", False)]


def test_events_page_explains_the_chart_and_pages_history(tmp_path, db):
    app = make_app(tmp_path, db)
    with TestClient(build_asgi(app)) as client:
        page = client.get("/events/").text
        js = client.get("/static/events.js").text
    app.close()
    assert "averaged over the last 10 windows" in page and 'id="older"' in page
    assert "<th>Source</th>" in page and "<th>Date</th>" in page
    assert "kept in the daemon's event store" in page
    assert "before=" in js and "toLocaleString" in js


# ---- the original's routes -------------------------------------------------------------------
def test_original_status_and_events_update(tmp_path):
    store = EventStore()
    for i in (1, 2):
        store.handle(window(i))
    app = make_app(tmp_path, store)
    with TestClient(build_asgi(app)) as client:
        assert client.get("/status/").json() == {"status": "disconnected", "error_message": ""}
        fragment = client.get("/events/update/")
    assert fragment.headers["content-type"].startswith("text/html")
    rows = re.findall(r'<span class="event-timestamp">([^<]+)</span> ([^\n]+)', fragment.text)
    assert len(rows) == 2 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0][0])
    assert rows[0][1] == "Dog: 0.80, &lt;b&gt;Bark&lt;/b&gt;: 0.25"  # escaped, unlike then
    assert fragment.text.count('<div class="event">') == 2


def test_original_form_post_saves_with_its_field_names(tmp_path):
    app = make_app(tmp_path, EventStore())
    applied = []
    app.on_config = applied.append
    with TestClient(build_asgi(app), follow_redirects=False) as client:
        fields = {"url": "ws://127.0.0.1:1/api/websocket", "token": "REFRESH",
                  "device_id": "pi-1"}
        refused = client.post("/", data=fields, headers={"Origin": ORIGIN})
        assert refused.status_code == 403  # the CSRF token is required here too
        response = client.post("/", data={**fields, "csrf_token": csrf_of(client)},
                               headers={"Origin": ORIGIN})
        assert response.status_code == 302 and response.headers["location"] == "/?saved=1"
    saved = load_config(app.config_path)
    assert (saved.server_url, saved.refresh_token, saved.device_id) == \
        (fields["url"], "REFRESH", "pi-1")
    assert applied == [saved]


def test_legacy_config_is_imported_on_first_start_only(tmp_path):
    legacy = tmp_path / "dh_config.json"
    legacy.write_text(json.dumps({"url": "http://dh.example/api/rest", "token": "TOKEN",
                                  "device_id": "pi-2"}))
    path = tmp_path / "xdg" / "config.json"
    imported = import_legacy_config(path, cwd=tmp_path)
    assert imported == load_config(path)
    assert (imported.server_url, imported.refresh_token, imported.device_id) == \
        ("http://dh.example/api/rest", "TOKEN", "pi-2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    legacy.write_text(json.dumps({"url": "http://other/api/rest", "token": "T2"}))
    assert import_legacy_config(path, cwd=tmp_path) is None  # a configuration exists
    assert load_config(path).refresh_token == "TOKEN"
    assert import_legacy_config(tmp_path / "new.json", cwd=tmp_path / "nowhere") is None
    with pytest.raises(ConfigError, match="no such file"):
        import_legacy_config(tmp_path / "new.json", tmp_path / "missing.json")
    legacy.write_text('{"url": 5}')
    with pytest.raises(ConfigError, match="url must be a string"):
        import_legacy_config(tmp_path / "new.json", legacy)


# ---- sign-in ---------------------------------------------------------------------------------
@pytest.fixture
def lan(tmp_path):
    clock = [1000.0]
    auth = Auth(Password(hashed=hash_password(PASSWORD)),
                sessions=Sessions(ttl_s=60, clock=lambda: clock[0]))
    app = make_app(tmp_path, EventStore(), auth)
    with TestClient(build_asgi(app), follow_redirects=False) as client:
        yield client, app, clock


def sign_in(client: TestClient, password: str = PASSWORD, next_: str = "/events/"):
    return client.post("/login", data={"password": password, "next": next_},
                       headers={"Origin": ORIGIN})


def test_lan_bind_needs_a_session_for_pages_and_api(lan):
    client, _, _ = lan
    response = client.get("/events/")
    assert response.status_code == 303 and response.headers["location"] == \
        "/login?next=/events/"
    for path in ("/api/status", "/api/events", "/status/", "/api/stream"):
        assert client.get(path).status_code == 401
    assert client.post("/config", data={}, headers={"Origin": ORIGIN}).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    login = client.get("/login?next=//evil.example/")
    assert login.status_code == 200 and 'value="/"' in login.text
    assert 'name="csrf-token" content=""' in login.text  # no token before signing in
    assert sign_in(client, "wrong password").status_code == 401
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/events/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=60" in cookie
    assert client.get("/api/status").json()["web"]["auth"] is True
    page = client.get("/events/")
    assert page.status_code == 200 and 'id="signout"' in page.text
    assert "content-security-policy" in page.headers


def test_sign_out_and_expiry_end_the_session(lan):
    client, app, clock = lan
    sign_in(client)
    csrf = csrf_of(client)
    assert client.post("/logout", data={"csrf_token": "wrong"},
                       headers={"Origin": ORIGIN}).status_code == 403
    response = client.post("/logout", data={"csrf_token": csrf}, headers={"Origin": ORIGIN})
    assert response.status_code == 303 and "Max-Age=0" in response.headers["set-cookie"]
    assert client.get("/api/status").status_code == 401
    sign_in(client)
    assert client.get("/api/status").status_code == 200
    clock[0] += 61
    assert client.get("/api/status").status_code == 401 and len(app.auth.sessions) == 0


def test_sign_in_is_rate_limited_per_address(lan):
    client, app, _ = lan
    codes = [sign_in(client, "wrong password").status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    limited = sign_in(client)  # even the right password waits
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    other = TestClient(build_asgi(app), client=("192.0.2.77", 5000), follow_redirects=False)
    assert sign_in(other).status_code == 303  # another address is not held up
    cross = client.post("/login", data={"password": PASSWORD},
                        headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403


def test_rate_limiter_refills_and_bounds_its_memory():
    now = [0.0]
    limiter = RateLimiter(burst=2, refill_s=10, global_burst=100, global_refill_s=1,
                          max_tracked=50, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(10.0)
    now[0] += 10
    assert limiter.acquire("a") == 0.0
    for i in range(500):
        limiter.acquire(f"10.0.{i // 256}.{i % 256}")
    assert limiter.tracked() == 50
    burst = RateLimiter(burst=100, refill_s=1, global_burst=3, global_refill_s=30,
                        clock=lambda: now[0])
    assert [burst.acquire(f"h{i}") > 0 for i in range(4)] == [False, False, False, True]


@pytest.mark.parametrize("target, expected", [
    ("/events/", "/events/"), ("/?saved=1", "/?saved=1"), ("//evil.example/", "/"),
    ("/\t/evil.example/", "/"), ("/\\evil.example", "/"), ("http://evil.example/", "/"),
    ("", "/")])
def test_sign_in_only_redirects_within_the_site(target, expected):
    from web.login import safe_next

    assert safe_next(target) == expected


def test_password_hash_round_trip():
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored) and not verify_password("nope", stored)
    assert hash_password(PASSWORD) != stored  # salted
    with pytest.raises(PasswordError):
        verify_password(PASSWORD, "md5$abc")
    assert Password(plain="x" * 8).matches("x" * 8) and not Password().matches("")

"""The configuration page's MQTT, Home Assistant and webhook settings and the detection
switch, through Starlette's TestClient over the real sinks: a real mosquitto (two, to
move between), a real webhook receiver, the durable event store, and the daemon's own
start-up path (``web.launch.configure`` on ``daemon.py``'s flags) for what the file keeps.
"""

from __future__ import annotations

import json
import re
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from audio.detect import SoundEvent
from audio.sinks.factory import HomeSinks
from audio.store import Retention, Store
from tests.fixtures_mqtt import Broker, Subscriber
from web.config import DaemonConfig, load_config, save_config
from web.routes import build_asgi
from web.server import WebApp, allowed_hosts_for

HOST = "testserver"
ORIGIN = f"http://{HOST}"
WAIT = 30.0
PASSWORD = "mqtt-pw-Zq7"
HOOK_SECRET = "hook-secret-Xy9"


def sound(kind: str, i: int) -> SoundEvent:
    return SoundEvent(kind=kind, id=i, sound="dog", classes=("Dog",), start=2.0 * i,
                      end=2.0 * i + 1.5, peak_score=0.9, mean_score=0.7, peak_dbfs=-12.0,
                      mean_dbfs=-20.0, source="mic.wav", start_time=1.7e9 + i,
                      end_time=None if kind == "start" else 1.7e9 + i + 1.5)


class Site:
    """A WebApp with the home sinks over a real store, and its TestClient."""

    def __init__(self, tmp_path: Path, **options) -> None:
        self.db = Store(tmp_path / "events.db", retention=Retention(days=None, max_rows=10**6),
                        prune_in_background=False)
        self.home = HomeSinks(self.db)
        self.home.set_sounds(["dog"])
        self.config_path = tmp_path / "cfg" / "config.json"
        options.setdefault("config", DaemonConfig())
        options.setdefault("config_path", self.config_path)
        self.app = WebApp(self.db, home=self.home,
                          status_sources=self.home.status_sources(),
                          allowed_hosts=allowed_hosts_for("127.0.0.1", [HOST]), **options)
        self.client = TestClient(build_asgi(self.app))

    def csrf(self) -> str:
        page = self.client.get("/").text
        return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def post(self, path: str, fields: dict, **headers):
        return self.client.post(path, data={**fields, "csrf_token": self.csrf()},
                                headers={"Origin": ORIGIN, **headers}, follow_redirects=False)

    def wait_status(self, name: str, predicate, what: str) -> dict:
        import time

        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            status = self.client.get("/api/status").json()[name]
            if predicate(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {status}")

    def close(self) -> None:
        self.client.close()
        self.home.close()
        self.app.close()
        self.db.close()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def home_fields(**values) -> dict:
    fields = {"mqtt_url": "", "mqtt_ca": "", "mqtt_prefix": "", "mqtt_device_id": "page",
              "ha_discovery": "1", "ha_discovery_prefix": "", "mqtt_predictions": "1",
              "webhook_urls": ""}
    fields.update(values)
    return {k: v for k, v in fields.items() if v is not None}


def shown_errors(page: str) -> dict[str, str]:
    """The visible per-field messages of the form."""
    return dict(re.findall(r'<span class="error field-error" id="error-([a-z_]+)">([^<]*)</span>',
                           page))


# ---- MQTT through the page ---------------------------------------------------------------
def test_the_page_connects_mqtt_then_moves_it_to_another_broker(site, mqtt_broker, tmp_path):
    first = Subscriber(mqtt_broker, ("audio-analysis/+/availability",))
    url = mqtt_broker.url.replace("//", "//kitchen:" + PASSWORD + "@")
    response = site.post("/config/home", home_fields(mqtt_url=url, mqtt_device_id="page-a"))
    assert response.status_code == 303 and response.headers["location"].startswith("/?home_saved")
    first.wait_for(lambda m: [(x.topic, x.payload) for x in m] ==
                   [("audio-analysis/page-a/availability", "online")], WAIT, "page-a online")
    mqtt = site.wait_status("mqtt", lambda s: s["state"] == "connected", "connected")
    assert mqtt["device_id"] == "page-a" and mqtt["password_set"]
    saved = load_config(site.config_path)
    assert saved.mqtt_password == PASSWORD and PASSWORD not in saved.mqtt_url
    assert saved.mqtt_url == mqtt_broker.url.replace("//", "//kitchen@")
    assert stat.S_IMODE(site.config_path.stat().st_mode) == 0o600
    page = site.client.get("/?home_saved=1").text
    assert PASSWORD not in page and PASSWORD not in json.dumps(site.client.get("/api/status").json())
    assert 'id="mqtt-password-state">set<' in page and "MQTT and webhook settings saved." in page
    assert 'id="mqtt-state" class="state connected">connected<' in page
    assert f'value="{mqtt_broker.url.replace("//", "//kitchen@")}"' in page

    # A second broker: the page changes the URL (keeping the password), the sink follows.
    other = Broker(tmp_path / "other").start()
    try:
        second = Subscriber(other, ("audio-analysis/+/availability",), client_id="second")
        response = site.post("/config/home", home_fields(
            mqtt_url=other.url.replace("//", "//kitchen@"), mqtt_device_id="page-b"))
        assert response.status_code == 303
        second.wait_for(lambda m: [(x.topic, x.payload) for x in m] ==
                        [("audio-analysis/page-b/availability", "online")], WAIT,
                        "page-b online on the new broker")
        first.wait_for(lambda m: ("audio-analysis/page-a/availability", "offline") in
                       [(x.topic, x.payload) for x in m], WAIT, "page-a offline")
        mqtt = site.wait_status("mqtt", lambda s: s["state"] == "connected"
                                and s["port"] == other.port, "connected to the second")
        assert mqtt["password_set"] and load_config(site.config_path).mqtt_password == PASSWORD
        # Off: the sink goes, the page says disabled.
        site.post("/config/home", home_fields(mqtt_url="", clear_mqtt_password="1"))
        second.wait_for(lambda m: ("audio-analysis/page-b/availability", "offline") in
                        [(x.topic, x.payload) for x in m], WAIT, "page-b offline")
        assert site.client.get("/api/status").json()["mqtt"] == {"state": "disabled"}
        assert load_config(site.config_path).mqtt_password == ""
        second.close()
    finally:
        other.stop()
    first.close()


def test_the_detection_switch_on_the_page_and_over_mqtt(site, mqtt_broker):
    sub = Subscriber(mqtt_broker, ("audio-analysis/sw/detect/state",))
    site.post("/config/home", home_fields(mqtt_url=mqtt_broker.url, mqtt_device_id="sw"))
    site.wait_status("mqtt", lambda s: s["state"] == "connected", "connected")
    page = site.client.get("/").text
    assert 'id="detection-state" class="state connected">on<' in page
    assert 'name="on" id="detection-on" value="0"' in page
    assert site.post("/detection", {"on": "0"}).status_code == 303
    assert site.home.detection.on is False
    sub.wait_for(lambda m: m and m[-1].payload == "OFF", WAIT, "detect/state OFF")
    page = site.client.get("/").text
    assert ">paused<" in page and 'value="1"' in page and "Resume detection" in page
    # Home Assistant's switch turns the same one; the page follows.
    sub.client.publish("audio-analysis/sw/detect/set", "ON", qos=1)
    site.wait_status("detection", lambda s: s["on"] is True, "detection on")
    assert 'id="detection-state" class="state connected">on<' in site.client.get("/").text
    for bad in ({"on": "maybe"}, {}):
        assert site.post("/detection", bad).status_code == 400
    sub.close()


# ---- validation, secrets, rules -------------------------------------------------------
def test_each_bad_field_gets_one_message_and_nothing_is_saved(site):
    response = site.post("/config/home", home_fields(
        mqtt_url="http://u:url-pw-R2@<b>broker</b>", mqtt_prefix="a/#", mqtt_device_id="Bad Id",
        ha_discovery_prefix="/ha", mqtt_ca="/nonexistent/ca.pem",
        webhook_urls="ftp://hooks.example/x\nhttps://ok.example/y",
        mqtt_password="typed-pw-Q1", webhook_secret=HOOK_SECRET))
    assert response.status_code == 400
    page = response.text
    errors = shown_errors(page)
    assert set(errors) == {"mqtt_url", "mqtt_prefix", "mqtt_device_id", "ha_discovery_prefix",
                           "mqtt_ca", "webhook_urls"}
    for name, message in errors.items():
        assert page.count(f'id="error-{name}"') == 1 and message
    assert "mqtt://" in errors["mqtt_url"] and "http://" in errors["webhook_urls"]
    assert "<b>broker</b>" not in page and "&lt;b&gt;broker&lt;/b&gt;" in page  # escaped
    for secret in ("typed-pw-Q1", HOOK_SECRET, "url-pw-R2"):
        assert secret not in page  # not even when refused
    assert not site.config_path.exists() and site.home.mqtt is None
    # JSON clients get the same messages by field.
    response = site.post("/config/home", home_fields(mqtt_prefix="a/+"),
                         Accept="application/json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["mqtt_prefix"]
    # A CA file with a plain mqtt:// URL: one message, on the CA field.
    ca = site.config_path.parent.parent / "ca.pem"
    ca.write_text("not used\n")
    response = site.post("/config/home", home_fields(mqtt_url="mqtt://127.0.0.1:1",
                                                     mqtt_ca=str(ca)))
    assert shown_errors(response.text).keys() == {"mqtt_ca"}


@pytest.mark.parametrize("origin, csrf", [("http://evil.example", True), (ORIGIN, False),
                                          (None, True)])
def test_home_and_detection_posts_need_same_origin_and_csrf(site, origin, csrf):
    for path, fields in (("/config/home", home_fields(mqtt_url="mqtt://127.0.0.1:1")),
                         ("/detection", {"on": "0"})):
        data = {**fields, **({"csrf_token": site.csrf()} if csrf else {})}
        response = site.client.post(path, data=data, headers={"Origin": origin} if origin
                                    else {}, follow_redirects=False)
        assert response.status_code == 403
    assert not site.config_path.exists() and site.home.mqtt is None
    assert site.home.detection.on


class _Receiver:
    """A webhook receiver answering ``status`` to every POST."""

    def __init__(self, status: int) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_from_the_page_with_their_state_and_a_hidden_secret(site):
    good, refusing = _Receiver(204), _Receiver(400)
    try:
        urls = f"{good.url}/hook?token=q-SECRET-3\n{refusing.url}/bad"
        response = site.post("/config/home", home_fields(webhook_urls=urls,
                                                         webhook_secret=HOOK_SECRET))
        assert response.status_code == 303
        record = sound("start", 1)
        site.db.append(record)
        site.home.handle_sound(record)
        status = site.wait_status("webhooks", lambda s: s.get("sent") == 1
                                  and s.get("rejected") == 1, "one delivered, one rejected")
        assert status["secret_set"] and len(good.received) == 1
        page = site.client.get("/").text
        assert HOOK_SECRET not in page and "q-SECRET-3" not in page
        assert HOOK_SECRET not in json.dumps(status) and "q-SECRET-3" not in json.dumps(status)
        assert 'id="webhook-secret-state">set<' in page
        assert f"<td>{refusing.url}/bad</td><td>idle</td><td>0</td><td>0</td><td>1</td>" \
               f"<td>HTTP 400 (not retried)</td>" in page
        # The URLs come back redacted; sent back as they are, they mean the stored ones.
        shown = re.search(r'<textarea[^>]*>([^<]*)</textarea>', page).group(1)
        assert shown == f"{good.url}/hook?***\n{refusing.url}/bad"
        assert site.post("/config/home", home_fields(webhook_urls=shown)).status_code == 303
        saved = load_config(site.config_path)
        assert saved.webhook_urls == (f"{good.url}/hook?token=q-SECRET-3", f"{refusing.url}/bad")
        assert saved.webhook_secret == HOOK_SECRET
        response = site.post("/config/home", home_fields(webhook_urls="https://x/?***"))
        assert shown_errors(response.text).keys() == {"webhook_urls"}
    finally:
        good.close()
        refusing.close()


# ---- the daemon's start-up: file < environment < flags ---------------------------------
def _configured(tmp_path: Path, db: Store, *flags: str):
    import daemon
    from web.launch import configure

    args = daemon.build_parser().parse_args(["--config", str(tmp_path / "config.json"),
                                             *flags])
    return configure(args, db)


def test_environment_secrets_are_used_but_never_saved(tmp_path, mqtt_broker, monkeypatch):
    save_config(tmp_path / "config.json", DaemonConfig(
        mqtt_url=mqtt_broker.url, mqtt_device_id="envtest", mqtt_prefix="saved",
        mqtt_password="file-pw", refresh_token="file-token"))
    monkeypatch.setenv("AUDIO_ANALYSIS_MQTT_PASSWORD", "env-pw-Lk2")
    monkeypatch.setenv("AUDIO_ANALYSIS_WEBHOOK_SECRET", "env-hook-Mm3")
    monkeypatch.setenv("AUDIO_ANALYSIS_DH_REFRESH_TOKEN", "env-token-Nn4")
    db = Store(tmp_path / "events.db", prune_in_background=False)
    configured = _configured(tmp_path, db, "--mqtt_prefix", "flagged")
    s = None
    try:
        assert configured.config.mqtt_password == "env-pw-Lk2"
        assert configured.config.mqtt_prefix == "flagged"  # the flag, for this run
        assert configured.stored.mqtt_prefix == "saved"
        assert configured.home.mqtt.settings.password == "env-pw-Lk2"
        s = Site.__new__(Site)
        s.db, s.home, s.config_path = db, configured.home, configured.path
        s.app = WebApp(db, status_sources=configured.home.status_sources(),
                       allowed_hosts=allowed_hosts_for("127.0.0.1", [HOST]),
                       **configured.web_options())
        s.client = TestClient(build_asgi(s.app))
        assert s.post("/config/home", home_fields(
            mqtt_url=mqtt_broker.url, mqtt_device_id="envtest", mqtt_prefix="flagged",
            webhook_urls="http://127.0.0.1:9/hook")).status_code == 303
        assert s.post("/config", {"server_url": "", "device_id": ""}).status_code == 303
        text = configured.path.read_text()
        for secret in ("env-pw-Lk2", "env-hook-Mm3", "env-token-Nn4"):
            assert secret not in text
        saved = load_config(configured.path)
        assert saved.mqtt_password == "file-pw" and saved.refresh_token == "file-token"
        assert saved.mqtt_prefix == "flagged" and saved.webhook_secret == ""
        assert s.app.config.webhook_secret == "env-hook-Mm3"  # still used for this run
        assert configured.home.webhooks.settings.secret == "env-hook-Mm3"
        # Typed on the page: stored.
        s.post("/config/home", home_fields(mqtt_url=mqtt_broker.url, mqtt_device_id="envtest",
                                           mqtt_password="typed-pw-Oo5"))
        assert load_config(configured.path).mqtt_password == "typed-pw-Oo5"
    finally:
        if s is not None:
            s.client.close()
            s.app.close()
        configured.home.close()
        configured.devicehive.close(timeout=0)
        db.close()


def test_a_saved_setting_that_cannot_work_leaves_its_sink_off_with_the_reason(tmp_path):
    from web.launch import WebStartError

    save_config(tmp_path / "config.json", DaemonConfig(
        mqtt_url="mqtts://127.0.0.1:1", mqtt_ca=str(tmp_path / "gone.pem"),
        mqtt_device_id="x"))
    db = Store(tmp_path / "events.db", prune_in_background=False)
    try:
        configured = _configured(tmp_path, db)
        assert configured.home.mqtt is None
        assert "gone.pem" in configured.home_errors["mqtt"]
        app = WebApp(db, status_sources=configured.home.status_sources(),
                     **configured.web_options())
        assert "gone.pem" in app.status()["mqtt"]["last_error"]
        app.close()
        configured.home.close()
        configured.devicehive.close(timeout=0)
        with pytest.raises(WebStartError, match="device id"):  # the flags' fault: exit 2
            _configured(tmp_path, db, "--mqtt_device_id", "Not A Slug")
    finally:
        db.close()

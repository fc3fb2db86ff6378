"""The pages in a real headless Chromium (Debian's, driven by Playwright): live updates
without reload, the configuration form saving and reconnecting, a screenshot artifact."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from audio.sinks.devicehive import DeviceHiveSink
from tests.conftest import require_tool
from web.config import DaemonConfig, load_config
from web.server import EventStore, WebApp, WebServer, allowed_hosts_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    require_tool(str(CHROMIUM))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def site(tmp_path, dh_server):
    store = EventStore()
    sink = DeviceHiveSink(None)
    config_path = tmp_path / "config.json"

    def on_config(cfg: DaemonConfig) -> None:
        sink.reconfigure(cfg.devicehive_settings())

    app = WebApp(store, config=DaemonConfig(), config_path=config_path, on_config=on_config,
                 status_sources={"devicehive": sink.status},
                 allowed_hosts=allowed_hosts_for("127.0.0.1"))
    server = WebServer(("127.0.0.1", 0), app)
    server.start()
    yield {"store": store, "sink": sink, "url": f"http://127.0.0.1:{server.server_address[1]}",
           "config_path": config_path}
    server.stop()
    sink.close(timeout=0)


def _save_screenshot(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


def test_events_page_updates_without_reload(browser, site, make_event, tmp_path):
    page = browser.new_page()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(site["url"] + "/events/")
    page.wait_for_selector("#events-body tr.empty")
    stop = threading.Event()

    def feed() -> None:
        for i in range(1, 13):
            if stop.is_set():
                return
            site["store"].handle(make_event(i, labels=("Speech", "Music", "<b>Dog</b>")))
            time.sleep(0.25)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('#events-body tr[data-id]').length >= 3",
            timeout=10000)
        first = page.eval_on_selector("#events-body tr[data-id]", "e => e.dataset.id")
        page.wait_for_function(
            "id => Number(document.querySelector('#events-body tr[data-id]').dataset.id) > id",
            arg=int(first), timeout=10000)
    except Exception:
        stop.set()
        raise
    finally:
        feeder.join()  # all 12 events go in (stop is only for an early failure)
        stop.set()
    page.wait_for_function(
        "() => document.querySelector('#events-body tr[data-id]').dataset.id === '12'",
        timeout=5000)
    ids = page.eval_on_selector_all("#events-body tr[data-id]", "rows => rows.map(r => +r.dataset.id)")
    assert ids == list(range(12, 2, -1))  # last 10, newest first
    first_row = page.inner_text("#events-body tr[data-id]")
    assert "Speech: 0.90" in first_row and "<b>Dog</b>" in first_row  # shown as text
    assert page.query_selector("#events-body b") is None  # never parsed as HTML
    bars = page.eval_on_selector_all("#chart .row .label", "e => e.map(x => x.textContent)")
    assert bars[0] == "Speech" and len(bars) == 3
    assert len(navigations) == 1  # no reload happened
    assert not errors, errors
    assert _save_screenshot(page, tmp_path, "events-page.png").stat().st_size > 1000
    page.close()


def test_config_form_saves_and_reconnects(browser, site, dh_server, make_event, tmp_path):
    _, refresh = dh_server.issue_tokens()
    page = browser.new_page()
    page.goto(site["url"] + "/")
    page.wait_for_function("() => document.querySelector('#dh-state').textContent === 'disabled'")
    page.fill("#server_url", dh_server.ws_url)
    page.fill("#device_id", "browser-dev-1")
    page.fill("#refresh_token", refresh)
    page.click("#save")
    page.wait_for_url("**/?saved=1")
    page.wait_for_function(
        "() => document.querySelector('#dh-state').textContent === 'connected'", timeout=10000)
    assert "Saved; reconnecting." in page.inner_text("#notice")
    saved = load_config(site["config_path"])
    assert saved.refresh_token == refresh and saved.device_id == "browser-dev-1"
    assert (site["config_path"].stat().st_mode & 0o777) == 0o600
    assert refresh not in page.content()  # the token is never sent back to the page
    assert page.input_value("#refresh_token") == ""
    site["sink"].handle(make_event(1))
    assert dh_server.wait_for(lambda s: len(s.device_notifications("browser-dev-1")) == 1, 10)
    page.wait_for_function("() => document.querySelector('#dh-counters').textContent"
                           ".includes('sent 1')", timeout=5000)
    _save_screenshot(page, tmp_path, "config-page.png")
    # A wrong value is refused with the message on the page, escaped.
    page.fill("#server_url", "ftp://<script>x</script>")
    page.click("#save")
    page.wait_for_selector("#form-error:not(.hidden)")
    assert "ws://" in page.inner_text("#form-error")
    assert page.input_value("#server_url") == "ftp://<script>x</script>"
    page.close()


def test_events_page_shows_sound_events_live(browser, site, make_sound):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site["url"] + "/events/")
    page.wait_for_selector("#sounds-body tr.empty")
    site["store"].handle_sound(make_sound("start", 1, sound="<i>dog</i>"))
    page.wait_for_selector("#sounds-body tr[data-id='1']", timeout=10000)
    assert "12.40–…" in page.inner_text("#sounds-body tr[data-id='1']")
    site["store"].handle_sound(make_sound("end", 1, sound="<i>dog</i>"))
    page.wait_for_function(
        "() => document.querySelector(\"#sounds-body tr[data-id='1']\").textContent"
        ".includes('12.40–15.10 s')", timeout=10000)
    row = page.inner_text("#sounds-body tr[data-id='1']")
    assert "<i>dog</i>" in row and "0.83" in row and "-18 dBFS" in row
    assert page.query_selector("#sounds-body i") is None  # text, never HTML
    assert not errors, errors
    page.close()


def _lan_address() -> str:
    """This machine's address on its network (no packet is sent: a UDP socket's
    connect only picks the route)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            address = socket.gethostbyname(socket.gethostname())
    if address.startswith("127.") or address == "0.0.0.0":
        pytest.fail("this machine has no non-loopback IPv4 address to test a LAN bind on")
    return address


class _LanSite:
    """The web interface bound to 0.0.0.0 with a password, over a durable store."""

    def __init__(self, db: Path, address: str, password: str) -> None:
        from audio.store import Store
        from web.auth import Auth, Password

        self.store = Store(db, prune_in_background=False)
        self.app = WebApp(self.store, config=DaemonConfig(), config_path=db.parent / "c.json",
                          allowed_hosts=allowed_hosts_for("0.0.0.0", [address]),
                          auth=Auth(Password(plain=password)))
        self.server = WebServer(("0.0.0.0", 0), self.app)
        self.server.start()
        self.url = f"http://{address}:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.stop()
        self.store.close()


def _sign_in(page, url: str, password: str) -> None:
    page.goto(url + "/events/")
    page.wait_for_url("**/login?next=/events/")
    page.fill("#password", "not the password")
    page.click("#signin")
    page.wait_for_selector("#login-error:not(.hidden)")
    assert "Wrong password" in page.inner_text("#login-error")
    page.fill("#password", password)
    page.click("#signin")
    page.wait_for_url(url + "/events/")


def test_lan_sign_in_and_history_across_a_restart(browser, tmp_path, make_event):
    address = _lan_address()
    password = "a LAN passphrase"
    db = tmp_path / "state" / "events.db"
    first = _LanSite(db, address, password)
    try:
        for i in range(1, 16):
            first.store.append(_with_source(make_event(i, timestamp=1.7e9 + i), "before.wav"))
        page = browser.new_page()
        _sign_in(page, first.url, password)
        page.wait_for_function(
            "() => document.querySelectorAll('#events-body tr[data-id]').length === 10")
        assert "before.wav" in page.inner_text("#events-body")
        page.close()
    finally:
        first.close()
    second = _LanSite(db, address, password)  # the daemon restarted: new port, new sessions
    try:
        for i in range(1, 4):
            second.store.append(_with_source(make_event(i), "after.wav"))
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _sign_in(page, second.url, password)
        page.wait_for_function(
            "() => document.querySelectorAll('#events-body tr[data-id]').length === 10")
        rows = page.eval_on_selector_all(
            "#events-body tr[data-id]", "rows => rows.map(r => [+r.dataset.id, r.innerText])")
        assert [r[0] for r in rows] == list(range(18, 8, -1))  # ids go on across the restart
        assert all("after.wav" in text for _, text in rows[:3])
        assert all("before.wav" in text for _, text in rows[3:])
        page.click("#older")
        page.wait_for_function(
            "() => document.querySelectorAll('#history-body tr[data-id]').length === 8")
        page.wait_for_selector("#older:disabled")
        older = page.eval_on_selector_all("#history-body tr[data-id]",
                                          "rows => rows.map(r => +r.dataset.id)")
        assert older == list(range(8, 0, -1))
        assert "2023" in page.inner_text("#history-body")  # the date of the first run's rows
        assert "averaged over the last 10 windows" in page.inner_text("#chart-help")
        _save_screenshot(page, tmp_path, "events-history.png")
        page.click("#signout")
        page.wait_for_url("**/login")
        assert not errors, errors
        page.close()
    finally:
        second.close()


def _with_source(event, source: str):
    from dataclasses import replace

    return replace(event, source=source)


def test_lan_sign_in_and_history_across_a_real_daemon_restart(browser, tmp_path):
    """daemon.py itself, twice over one ``--db``, bound to every address with a password
    from the environment: signed in from this machine's LAN address, the events page of
    the restarted daemon shows the first run's windows beneath its own, ids going on."""
    import os

    from tests.conftest import require_shared
    from tests.test_daemon import Daemon

    address = _lan_address()
    password = "another LAN passphrase"
    models = ["--backend", "yamnet", "--yamnet_model",
              str(require_shared("models", "yamnet", "yamnet.tflite"))]
    flags = ["--host", "0.0.0.0", "--allowed_host", address,
             "--db", str(tmp_path / "state" / "events.db")]
    env = {**os.environ, "AUDIO_ANALYSIS_WEB_PASSWORD": password}
    rows_js = "rows => rows.map(r => +r.dataset.id)"
    ids_of_run: list[list[int]] = []
    newest = 0  # the second run waits for a window of its own above the first run's
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        daemon = Daemon(tmp_path / run, models, *flags, base_env=env)
        try:
            page = browser.new_page()
            _sign_in(page, f"http://{address}:{daemon.port}", password)
            page.wait_for_function(
                """newest => {
                    const rows = document.querySelectorAll('#events-body tr[data-id]');
                    return rows.length >= 4 && +rows[0].dataset.id > newest + 1;
                }""", arg=newest, timeout=60_000)
            ids_of_run.append(page.eval_on_selector_all("#events-body tr[data-id]", rows_js))
            newest = max(ids_of_run[-1])
            page.close()
        finally:
            assert daemon.stop() == 0
    first, second = ids_of_run
    assert second == sorted(second, reverse=True) and len(set(second)) == len(second)
    assert min(second) <= max(first) < max(second)  # the first run's windows, then its own
    assert set(range(min(second), max(first) + 1)) <= set(second) | set(first)


def test_mqtt_settings_on_the_page_connect_and_the_switch_pauses(browser, mqtt_broker,
                                                                 tmp_path):
    """The page sets the broker URL; its live status turns ``connected``; the detection
    switch pauses and resumes; no console error (the CSP allows no inline script)."""
    from audio.sinks.factory import HomeSinks
    from audio.store import Store
    from tests.fixtures_mqtt import Subscriber

    db = Store(tmp_path / "events.db", prune_in_background=False)
    home = HomeSinks(db)
    home.set_sounds(["dog"])
    app = WebApp(db, config=DaemonConfig(), config_path=tmp_path / "config.json", home=home,
                 status_sources=home.status_sources(),
                 allowed_hosts=allowed_hosts_for("127.0.0.1"))
    server = WebServer(("127.0.0.1", 0), app)
    server.start()
    sub = Subscriber(mqtt_broker, ("audio-analysis/browser-1/#",))
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function(
            "() => document.querySelector('#mqtt-state').textContent === 'disabled'")
        page.fill("#mqtt_url", mqtt_broker.url.replace("//", "//pi:pw-In-Url-7@"))
        page.fill("#mqtt_device_id", "browser-1")
        page.click("#home-save")
        page.wait_for_url("**/?home_saved=1#home")
        page.wait_for_function(
            "() => document.querySelector('#mqtt-state').textContent === 'connected'",
            timeout=15000)
        sub.wait_for(lambda m: any(x.topic.endswith("/availability") and x.payload == "online"
                                   for x in m), 15, "online")
        assert "pw-In-Url-7" not in page.content()
        assert page.inner_text("#mqtt-password-state") == "set"
        assert "pending 0" in page.inner_text("#mqtt-counters")
        page.click("#detection-toggle")
        page.wait_for_url("**/#detection")
        page.wait_for_function(
            "() => document.querySelector('#detection-state').textContent === 'paused'")
        assert home.detection.on is False
        sub.wait_for(lambda m: [x.payload for x in m if x.topic.endswith("detect/state")][-1:]
                     == ["OFF"], 15, "detect/state OFF")
        sub.client.publish("audio-analysis/browser-1/detect/set", "ON", qos=1)
        page.wait_for_function(  # the page follows the switch Home Assistant turned
            "() => document.querySelector('#detection-toggle').textContent"
            " === 'Pause detection'", timeout=10000)
        _save_screenshot(page, tmp_path, "config-page-mqtt.png")
        assert not errors, errors
        page.fill("#mqtt_prefix", "bad/#")
        page.click("#home-save")  # refused: the page again, 400, one message on the field
        page.wait_for_selector("#error-mqtt_prefix:not(.hidden)")
        assert "wildcards" in page.inner_text("#error-mqtt_prefix")
        assert len(page.query_selector_all(".field-error:not(.hidden)")) == 1
        assert page.input_value("#mqtt_prefix") == "bad/#"
        assert all("status of 400" in e for e in errors), errors
    finally:
        page.close()
        sub.close()
        server.stop()
        home.close()
        app.close()
        db.close()


def test_events_page_shows_file_names_with_the_path_on_hover(browser, site, make_event,
                                                             make_sound, tmp_path):
    """Full absolute paths squeezed the other columns into three-line wraps: the cells
    show the file name, the whole path is their title (the tooltip)."""
    path = "/home/someone/recordings/2024/garden-microphone/long-session/dog-at-the-gate.wav"
    site["store"].handle(_with_source(make_event(1), path))
    site["store"].handle_sound(_with_source(make_sound("end", 1), path))
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(site["url"] + "/events/")
    page.wait_for_selector("#events-body tr[data-id='1']")
    page.wait_for_selector("#sounds-body tr[data-id='1']")
    for table in ("#events-body", "#sounds-body"):
        cell = page.query_selector(f"{table} tr[data-id='1'] td:nth-child(2)")
        assert cell.inner_text() == "dog-at-the-gate.wav"
        assert cell.get_attribute("title") == path
        row_height = page.eval_on_selector(f"{table} tr[data-id='1']",
                                           "r => r.getBoundingClientRect().height")
        line = page.eval_on_selector(f"{table} tr[data-id='1'] td",
                                     "td => parseFloat(getComputedStyle(td).lineHeight) || 20")
        assert row_height < 2.6 * line, (table, row_height, line)  # no three-line wrap
    _save_screenshot(page, tmp_path, "events-file-names.png")
    page.close()


def test_home_page_shows_the_listened_sounds_first_and_devicehive_last(browser, tmp_path):
    """A real daemon with ``--listen dog,siren``: the page opens on the sounds followed,
    each with its effective thresholds, then MQTT and Home Assistant, webhooks, and
    DeviceHive last."""
    from tests.conftest import require_shared
    from tests.test_daemon import Daemon

    models = ["--backend", "yamnet", "--yamnet_model",
              str(require_shared("models", "yamnet", "yamnet.tflite"))]
    daemon = Daemon(tmp_path, models, "--listen", "dog,siren", "--event_threshold", "0.4")
    try:
        deadline = time.monotonic() + 60
        while daemon.get_json("/api/status")["listening"]["sounds"] is None:
            assert time.monotonic() < deadline, "the sounds never showed in /api/status"
            time.sleep(0.2)
        sounds = daemon.get_json("/api/status")["listening"]["sounds"]
        assert [s["name"] for s in sounds] == ["dog", "siren"]
        assert all(s["threshold"] == 0.4 and 0 < s["off"] < 0.4 for s in sounds), sounds
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://127.0.0.1:{daemon.port}/")
        headings = page.eval_on_selector_all("main h2", "hs => hs.map(h => h.textContent)")
        assert headings[0] == "Sounds listened to", headings
        order = [next(i for i, h in enumerate(headings) if h.startswith(name))
                 for name in ("Sounds", "MQTT", "Webhooks", "DeviceHive")]
        assert order == sorted(order) and headings[-1] == "DeviceHive", headings
        rows = page.eval_on_selector_all(
            "#listening-body tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
        assert rows[0][0] == "dog" and "Dog" in rows[0][1] and rows[0][2] == "0.40"
        assert rows[1][0] == "siren" and "Siren" in rows[1][1] and rows[1][2] == "0.40"
        page.wait_for_timeout(1500)  # the live status redraws the table the same way
        again = page.eval_on_selector_all(
            "#listening-body tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
        assert again == rows and page.is_hidden("#listening-message")
        _save_screenshot(page, tmp_path, "config-page-listening.png")
        assert not errors, errors
        page.close()
    finally:
        assert daemon.stop() == 0


def test_home_page_says_when_no_sound_is_followed(browser, site):
    page = browser.new_page()
    page.goto(site["url"] + "/")
    assert page.eval_on_selector("main h2", "h => h.textContent") == "Sounds listened to"
    assert "--listen" in page.inner_text("#listening-message")
    assert page.is_hidden("#listening-table")
    page.close()

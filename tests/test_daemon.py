"""daemon.py as a subprocess, end to end: real models (fixture VGGish weights), a real wav
looped at real-time pace, the real web server and the DeviceHive test server."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.dh_server import DeviceHiveTestServer

ROOT = Path(__file__).resolve().parent.parent
DAEMON = ROOT / "daemon.py"
WAV = ROOT / "examples" / "speech.wav"
DEVICE = "audio-e2e-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, tmp_path: Path, models: list[str], *args: str,
                 source: tuple[str, ...] = ("--source", str(WAV)),
                 base_env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.config = tmp_path / "config.json"
        env = {**(os.environ if base_env is None else base_env),
               "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        env.pop("AUDIO_ANALYSIS_CONFIG", None)
        self.log = tmp_path / "daemon.log"
        self._log_fh = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(DAEMON), *source, "--min_time", "1",
             "--port", str(self.port), "--config", str(self.config), "--top_k", "3",
             "--threshold", "0", *models, *args],
            cwd=ROOT, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log.read_text()[-2000:]}")
            try:
                if self.get_json("/healthz")["status"] == "ok":
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("daemon did not start")

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> dict:
        status, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def wait(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.get_json("/api/status")
            if predicate(status):
                return status
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {status}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_fh.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def model_args(vggish_checkpoint, pca_params_file, classifier_bundle) -> list[str]:
    return ["--vggish_checkpoint", str(vggish_checkpoint), "--pca_params",
            str(pca_params_file), "--model", str(classifier_bundle)]


def _assert_notifications_match_events(server: DeviceHiveTestServer, daemon: Daemon) -> int:
    """Every event the daemon produced arrived exactly once, in order, with its content."""
    events = list(reversed(daemon.get_json("/api/events?limit=1000")["events"]))
    notes = server.device_notifications(DEVICE)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    # The daemon may have produced a few more events than were delivered so far.
    assert len(notes) <= len(events) and len(notes) >= len(events) - 3
    for event, note in zip(events, notes, strict=False):
        assert note["notification"] == "audio_analysis"
        params = note["parameters"]
        assert params["predictions"] == event["predictions"]
        assert len(params["predictions"]) == 3
        assert all(set(p) == {"label", "score"} and 0 <= p["score"] <= 1
                   for p in params["predictions"])
        assert params["window"] == {"start": round(event["start"], 3),
                                    "end": round(event["end"], 3)}
        assert abs(int(note["timestamp"][-3:]) - int(event["timestamp"] * 1000) % 1000) <= 1
        assert params["timestamp"] == note["timestamp"]
    return len(notes)


@pytest.mark.slow
@pytest.mark.e2e
def test_websocket_every_prediction_arrives_across_an_outage(tmp_path, model_args, dh_server):
    _, refresh = dh_server.issue_tokens()
    daemon = Daemon(tmp_path, model_args, "--dh_url", dh_server.ws_url,
                    "--dh_refresh_token", refresh, "--dh_device_id", DEVICE)
    try:
        assert dh_server.wait_for(lambda s: len(s.device_notifications(DEVICE)) >= 3, 60)
        assert dh_server.devices[DEVICE]["name"] == DEVICE  # put_device registered it
        assert ("websocket", "device/save") in dh_server.requests
        # Outage for several 1 s windows; the loop keeps classifying meanwhile.
        before = daemon.get_json("/api/status")["events"]["total"]
        dh_server.stop()
        daemon.wait(lambda s: s["events"]["total"] >= before + 4
                    and s["devicehive"]["state"] != "connected", 30, "events during the outage")
        status = daemon.get_json("/api/status")
        assert status["devicehive"]["queued"] >= 3 and status["devicehive"]["last_error"]
        dh_server.start()
        daemon.wait(lambda s: s["devicehive"]["state"] == "connected"
                    and s["devicehive"]["queued"] == 0, 30, "delivery after the restart")
        sent = _assert_notifications_match_events(dh_server, daemon)
        assert sent >= before + 4
        assert daemon.get_json("/api/status")["devicehive"]["dropped"] == 0
        assert refresh not in daemon.log.read_text()
    finally:
        code = daemon.stop()
    assert code == 0
    # Shutdown flushed: what the loop produced was delivered, once each, in order.
    notes = dh_server.device_notifications(DEVICE)
    starts = [n["parameters"]["window"]["start"] for n in notes]
    stamps = [n["timestamp"] for n in notes]
    assert stamps == sorted(set(stamps))
    # consecutive windows of the looped file: the next second, or the file starting over
    assert all(b in (a + 1.0, 0.0) for a, b in itertools.pairwise(starts))


@pytest.mark.slow
@pytest.mark.e2e
def test_rest_wrong_token_shows_error_then_page_fix_reconnects(tmp_path, model_args,
                                                                dh_server):
    bad = "not-a-valid-token"
    daemon = Daemon(tmp_path, model_args, "--dh_url", dh_server.rest_url,
                    "--dh_refresh_token", bad, "--dh_device_id", DEVICE)
    try:
        status = daemon.wait(lambda s: s["devicehive"]["last_error"], 30, "the auth error")
        assert "401" in status["devicehive"]["last_error"]
        assert status["devicehive"]["state"] in ("disconnected", "connecting")
        code, page = daemon.request("GET", "/")
        assert code == 200 and b"401" in page and bad.encode() not in page
        # Fix it in the page (CSRF token + same origin), no restart.
        csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        _, refresh = dh_server.issue_tokens()
        code, _ = daemon.request("POST", "/config", urlencode({
            "csrf_token": csrf, "server_url": dh_server.rest_url, "device_id": DEVICE,
            "refresh_token": refresh}), {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"http://127.0.0.1:{daemon.port}"})
        assert code == 303
        assert oct(daemon.config.stat().st_mode & 0o777) == "0o600"
        daemon.wait(lambda s: s["devicehive"]["state"] == "connected"
                    and s["devicehive"]["sent"] >= 3, 40, "REST delivery after the fix")
        assert ("rest", "notification/insert") in dh_server.requests
        daemon.wait(lambda s: s["devicehive"]["queued"] == 0, 20, "the queue to drain")
        _assert_notifications_match_events(dh_server, daemon)
        log = daemon.log.read_text()
        assert refresh not in log and bad not in log
    finally:
        assert daemon.stop() == 0


@pytest.mark.slow
@pytest.mark.e2e
def test_microphone_source_feeds_the_page(tmp_path, model_args, virtual_microphone):
    """The default mode: PyAudio on the (virtual PulseAudio) microphone, 1-1.5 s windows."""
    import numpy as np

    daemon = Daemon(tmp_path, model_args, "--max_time", "1.5", source=(),
                    base_env=virtual_microphone.env())
    try:
        daemon.wait(lambda s: s["loop"]["state"] == "running", 90, "the models to load")
        t = np.arange(16000 * 5) / 16000
        player = virtual_microphone.play_in_background(
            (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
        player.join(30)
        status = daemon.wait(lambda s: s["events"]["total"] >= 3, 30, "microphone events")
        assert status["capture"]["kind"] == "microphone"
        assert status["loop"]["source"] == "microphone" and status["loop"]["errors"] == 0
        events = daemon.get_json("/api/events")["events"]
        spans = [round(e["end"] - e["start"], 3) for e in events]
        assert all(1.0 <= span <= 1.6 for span in spans), spans
        assert all(len(e["predictions"]) == 3 for e in events)
        assert status["devicehive"]["state"] == "disabled"
    finally:
        assert daemon.stop() == 0


def test_help_is_instant_and_imports_no_tensorflow():
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(DAEMON), "--help"], capture_output=True,
                            text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 0 and "--dh_refresh_token" in result.stdout
    assert "--vggish_checkpoint" in result.stdout and "--source" in result.stdout
    assert time.perf_counter() - started < 5
    probe = subprocess.run([sys.executable, "-c", "import sys, daemon; "
                            "print('tensorflow' in sys.modules)"],
                           capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert probe.stdout.strip() == "False"


@pytest.mark.parametrize("args, message", [
    (["--source", "/nonexistent.wav"], "no such file"),
    (["--port", "70000"], "--port"),
    (["--once"], "--once needs --source"),
    (["--source", str(WAV), "--dh_url", "ftp://x"], "ws://"),
    (["--source", str(WAV), "--dh_url", "ws://h/api", "--dh_device_id", "d"], "token"),
    (["--source", str(WAV), "--min_time", "0.1"], "--min_time"),
])
def test_bad_arguments_fail_in_one_line(tmp_path, args, message):
    result = subprocess.run([sys.executable, str(DAEMON), "--config",
                             str(tmp_path / "c.json"), *args],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unknown_sound_fails_in_one_line(tmp_path):
    """--listen names are checked against the backend's classes once it is loaded."""
    from tests.conftest import require_shared

    model = require_shared("models", "yamnet", "yamnet.tflite")
    result = subprocess.run([sys.executable, str(DAEMON), "--config", str(tmp_path / "c.json"),
                             "--port", "0", "--source", str(WAV), "--backend", "yamnet",
                             "--yamnet_model", str(model), "--listen", "dgo"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "'dgo'" in errors[0] and "dog" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_config_file_fails_in_one_line(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{nope")
    result = subprocess.run([sys.executable, str(DAEMON), "--config", str(bad), "--source",
                             str(WAV)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_fails_in_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run([sys.executable, str(DAEMON), "--config",
                                 str(tmp_path / "c.json"), "--source", str(WAV), "--port",
                                 str(port)], capture_output=True, text=True, cwd=ROOT,
                                timeout=60)
    assert result.returncode == 2 and "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_loopback_bind_warns(tmp_path):
    # The models are missing on purpose: the daemon warns on binding, then exits cleanly.
    result = subprocess.run([sys.executable, str(DAEMON), "--config", str(tmp_path / "c.json"),
                             "--host", "0.0.0.0", "--port", "0", "--source", str(WAV),
                             "--model", str(tmp_path / "no-such-bundle")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "AUDIO_ANALYSIS_WEB_PASSWORD": "a-password"})
    assert "reachable from the network" in result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "daemon.py: error:" in result.stderr  # which model files are missing, one line


@pytest.mark.slow
@pytest.mark.e2e
def test_sound_events_reach_the_web_api_and_devicehive(tmp_path, dh_server):
    """A dog bark in a looped file: with --listen dog its event appears in /api/sounds,
    and its start and end reach DeviceHive as soundEvent notifications."""
    import numpy as np

    from audio.io import mono_blocks, open_audio, write_wav
    from tests.conftest import require_shared

    model = require_shared("models", "yamnet", "yamnet.tflite")
    with open_audio(require_shared("audio", "urbansound_samples", "dogbark.wav")) as reader:
        bark = np.concatenate(list(mono_blocks(reader, 16000)))
    wav = write_wav(tmp_path / "bark.wav", np.concatenate(
        [np.zeros(32000, np.float32), bark, np.zeros(48000, np.float32)]), 16000)
    _, refresh = dh_server.issue_tokens()
    daemon = Daemon(tmp_path, ["--backend", "yamnet", "--yamnet_model", str(model)],
                    "--listen", "dog", "--dh_url", dh_server.ws_url, "--dh_refresh_token",
                    refresh, "--dh_device_id", DEVICE, source=("--source", str(wav)))
    try:
        deadline = time.monotonic() + 60
        sounds: list = []
        while time.monotonic() < deadline and not any(not s["active"] for s in sounds):
            sounds = daemon.get_json("/api/sounds")["sounds"]
            time.sleep(0.2)
        ended = [s for s in sounds if not s["active"]]
        assert ended, sounds
        dog = ended[-1]
        assert dog["sound"] == "dog" and dog["kind"] == "end" and dog["source"] == str(wav)
        assert abs(dog["start"] - 2.0) <= 0.48 and abs(dog["end"] - 6.0) <= 0.96
        status = daemon.get_json("/api/status")
        assert status["sounds"]["total"] >= 1 and status["loop"]["sound_events_ended"] >= 1
        assert status["loop"]["events"] is True
        assert dh_server.wait_for(lambda s: sum(
            n["notification"] == "soundEvent" for n in s.device_notifications(DEVICE)) >= 2, 30)
        notes = [n["parameters"] for n in dh_server.device_notifications(DEVICE)
                 if n["notification"] == "soundEvent"]
        assert [(n["kind"], n["sound"], n["id"]) for n in notes[:2]] == \
            [("start", "dog", dog["id"]), ("end", "dog", dog["id"])]
        assert notes[1]["end"] == dog["end"]
    finally:
        code = daemon.stop()
    assert code == 0


def _run_daemon(tmp_path: Path, *args: str, stdin: str | None = None,
                env: dict[str, str] | None = None, cwd: Path = ROOT):
    return subprocess.run([sys.executable, str(DAEMON), "--config", str(tmp_path / "c.json"),
                           *args], input=stdin, capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, **(env or {})})


def test_lan_bind_without_a_password_refuses_in_one_line(tmp_path):
    result = _run_daemon(tmp_path, "--host", "0.0.0.0", "--port", "0", "--source", str(WAV),
                         env={"AUDIO_ANALYSIS_WEB_PASSWORD": ""})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--set_password" in lines[0] and "--no_auth" in lines[0]


def test_set_password_stores_a_salted_hash_that_a_lan_bind_accepts(tmp_path):
    assert _run_daemon(tmp_path, "--set_password", stdin="short\n").returncode == 2
    result = _run_daemon(tmp_path, "--set_password", stdin="a long passphrase\n")
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["web_password_hash"].startswith("scrypt$")
    assert "a long passphrase" not in (tmp_path / "c.json").read_text()
    assert oct((tmp_path / "c.json").stat().st_mode & 0o777) == "0o600"
    # The models are missing on purpose: past the password check, the bind, then exit 2.
    result = _run_daemon(tmp_path, "--host", "0.0.0.0", "--port", "0", "--source", str(WAV),
                         "--model", str(tmp_path / "no-such-bundle"),
                         env={"AUDIO_ANALYSIS_WEB_PASSWORD": ""})
    assert "asks for the password" in result.stderr and "--set_password" not in result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_no_auth_warns_and_loopback_needs_no_password(tmp_path):
    result = _run_daemon(tmp_path, "--host", "0.0.0.0", "--no_auth", "--port", "0",
                         "--source", str(WAV), "--model", str(tmp_path / "no-such-bundle"),
                         env={"AUDIO_ANALYSIS_WEB_PASSWORD": ""})
    assert "--no_auth" in result.stderr and "without a password" in result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_the_originals_dh_config_is_imported_on_first_start(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "dh_config.json").write_text(json.dumps({
        "url": "ws://127.0.0.1:1/api/websocket", "token": "LEGACY-REFRESH",
        "device_id": "pi-3"}))
    result = _run_daemon(tmp_path, "--port", "0", "--source", str(WAV), "--model",
                         str(tmp_path / "no-such-bundle"), cwd=work)
    assert "imported the original daemon's configuration" in result.stderr
    saved = json.loads((tmp_path / "c.json").read_text())
    assert (saved["server_url"], saved["refresh_token"], saved["device_id"]) == \
        ("ws://127.0.0.1:1/api/websocket", "LEGACY-REFRESH", "pi-3")
    result = _run_daemon(tmp_path, "--port", "0", "--source", str(WAV), "--model",
                         str(tmp_path / "no-such-bundle"), "--legacy_config",
                         str(tmp_path / "missing.json"))
    # A configuration exists now: nothing is imported, and the flag is said to be ignored.
    assert "imported the original" not in result.stderr and "not imported" in result.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_sigterm_exits_within_5_s_with_an_event_stream_open(tmp_path, model_args):
    daemon = Daemon(tmp_path, model_args)
    streams = []
    try:
        daemon.wait(lambda s: s["events"]["total"] >= 1, 60, "the first window")
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            streams.append(sock)
        idle = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        streams.append(idle)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(30)
        elapsed = time.monotonic() - started
        print(f"SIGTERM to exit with 3 event streams and a half-sent request: {elapsed:.2f} s")
        # The goal is 5 s (measured ~2 s on an idle machine); the bound is generous so
        # that a loaded CI machine does not fail it, the figure is printed for the note.
        assert daemon.proc.returncode == 0 and elapsed < 8, elapsed
    finally:
        for sock in streams:
            sock.close()
        daemon.stop()


# Issue 23: an unreadable --source is refused before anything starts; the per-window log
# line names the file it is about.


@pytest.mark.e2e
@pytest.mark.parametrize("once", [False, True])
def test_source_without_readable_audio_fails_before_the_server_starts(tmp_path, once):
    from tests.conftest import require_shared

    model = require_shared("models", "yamnet", "yamnet.tflite")
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "notes.txt").write_text("not audio\n")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    result = subprocess.run([sys.executable, str(DAEMON), "--config", str(tmp_path / "c.json"),
                             "--port", "0", "--source", str(folder), "--no_realtime",
                             "--backend", "yamnet", "--yamnet_model", str(model),
                             *(["--once"] if once else [])],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "web interface on" not in result.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"daemon.py: error: no readable audio in {folder} ("), lines
    assert "broken.wav" in lines[0] and "skipped 1 file: unsupported format (.txt)" in lines[0]


@pytest.mark.e2e
def test_each_prediction_line_names_its_file(tmp_path):
    """With --source DIR every file restarts at 0.00 s: the line must say which one."""
    import numpy as np

    from audio.io import write_wav
    from tests.conftest import require_shared

    model = require_shared("models", "yamnet", "yamnet.tflite")
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name in ("a.wav", "sub/b.wav"):
        write_wav(folder / name, rng.standard_normal(32000) * 0.1, 16000)
    result = subprocess.run([sys.executable, str(DAEMON), "--config", str(tmp_path / "c.json"),
                             "--port", "0", "--source", str(folder), "--once",
                             "--no_realtime", "--min_time", "1", "--threshold", "0",
                             "--backend", "yamnet", "--yamnet_model", str(model)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    found = re.findall(r" daemon: Predictions \[(\S+) (\d+\.\d\d)-(\d+\.\d\d) s\]: \w",
                       result.stderr)
    assert found == [("a.wav", "0.00", "1.00"), ("a.wav", "1.00", "2.00"),
                     ("b.wav", "0.00", "1.00"), ("b.wav", "1.00", "2.00")], result.stderr

"""Quiet terminals: native chatter silenced unless -v, one-line answers on machines without
sound, and Ctrl-C exiting with 130 and no traceback at any moment.

The "no sound" runs use an environment where PulseAudio cannot be reached (a socket that
does not exist, autospawn off, private runtime and home directories) on a machine
without ``/dev/snd``: PortAudio then finds no device, and ALSA and JACK print their ~100
lines while it looks, which is what the scripts must keep off the terminal.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from audio.cli import EXIT_INTERRUPTED, call_main
from audio.settings import QUIET_NATIVE_ENV, TF_LOG_LEVEL_ENV, apply_native_output_defaults
from tests.conftest import require_shared
from tests.fixtures_audio import NATIVE_CHATTER, script_env

ROOT = Path(__file__).resolve().parent.parent
WAV = ROOT / "examples" / "speech.wav"


def _run(args: list[str], env: dict[str, str], timeout: float = 120
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


# --------------------------------------------------------------------------------------
# The mechanism
# --------------------------------------------------------------------------------------
SILENCER_PROGRAM = textwrap.dedent("""
    import logging, os, sys, threading
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from audio.native import silenced_native_stderr

    os.write(2, b"native-before\\n")
    with silenced_native_stderr():
        os.write(2, b"native-inside\\n")
        logging.getLogger("x").warning("logged-inside")
        print("printed-inside", file=sys.stderr)
        thread = threading.Thread(target=logging.getLogger("y").warning,
                                  args=("thread-inside",))
        thread.start()
        thread.join()
        with silenced_native_stderr():
            os.write(2, b"native-nested\\n")
        os.write(2, b"native-after-nested\\n")
    try:
        with silenced_native_stderr():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    os.write(2, b"native-after\\n")
    logging.getLogger("x").warning("logged-after")
""")


@pytest.mark.parametrize("quiet", ["1", "0"])
def test_silencer_hides_native_writes_but_not_python_ones(quiet):
    env = script_env({QUIET_NATIVE_ENV: quiet})
    result = _run(["-c", SILENCER_PROGRAM], env)
    assert result.returncode == 0, result.stderr
    native_inside = ["native-inside", "native-nested", "native-after-nested"]
    python_lines = ["logged-inside", "printed-inside", "thread-inside"]
    expected = (["native-before", *python_lines, "native-after", "logged-after"]
                if quiet == "1" else
                ["native-before", "native-inside", *python_lines, *native_inside[1:],
                 "native-after", "logged-after"])
    assert result.stderr.splitlines() == expected


def test_native_output_defaults_follow_verbose_and_respect_the_user():
    env: dict[str, str] = {}
    apply_native_output_defaults(False, env)
    assert env == {QUIET_NATIVE_ENV: "1", TF_LOG_LEVEL_ENV: "2"}
    env = {QUIET_NATIVE_ENV: "0", TF_LOG_LEVEL_ENV: "0"}
    apply_native_output_defaults(False, env)  # the user's environment says otherwise
    assert env == {QUIET_NATIVE_ENV: "0", TF_LOG_LEVEL_ENV: "0"}
    env = {QUIET_NATIVE_ENV: "1", TF_LOG_LEVEL_ENV: "3"}
    apply_native_output_defaults(True, env)  # -v shows everything; TF's own level stays
    assert env == {QUIET_NATIVE_ENV: "0", TF_LOG_LEVEL_ENV: "3"}


def test_call_main_turns_keyboard_interrupt_into_130():
    def interrupted(argv):
        raise KeyboardInterrupt

    assert call_main(interrupted) == EXIT_INTERRUPTED == 130
    assert call_main(lambda argv: 3) == 3
    assert call_main(lambda argv: None) == 0
    with pytest.raises(SystemExit):  # argparse's --help and usage errors go through
        call_main(lambda argv: sys.exit(2))


RUN_SCRIPT_PROGRAM = textwrap.dedent("""
    import atexit, sys, time
    from audio.cli import run_script

    def main(argv):
        if sys.argv[1] == "converted":  # as a C extension's import may turn it into
            try:
                print("ready", flush=True)
                time.sleep(30)
            except KeyboardInterrupt:
                try:
                    raise RuntimeError("initialization failed")
                except RuntimeError:
                    return 2  # handled as a loading error
        atexit.register(time.sleep, 30)  # a slow way out: Ctrl-C comes during it
        print("ready", flush=True)
        return 0

    run_script(main)
""")


@contextmanager
def _reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The process, killed and reaped on the way out if a check failed before it ended."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _interrupt(proc: subprocess.Popen, timeout: float) -> str:
    """Ctrl-C, as a terminal sends it; what the process then wrote on stderr."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=timeout)[1]


@pytest.mark.parametrize("moment", ["converted", "shutdown"])
def test_run_script_exits_130_whatever_became_of_the_interrupt(moment):
    with _reaped(subprocess.Popen([sys.executable, "-c", RUN_SCRIPT_PROGRAM, moment],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=script_env(), cwd=ROOT)) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        err = _interrupt(proc, timeout=20)
    assert proc.returncode == 130, err
    assert err == ""


# --------------------------------------------------------------------------------------
# A machine without sound
# --------------------------------------------------------------------------------------
@pytest.fixture
def no_sound_env(tmp_path: Path) -> dict[str, str]:
    """The scripts' environment with no sound server and (on this machine) no sound card."""
    if Path("/dev/snd").exists():
        pytest.skip("this machine has sound devices (/dev/snd): cannot simulate none")
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    client = tmp_path / "client.conf"
    client.write_text("autospawn = no\n")
    env = script_env({"PULSE_SERVER": f"unix:{tmp_path / 'no-such-socket'}",
                      "PULSE_CLIENTCONFIG": str(client), "PULSE_RUNTIME_PATH": str(runtime),
                      "XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(home / ".config"),
                      "HOME": str(home), "JACK_NO_START_SERVER": "1"})
    for name in (QUIET_NATIVE_ENV, TF_LOG_LEVEL_ENV, "AUDIO_ANALYSIS_CONFIG"):
        env.pop(name, None)
    return env


def test_list_devices_without_sound_says_so_in_one_line(no_sound_env):
    result = _run(["capture.py", "--list_devices"], no_sound_env)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) <= 3 and "Traceback" not in result.stderr
    assert not re.search(NATIVE_CHATTER, result.stderr, re.M), result.stderr[:2000]
    (line,) = result.stdout.splitlines()
    assert line.startswith("no input devices found")
    for alternative in ("PulseAudio", "PipeWire", "daemon.py --source", "parse_file.py"):
        assert alternative in line


def test_list_devices_verbose_shows_the_native_chatter(no_sound_env):
    """The control: the same run with -v does print what PortAudio's probe writes."""
    result = _run(["capture.py", "--list_devices", "-v"], no_sound_env)
    assert result.returncode == 0
    assert len(re.findall(NATIVE_CHATTER, result.stderr, re.M)) > 10, result.stderr


def test_capture_without_sound_fails_in_one_line(no_sound_env):
    result = _run(["capture.py"], no_sound_env)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no input device") and "daemon.py --source" in line


def test_daemon_without_microphone_names_source_before_anything_starts(no_sound_env,
                                                                       tmp_path):
    # Model files that do not exist: the microphone is checked before the models load.
    started = time.monotonic()
    result = _run(["daemon.py", "--port", "0", "--config", str(tmp_path / "c.json"),
                   "--vggish_checkpoint", str(tmp_path / "missing.ckpt")], no_sound_env)
    assert time.monotonic() - started < 30
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) <= 3 and "Traceback" not in result.stderr, result.stderr[:2000]
    assert not any("web interface on" in line for line in lines)
    assert lines[-1].startswith("daemon.py: error: no usable microphone")
    assert "--source" in lines[-1] and "--list_devices" not in result.stderr


def test_daemon_unknown_device_is_a_usage_error(no_sound_env, tmp_path):
    result = _run(["daemon.py", "--port", "0", "--config", str(tmp_path / "c.json"),
                   "--device", "no-such-microphone"], no_sound_env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "daemon.py: error: no input device 'no-such-microphone' (there is no input device)"]


# --------------------------------------------------------------------------------------
# Start-up logs of the models
# --------------------------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.e2e
def test_yamnet_parse_file_prints_nothing_on_stderr_unless_verbose():
    model = require_shared("models", "yamnet", "yamnet.tflite")
    env = script_env()
    for name in (QUIET_NATIVE_ENV, TF_LOG_LEVEL_ENV):
        env.pop(name, None)
    args = ["parse_file.py", "--backend", "yamnet", "--yamnet_model", str(model), str(WAV)]
    quiet = _run(args, env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("Speech: ")
    verbose = _run([*args, "-v"], env)
    assert verbose.returncode == 0
    assert "XNNPACK" in verbose.stderr and "YAMNet backend ready" in verbose.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_vggish_parse_file_keeps_tensorflow_start_up_off_stderr(app_model_env):
    env = script_env(app_model_env)
    for name in (QUIET_NATIVE_ENV, TF_LOG_LEVEL_ENV):
        env.pop(name, None)
    result = _run(["parse_file.py", str(WAV)], env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# --------------------------------------------------------------------------------------
# Ctrl-C while the models load
# --------------------------------------------------------------------------------------
def _interrupt_while_loading(args: list[str], env: dict[str, str],
                             timeout: float = 240) -> tuple[int, str]:
    """Run a script, send SIGINT once TensorFlow is being loaded, return (code, stderr).

    "Loading" is seen from outside: TensorFlow's shared library mapped into the process
    (only model loading imports it).
    """
    with _reaped(subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=ROOT)) as proc:
        deadline = time.monotonic() + timeout
        maps = Path(f"/proc/{proc.pid}/maps")
        while proc.poll() is None and time.monotonic() < deadline:
            if "libtensorflow" in maps.read_text():
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"exited before loading the models: {proc.stderr.read()}"
        err = _interrupt(proc, timeout=60)
    return proc.returncode, err


def _loading_env(app_model_env: dict[str, str], base: dict[str, str] | None = None
                 ) -> dict[str, str]:
    env = script_env({**(base or {}), **app_model_env})
    for name in (QUIET_NATIVE_ENV, TF_LOG_LEVEL_ENV):
        env.pop(name, None)
    return env


@pytest.mark.slow
@pytest.mark.e2e
def test_ctrl_c_while_parse_file_loads_models_exits_130_quietly(app_model_env):
    code, err = _interrupt_while_loading(["parse_file.py", str(WAV)],
                                         _loading_env(app_model_env))
    assert code == 130, err
    assert err == ""


@pytest.mark.slow
@pytest.mark.e2e
def test_ctrl_c_while_daemon_loads_models_exits_130_quietly(app_model_env, tmp_path):
    env = _loading_env(app_model_env, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    code, err = _interrupt_while_loading(
        ["daemon.py", "--source", str(WAV), "--port", "0", "--config",
         str(tmp_path / "c.json")], env)
    assert code == 130, err
    lines = err.splitlines()
    assert len(lines) <= 1 and all("web interface on" in line for line in lines), err


@pytest.mark.slow
@pytest.mark.e2e
def test_ctrl_c_while_capture_loads_models_exits_130_quietly(app_model_env,
                                                            virtual_microphone):
    code, err = _interrupt_while_loading(["capture.py"],
                                         _loading_env(app_model_env, virtual_microphone.env()))
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not re.search(NATIVE_CHATTER, err, re.M), err[:2000]


# --------------------------------------------------------------------------------------
# Ctrl-C while running
# --------------------------------------------------------------------------------------
def _wait_for_events(status_url: str, timeout: float = 60) -> None:
    """Until the daemon's loop runs and has classified a window."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(status_url, timeout=5) as response:
            status = json.load(response)
        if status["loop"]["state"] == "running" and status["events"]["total"] >= 1:
            return
        time.sleep(0.1)
    raise AssertionError(f"the daemon's loop did not run: {status}")


@pytest.mark.shared
@pytest.mark.e2e
def test_daemon_ctrl_c_while_running_exits_130_and_sigterm_0(tmp_path):
    model = require_shared("models", "yamnet", "yamnet.tflite")
    env = script_env({"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    env.pop(QUIET_NATIVE_ENV, None)
    for signum, expected in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--source", str(WAV), "--no_realtime", "--min_time",
             "1", "--port", "0", "--config", str(tmp_path / "c.json"), "--backend", "yamnet",
             "--yamnet_model", str(model), "--quiet"],  # no line per prediction
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline()
            url = re.search(r"web interface on (http://\S+/)", first)
            assert url, first
            _wait_for_events(url.group(1) + "api/status")
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == expected, err
        assert err == "", err


@pytest.mark.shared
@pytest.mark.e2e
def test_daemon_logs_a_line_per_prediction_and_per_sound_event_and_quiet_keeps_the_events(
        tmp_path):
    """As the original: one line per prediction on the terminal; with --quiet only the
    sound events' starts and ends. Each run's windows are counted in the event store."""
    import sqlite3
    from contextlib import closing

    import numpy as np

    from audio.io import mono_blocks, open_audio, write_wav

    model = require_shared("models", "yamnet", "yamnet.tflite")
    with open_audio(require_shared("audio", "urbansound_samples", "dogbark.wav")) as reader:
        bark = np.concatenate(list(mono_blocks(reader, 16000)))
    wav = write_wav(tmp_path / "bark.wav", np.concatenate(
        [np.zeros(32000, np.float32), bark, np.zeros(48000, np.float32)]), 16000)
    db = tmp_path / "events.db"
    windows_before = 0
    for quiet in (False, True):
        result = _run(["daemon.py", "--source", str(wav), "--once", "--no_realtime",
                       "--min_time", "1", "--port", "0", "--config", str(tmp_path / "c.json"),
                       "--backend", "yamnet", "--yamnet_model", str(model), "--listen", "dog",
                       "--db", str(db), *(["--quiet"] if quiet else [])],
                      script_env({"XDG_CONFIG_HOME": str(tmp_path / "xdg")}))
        assert result.returncode == 0, result.stderr
        with closing(sqlite3.connect(db)) as conn:
            windows = conn.execute("SELECT count(*) FROM records WHERE kind = 'window'"
                                   ).fetchone()[0]
        lines = result.stderr.splitlines()
        predictions = [line for line in lines if " daemon: Predictions [" in line]
        assert len(predictions) == (0 if quiet else windows - windows_before), lines
        windows_before = windows
        assert sum(" daemon: Event start: dog at " in line for line in lines) == 1, lines
        assert sum(" daemon: Event end: dog " in line for line in lines) == 1, lines

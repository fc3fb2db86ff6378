"""Audio fixtures: a real microphone path without a sound card, and audio files.

``virtual_microphone`` starts a private user-level PulseAudio daemon with a pipe source
(``module-pipe-source``) as the default input, and an ``$HOME`` whose ``.asoundrc``
routes ALSA's default device to PulseAudio. A program run with ``mic.env()`` opens the
default input through PyAudio → PortAudio → ALSA → PulseAudio and records exactly what
the test writes with ``mic.play(samples)`` (int16 16 kHz mono, paced in real time).
The daemon is stopped by its pid at teardown (``recipe: docs real-parts.md``).

Also: ``make_wav`` helpers write test signals in any PCM encoding via soundfile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_tool

MIC_RATE = 16000
PLAY_CHUNK_SECONDS = 0.1
NATIVE_CHATTER = (r"ALSA lib|JackShm|jack server|Cannot connect to server|XNNPACK|absl::"
                  r"|^[IWE]0000 ")
"""What PortAudio (ALSA, JACK), LiteRT and TensorFlow print from C on stderr: a regex for
``re.search(..., re.M)``; the scripts keep it off the terminal unless ``-v``."""


@dataclass
class VirtualMicrophone:
    """A PulseAudio pipe source that is the default input of programs run with ``env()``."""

    runtime_dir: Path
    home: Path
    fifo: Path
    pid: int
    rate: int = MIC_RATE
    _fifo_handle: object = field(default=None, repr=False)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        env["HOME"] = str(self.home)
        env["PULSE_SERVER"] = f"unix:{self.runtime_dir / 'pulse' / 'native'}"
        return env

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this process's PortAudio at the virtual microphone (for in-process use)."""
        for key, value in self.env({}).items():
            monkeypatch.setenv(key, value)

    def _handle(self):
        if self._fifo_handle is None:
            self._fifo_handle = open(self.fifo, "wb", buffering=0)
        return self._fifo_handle

    def play(self, samples: np.ndarray, realtime: bool = True,
             stop: threading.Event | None = None) -> None:
        """Write int16 mono samples into the source, paced at real time (100 ms chunks)."""
        pcm = np.asarray(samples).astype("<i2")
        handle = self._handle()
        chunk = int(self.rate * PLAY_CHUNK_SECONDS)
        t0 = time.monotonic()
        for i, start in enumerate(range(0, pcm.shape[0], chunk)):
            if stop is not None and stop.is_set():
                return
            handle.write(pcm[start:start + chunk].tobytes())
            if realtime:
                delay = t0 + (i + 1) * PLAY_CHUNK_SECONDS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # test feeder pacing, not library code

    def play_in_background(self, samples: np.ndarray) -> threading.Thread:
        thread = threading.Thread(target=self.play, args=(samples,), daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        if self._fifo_handle is not None:
            try:
                self._fifo_handle.close()  # type: ignore[attr-defined]
            except OSError:
                pass
            self._fifo_handle = None


def _require_pulseaudio() -> None:
    require_tool("pulseaudio", "pactl")


def start_virtual_microphone(base: Path, rate: int = MIC_RATE) -> VirtualMicrophone:
    """Start the daemon and the pipe source under ``base`` (a fresh directory)."""
    _require_pulseaudio()
    runtime = base / "runtime"
    home = base / "home"
    runtime.mkdir(mode=0o700)
    home.mkdir()
    (home / ".asoundrc").write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
    config = base / "default.pa"
    config.write_text("load-module module-native-protocol-unix auth-anonymous=1\n"
                      "load-module module-null-sink sink_name=nullsink\n")
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(home))
    env.pop("PULSE_SERVER", None)
    subprocess.run(["pulseaudio", "-n", "-F", str(config), "--exit-idle-time=-1",
                    "--daemonize=yes", "--log-target=stderr"], env=env, check=True,
                   capture_output=True, timeout=30)
    pid = int((runtime / "pulse" / "pid").read_text().split()[0])
    mic = VirtualMicrophone(runtime, home, runtime / "mic.fifo", pid, rate)
    try:
        subprocess.run(["pactl", "load-module", "module-pipe-source", "source_name=virtmic",
                        f"file={mic.fifo}", "format=s16le", f"rate={rate}", "channels=1"],
                       env=mic.env(), check=True, capture_output=True, timeout=30)
        subprocess.run(["pactl", "set-default-source", "virtmic"], env=mic.env(), check=True,
                       capture_output=True, timeout=30)
    except BaseException:
        stop_virtual_microphone(mic)
        raise
    return mic


def stop_virtual_microphone(mic: VirtualMicrophone) -> None:
    mic.close()
    try:
        os.kill(mic.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(mic.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(mic.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def virtual_microphone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualMicrophone]:
    """A fresh PulseAudio daemon + pipe source for one test; killed at teardown."""
    mic = start_virtual_microphone(tmp_path_factory.mktemp("pulse"))
    try:
        yield mic
    finally:
        stop_virtual_microphone(mic)


def tone(seconds: float, frequency: float = 440.0, rate: int = MIC_RATE,
         amplitude: float = 0.3) -> np.ndarray:
    """A sine tone, float64 in [−amplitude, amplitude]."""
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def chirps_and_noise(seconds: float, rng: np.random.Generator, rate: int = MIC_RATE
                     ) -> np.ndarray:
    """A non-periodic test signal (noise bursts over a sweep): cross-correlation has one
    unambiguous peak, unlike a pure tone."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    sweep = 0.2 * np.sin(2 * np.pi * (200 * t + 150 * t**2))
    envelope = (rng.random(n // 800 + 1) > 0.5).repeat(800)[:n]
    return np.clip(sweep + 0.2 * envelope * rng.standard_normal(n), -1, 1)


def write_test_wav(path: Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16",
                   format_: str = "WAV") -> Path:
    """Write samples (1-D or (frames, channels)) with soundfile in any encoding."""
    import soundfile

    soundfile.write(str(path), samples, rate, subtype=subtype, format=format_)
    return path


# --------------------------------------------------------------------------------------
# The application's model files in tests: Google's formats with random VGGish weights
# (tests.fixtures_vggish) and the project's shipped classifier bundle.
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def app_model_env(vggish_checkpoint: Path, pca_params_file: Path) -> dict[str, str]:
    """Environment variables that point the application at the fixture VGGish files.

    The classifier is the shipped default bundle (or ``$AUDIO_ANALYSIS_MODEL`` when set):
    a missing bundle is a real failure, not a skip.
    """
    from audio.settings import PCA_PARAMS_ENV, VGGISH_CHECKPOINT_ENV
    from yt8m.bundle import CONFIG_FILE, resolve_bundle_path

    bundle = resolve_bundle_path(None)
    if not (bundle / CONFIG_FILE).is_file():
        pytest.fail(f"classifier bundle missing: {bundle}", pytrace=False)
    return {VGGISH_CHECKPOINT_ENV: str(vggish_checkpoint), PCA_PARAMS_ENV: str(pca_params_file)}


@pytest.fixture(scope="session")
def app_settings(vggish_checkpoint: Path, pca_params_file: Path, app_model_env):
    from audio.settings import Settings

    return Settings(vggish_checkpoint=vggish_checkpoint, pca_params=pca_params_file)


@pytest.fixture(scope="session")
def wav_processor(app_settings):
    """A loaded ``WavProcessor`` (fixture VGGish + shipped bundle), shared by the session."""
    from audio.pipeline import WavProcessor

    processor = WavProcessor(app_settings).load()
    yield processor
    processor.close()


def script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running the entry scripts as subprocesses from the project root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env


def run_capture(mic: VirtualMicrophone, args: Sequence[str], pcm: np.ndarray, *,
                env: dict[str, str], cwd: Path, done: Callable[[list[str]], bool],
                start_timeout: float = 240.0) -> tuple[int, list[str]]:
    """Run ``capture.py ARGS`` on the virtual microphone as a user would, and stop it.

    Waits for "Start recording", plays ``pcm`` (int16) into the microphone, waits up to
    30 s until ``done(lines)`` holds, then sends SIGINT (Ctrl-C: the clean-shutdown path,
    exit code 130) and returns (exit code, every output line). A process that outlives the test is killed.
    """
    script = Path(__file__).resolve().parent.parent / "capture.py"
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Start recording" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(start_timeout), \
            "capture.py did not start:\n" + "".join(lines[-30:])
        mic.play(pcm)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not done(lines):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    return proc.returncode, lines

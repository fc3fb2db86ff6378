"""parse_file.py end to end, as a subprocess: formats, timeline, count, every bad input.

VGGish weights are random (fixture checkpoint in the official format) and the
classifier is the shipped bundle: the tests check format and behaviour, not labels.
Runs that only meet bad files never load a model, so they are fast.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio.io import write_wav
from tests.fixtures_audio import script_env, write_test_wav

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT / "parse_file.py"
RATE = 16000
LINE = re.compile(r"^[^:]+: \d\.\d\d(, [^:]+: \d\.\d\d)*$")


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=script_env(env), cwd=PROJECT)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good clips (several encodings/rates) and every kind of bad input."""
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("clips")
    t = np.arange(int(6 * RATE)) / RATE
    # Alternating 1.92 s of noise and of near-silence: window scores that differ.
    gate = (np.floor(t / 1.92) % 2 == 0).astype(float)
    bursts = np.clip(rng.standard_normal(t.shape[0]) * 0.3 * gate + 0.001, -1, 1)
    clips = {
        "bursts": write_wav(d / "bursts.wav", bursts, RATE),
        "stereo44k_24bit": write_test_wav(d / "stereo.wav", np.stack(
            [bursts[:RATE * 3], bursts[RATE:RATE * 4]], axis=1).repeat(2, axis=0)[:44100 * 3],
            44100, "PCM_24"),
        "flac": write_test_wav(d / "clip.flac", bursts[:RATE * 3], RATE, "PCM_16", "FLAC"),
    }
    missing = d / "missing.wav"
    text = d / "notes.txt"
    text.write_text("not audio\n" * 100)
    truncated = write_wav(d / "truncated.wav", bursts[:RATE * 2], RATE)
    truncated.write_bytes(truncated.read_bytes()[:44 + RATE])
    zero = write_wav(d / "zero.wav", np.zeros(0, dtype=np.int16), RATE)
    empty_dir = d / "empty"
    empty_dir.mkdir()
    nan = np.full(RATE * 2, 0.1, dtype=np.float32)
    nan[RATE + 5] = np.nan
    clips.update({
        "missing": missing, "empty_dir": empty_dir, "text": text, "truncated": truncated,
        "zero": zero, "nan": write_test_wav(d / "nan.wav", nan, RATE, "FLOAT"),
        # Shorter than one 0.975 s frame: classified, zero-padded (not a bad input).
        "short": write_wav(d / "short.wav", bursts[:RATE // 2], RATE),
    })
    return clips


BAD = {  # name → a fragment of its one-line message
    "missing": "no such file",
    "empty_dir": "no audio files",
    "text": "not an audio file",
    "truncated": "truncated WAV",
    "zero": "zero length",
}


def test_help_is_instant_and_imports_no_tensorflow():
    code = ("import sys, parse_file, capture; parse_file.build_parser(); "
            "capture.build_parser(); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'resampy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=script_env(), cwd=PROJECT, timeout=60)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr
    helped = run(["--help"], timeout=60)
    assert helped.returncode == 0
    for flag in ("--timeline", "--events", "--listen", "--output_dir", "--recursive", "raven"):
        assert flag in helped.stdout


@pytest.mark.e2e
def test_every_bad_input_exits_2_with_a_one_line_message(clips):
    """Without a single good file, no model is loaded: this run needs no model files."""
    names = list(BAD)
    result = run([clips[n] for n in names], env={"AUDIO_ANALYSIS_VGGISH_CHECKPOINT":
                                                 "/nonexistent/vggish_model.ckpt"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = _errors(result.stderr)
    assert len(errors) == len(names)
    for name, line in zip(names, errors, strict=True):
        assert BAD[name] in line and str(clips[name]) in line
    assert result.stdout == ""


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(BAD))
def test_each_bad_input_alone(clips, name):
    result = run([clips[name]])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD[name] in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_text_output_good_files_processed_despite_bad_ones(clips, app_model_env):
    files = [clips["bursts"], clips["missing"], clips["stereo44k_24bit"], clips["nan"],
             clips["flac"]]
    result = run(files, env=app_model_env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        str(clips["bursts"]), str(clips["stereo44k_24bit"]), str(clips["flac"])]
    for line in lines:
        body = line.split(": ", 1)[1]
        assert LINE.match(body) or body.startswith("no class scored above"), line
        scores = [float(s) for s in re.findall(r": (\d\.\d\d)", body)]
        assert scores == sorted(scores, reverse=True) and len(scores) <= 20
    errors = _errors(result.stderr)
    assert len(errors) == 2
    assert "no such file" in errors[0] and "NaN" in errors[1]


@pytest.mark.e2e
@pytest.mark.slow
def test_json_timeline_and_count_contract(clips, app_model_env):
    path = clips["bursts"]
    result = run([path, clips["missing"], "--format", "json", "--timeline", "--top_k", "600",
                  "--threshold", "0"], env=app_model_env)
    assert result.returncode == 2
    good, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert bad == {"file": str(clips["missing"]), "error": bad["error"]}
    assert "no such file" in bad["error"]
    assert good["file"] == str(path)
    scores = [p["score"] for p in good["predictions"]]
    assert scores == sorted(scores, reverse=True) and len(scores) > 100
    windows = good["windows"]
    assert len(windows) == 6
    for i, w in enumerate(windows):
        assert w["start"] == pytest.approx(0.96 * i) and w["end"] == pytest.approx(0.96 * (i + 1))
        assert {"label", "score"} <= set(w["predictions"][0])
    # --count counts the event detector's events (VGGish weights are random here: this
    # checks plumbing; tests/test_parse_events.py checks what YAMNet finds). A threshold
    # under the file's best score makes the best class sound somewhere; --count must give
    # the events that --events --listen gives, whether it is listened to or not.
    best = good["predictions"][0]
    flags = ["--event_threshold", f"{best['score'] * 0.9:.6f}"]
    listened = run([path, "--format", "json", "--listen", best["label"], *flags],
                   env=app_model_env)
    assert listened.returncode == 0, listened.stderr
    events = json.loads(listened.stdout)["events"]
    assert events and all("kind" not in e for e in events)
    for extra in ([], ["--listen", best["label"]]):
        counted = run([path, "--format", "json", "--count", best["label"], *flags, *extra],
                      env=app_model_env)
        assert counted.returncode == 0, counted.stderr
        obj = json.loads(counted.stdout)
        assert obj["count"] == {"label": events[0]["sound"], "events": len(events),
                                "intervals": [[e["start"], e["end"]] for e in events]}
        assert ("events" in obj) == bool(extra)  # --count alone prints no event list
    assert "windows" not in obj  # --count alone does not print the timeline


@pytest.mark.e2e
@pytest.mark.slow
def test_csv_and_text_timeline_and_no_class_message(clips, app_model_env):
    result = run([clips["bursts"], "--format", "csv", "--timeline", "--window", "1.92",
                  "--top_k", "3"], env=app_model_env)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert set(rows[0]) == {"file", "scope", "start", "end", "rank", "label", "score", "error"}
    windows = sorted({(r["start"], r["end"]) for r in rows if r["scope"] == "window"})
    assert windows == [("0.000", "1.920"), ("1.920", "3.840"), ("3.840", "5.760")]
    assert all(int(r["rank"]) <= 3 for r in rows if r["rank"])
    quiet = run([clips["bursts"], "--threshold", "0.999", "--timeline", "--count", "speech",
                 "--event_threshold", "0.999", "-v"], env=app_model_env)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.splitlines()
    # One file, nothing above the threshold: an empty line, as the original printed; the
    # reason is logged with -v.
    assert lines[0] == ""
    assert f"{clips['bursts']}: no class scored above the threshold 0.999" in quiet.stderr
    assert len(lines) == 1 + 6 + 1
    assert all(line.strip().endswith("no class scored above the threshold 0.999")
               for line in lines[1:7])
    assert lines[-1] == "speech: 0 events"  # the shipped group "speech" (Speech, ...)


@pytest.mark.e2e
def test_missing_model_files_exit_1_and_say_how_to_get_them(clips, tmp_path):
    result = run([clips["bursts"]], env={
        "AUDIO_ANALYSIS_VGGISH_CHECKPOINT": str(tmp_path / "vggish_model.ckpt"),
        "AUDIO_ANALYSIS_PCA_PARAMS": str(tmp_path / "vggish_pca_params.npz")})
    assert result.returncode == 1
    errors = _errors(result.stderr)
    assert len(errors) == 1 and "python -m audio.models download" in errors[0]
    assert "vggish_model.ckpt" in errors[0] and "Traceback" not in result.stderr


@pytest.mark.e2e
def test_usage_errors(clips):
    result = run([clips["bursts"], "--top_k", "0"])
    assert result.returncode == 2 and _errors(result.stderr) == [
        "error: --top_k must be at least 1, got 0"]
    result = run([clips["bursts"], "--backend", "nope"])
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_console_script_dispatches_to_the_scripts():
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "audio.cli", *args], capture_output=True,
                              text=True, env=script_env(), cwd=PROJECT, timeout=60)

    assert "parse-file" in cli("--help").stdout
    helped = cli("parse-file", "--help")
    assert helped.returncode == 0 and "--timeline" in helped.stdout
    assert "--min_time" in cli("capture", "--help").stdout
    assert "download" in cli("download", "--help").stdout
    unknown = cli("frobnicate")
    assert unknown.returncode == 2 and "unknown command" in unknown.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_count_with_an_unknown_label_is_a_usage_error(clips, app_model_env):
    result = run([clips["bursts"], "--count", "Not A Class"], env=app_model_env)
    assert result.returncode == 2
    errors = _errors(result.stderr)
    assert len(errors) == 1 and "unknown sound 'Not A Class'" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_short_input_is_classified_and_said_padded(clips, app_model_env):
    """Shorter than one frame (0.975 s) used to exit 2; now it is zero-padded to one frame
    and classified, and JSON says so (VGGish path; YAMNet in tests/test_parse_events.py)."""
    result = run([clips["short"], clips["bursts"], "--format", "json", "--threshold", "0"],
                 env=app_model_env)
    assert result.returncode == 0, result.stderr
    short, long = (json.loads(line) for line in result.stdout.splitlines())
    assert short["file"] == str(clips["short"]) and short["duration"] == 0.5
    assert short["padded"] is True and short["predictions"]
    assert "padded" not in long  # only said when it happened


# Issue 23: a closed pipe ends the run quietly; a progress bar for long inputs, on a
# terminal only.


@pytest.fixture(scope="module")
def yamnet_args() -> list[str]:
    from tests.conftest import require_shared

    return ["--backend", "yamnet", "--yamnet_model",
            str(require_shared("models", "yamnet", "yamnet.tflite"))]


@pytest.mark.e2e
def test_a_closed_pipe_ends_the_run_quietly_with_141(tmp_path, yamnet_args):
    """``parse_file.py DIR | head -1`` ended with a BrokenPipeError traceback, exit 1."""
    rng = np.random.default_rng(9)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        write_wav(folder / f"{i:02d}.wav", rng.standard_normal(RATE) * 0.1, RATE)
    command = " ".join([sys.executable, str(SCRIPT), *yamnet_args, str(folder)])
    result = subprocess.run(["bash", "-c", f"{command} 2>{tmp_path / 'err'} | head -1; "
                             "echo \"exit ${PIPESTATUS[0]}\""],
                            capture_output=True, text=True, timeout=300, env=script_env(),
                            cwd=PROJECT)
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{folder / '00.wav'}: "), result.stdout
    stderr = (tmp_path / "err").read_text()
    assert lines[1] == "exit 141", (lines, stderr)
    assert stderr == "", stderr  # no traceback, no "Exception ignored"


def _long_recording(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(4)
    return write_wav(path, rng.standard_normal(int(seconds * RATE)).astype(np.float32) * 0.05,
                     RATE)


@pytest.mark.e2e
@pytest.mark.slow
def test_progress_bar_on_a_terminal_only_for_long_inputs(tmp_path, yamnet_args):
    """A 2-hour file showed nothing for two minutes; piped, stderr must stay clean."""
    import os
    import pty
    import threading
    import time

    long = _long_recording(tmp_path / "long.wav", 6 * 60 + 5)
    command = [sys.executable, str(SCRIPT), *yamnet_args, str(long)]
    master, slave = pty.openpty()
    seen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the child closed the terminal
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=slave, env=script_env(),
                          cwd=PROJECT, text=True) as proc:
        os.close(slave)
        out, _ = proc.communicate(timeout=600)
    elapsed = time.perf_counter() - started
    reader.join(10)
    os.close(master)
    terminal = seen.decode("utf-8", "replace")
    print(f"6-minute file on a terminal: {elapsed:.1f} s; terminal output {terminal!r:.200}")
    assert proc.returncode == 0 and ": 0." in out, (out, terminal)
    assert "long.wav" in terminal and re.search(r"\d+%", terminal), terminal
    assert re.search(r"\d+:\d\d/6:05", terminal), terminal  # audio done / total
    assert terminal.rstrip("\r\n ").endswith("\x1b[K") or "\r" in terminal
    piped = subprocess.run(command, capture_output=True, text=True, timeout=600,
                           env=script_env(), cwd=PROJECT)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    short = _long_recording(tmp_path / "short.wav", 60)
    master, slave = pty.openpty()
    seen.clear()
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with subprocess.Popen([*command[:-1], str(short)], stdout=subprocess.PIPE, stderr=slave,
                          env=script_env(), cwd=PROJECT, text=True) as proc:
        os.close(slave)
        proc.communicate(timeout=600)
    reader.join(10)
    os.close(master)
    assert proc.returncode == 0 and seen == b"", bytes(seen)  # a minute: no bar

"""Every bad input gets one clear line and exit 2, and nothing else is lost.

Each case runs ``parse_file.py --backend yamnet`` (the real YAMNet model from
``../shared``: no TensorFlow, fast) as a subprocess on the bad input followed by a good
file, and checks the exit code, that stderr is exactly one ``error:`` line naming the
file and the cause, and that the good file after it was still classified. Permission
cases drop the capabilities that let root read anything (``setpriv``) when the tests run
as root, so they test what a normal user meets.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from audio.io import (
    BLOCK_BYTES,
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    AudioFileNotFoundError,
    AudioLimitError,
    CorruptAudioError,
    InvalidSamplesError,
    UnreadableFileError,
    block_frames_for,
    mono_blocks,
    open_audio,
    write_wav,
)
from tests.conftest import require_shared
from tests.fixtures_audio import script_env, write_test_wav

PROJECT = Path(__file__).resolve().parent.parent
RATE = 16000
DROP_ROOT_READ = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                  "--inh-caps=-dac_override,-dac_read_search"]


def write_raw_wav(path: Path, rate: int, channels: int, bits: int, data: bytes,
                  tag: int = 1) -> Path:
    """A WAV file with exactly this header, whatever it declares."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
                     + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
                     + data)
    return path


def _as_user(command: list[str]) -> list[str]:
    """``command`` without root's power to read unreadable files."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to test permissions as root")
    return [*DROP_ROOT_READ, *command]


@pytest.fixture(scope="module")
def yamnet_model() -> Path:
    return require_shared("models", "yamnet", "yamnet.tflite")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(12)
    return write_wav(tmp_path_factory.mktemp("good") / "good.wav",
                     rng.standard_normal(2 * RATE) * 0.1, RATE)


def parse(args: list[object], yamnet_model: Path, cwd: Path, user: bool = False
          ) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(PROJECT / "parse_file.py"), "--backend", "yamnet",
               "--yamnet_model", str(yamnet_model), *map(str, args)]
    return subprocess.run(_as_user(command) if user else command, capture_output=True,
                          text=True, timeout=300, env=script_env(), cwd=cwd)


def assert_one_bad_then_good(result: subprocess.CompletedProcess[str], bad: Path,
                             good: Path, cause: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"error: {bad}: "), result.stderr
    assert cause in lines[0], lines[0]
    out = result.stdout.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"{good}: "), result.stdout
    assert out[0] != f"{good}: " and ": 0." in out[0]


def _corrupt_flac(directory: Path) -> Path:
    """A FLAC file whose frames after the first second are overwritten with garbage."""
    rng = np.random.default_rng(5)
    path = write_test_wav(directory / "corrupt.flac", rng.standard_normal(5 * RATE) * 0.1,
                          RATE, "PCM_16", "FLAC")
    data = bytearray(path.read_bytes())
    garbage = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    data[len(data) // 2:len(data) // 2 + len(garbage)] = garbage
    path.write_bytes(bytes(data))
    return path


BAD_CASES = {
    "symlink loop": lambda d: _symlink_loop(d),
    "huge rate": lambda d: write_raw_wav(d / "rate.wav", 4_000_000_000, 1, 16,
                                         bytes(32000)),
    "100 MHz": lambda d: write_raw_wav(d / "100mhz.wav", 100_000_000, 1, 8,
                                       bytes([128]) * 200_000),
    "many channels": lambda d: write_raw_wav(d / "channels.wav", RATE, 65535, 8,
                                             bytes([128]) * 65535 * 20),
    "1e300": lambda d: _float64_with(d / "huge.wav", 1e300),
    "corrupt FLAC": _corrupt_flac,
}
CAUSES = {
    "symlink loop": "symlink loop",
    "huge rate": f"sample rate 4000000000 Hz is above the supported maximum of "
                 f"{MAX_SAMPLE_RATE} Hz",
    "100 MHz": "sample rate 100000000 Hz is above the supported maximum",
    "many channels": f"65535 channels are more than the supported maximum of {MAX_CHANNELS}",
    "1e300": "sample beyond the float32 range (1e+300) at 0.006 s",
    "corrupt FLAC": "corrupt FLAC stream at ",
}


def _symlink_loop(directory: Path) -> Path:
    a, b = directory / "loop_a.wav", directory / "loop_b.wav"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _float64_with(path: Path, value: float) -> Path:
    samples = np.zeros(2 * RATE)
    samples[100] = value
    return write_raw_wav(path, RATE, 1, 64, samples.astype("<f8").tobytes(), tag=3)


@pytest.mark.shared
@pytest.mark.e2e
@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_one_line_exit_2_next_file_classified(case: str, tmp_path: Path,
                                                       good: Path, yamnet_model: Path) -> None:
    bad = BAD_CASES[case](tmp_path)
    result = parse([bad, good], yamnet_model, tmp_path)
    assert_one_bad_then_good(result, bad, good, CAUSES[case])


@pytest.mark.shared
@pytest.mark.e2e
def test_unreadable_file_and_directory_as_a_user(tmp_path: Path, good: Path,
                                                 yamnet_model: Path) -> None:
    locked = shutil.copy(good, tmp_path / "locked.wav")
    os.chmod(locked, 0)
    closed = tmp_path / "closed"
    closed.mkdir()
    inside = Path(shutil.copy(good, closed / "inside.wav"))
    os.chmod(closed, 0)
    try:
        for bad in (Path(locked), inside):
            result = parse([bad, good], yamnet_model, tmp_path, user=True)
            assert_one_bad_then_good(result, bad, good, "permission denied")
    finally:
        os.chmod(closed, 0o755)


@pytest.mark.shared
@pytest.mark.e2e
def test_max_channels_at_max_rate_is_classified_in_bounded_memory(
        tmp_path: Path, yamnet_model: Path) -> None:
    """64 channels of 8-bit at 384 kHz (1 s): classified, peak RSS well under 600 MB."""
    rng = np.random.default_rng(3)
    path = write_raw_wav(tmp_path / "array.wav", MAX_SAMPLE_RATE, MAX_CHANNELS, 8,
                         rng.integers(96, 160, MAX_SAMPLE_RATE * MAX_CHANNELS,
                                      dtype=np.uint8).tobytes())
    # A fresh wrapper process has this run as its only child: RUSAGE_CHILDREN is its peak.
    measure = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", measure, sys.executable,
                             str(PROJECT / "parse_file.py"), "--backend", "yamnet",
                             "--yamnet_model", str(yamnet_model), str(path)],
                            capture_output=True, text=True, timeout=300, env=script_env(),
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.match(r"^[^:]+: \d\.\d\d", result.stdout), result.stdout
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    assert peak_kib * 1024 < 600e6, f"peak RSS {peak_kib / 1024:.0f} MiB"


@pytest.mark.shared
@pytest.mark.e2e
def test_single_file_nothing_above_threshold_prints_an_empty_line(
        tmp_path: Path, good: Path, yamnet_model: Path) -> None:
    """The original printed an empty line; scripts test for it. Noise scores < 0.99."""
    result = parse([good, "--threshold", "0.99"], yamnet_model, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "\n" and result.stderr == ""
    several = parse([good, good, "--threshold", "0.99"], yamnet_model, tmp_path)
    assert several.stdout.splitlines() == [
        f"{good}: no class scored above the threshold 0.99"] * 2


# -- the library's side: typed errors, limits, the byte budget ----------------------------
def test_limits_and_values_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioLimitError, match="above the supported maximum"):
        open_audio(BAD_CASES["huge rate"](tmp_path))
    with pytest.raises(AudioLimitError, match="65535 channels"):
        open_audio(BAD_CASES["many channels"](tmp_path))
    with pytest.raises(UnreadableFileError, match="symlink loop"):
        open_audio(_symlink_loop(tmp_path))
    with open_audio(_float64_with(tmp_path / "inf.wav", np.inf)) as reader, \
            pytest.raises(InvalidSamplesError, match=r"NaN or infinite sample at 0\.006 s"):
        list(reader.blocks(RATE))
    with open_audio(_corrupt_flac(tmp_path)) as reader, \
            pytest.raises(CorruptAudioError, match=r"corrupt FLAC stream at [12]\.000 s"):
        list(mono_blocks(reader, RATE))


def test_broken_symlink_says_so(tmp_path: Path) -> None:
    link = tmp_path / "gone.wav"
    link.symlink_to(tmp_path / "never-was.wav")
    with pytest.raises(AudioFileNotFoundError, match="broken symlink"):
        open_audio(link)


def test_blocks_are_bounded_in_bytes_not_seconds(tmp_path: Path) -> None:
    path = write_raw_wav(tmp_path / "wide.wav", 96000, MAX_CHANNELS, 16,
                         bytes(96000 * MAX_CHANNELS * 2 * 3))
    with open_audio(path) as reader:
        frames = block_frames_for(reader, 60.0)
        assert frames * MAX_CHANNELS * 4 <= BLOCK_BYTES
        assert frames == BLOCK_BYTES // (4 * MAX_CHANNELS)
        sizes = [b.shape for b in reader.blocks(frames)]
    assert sizes[0] == (frames, MAX_CHANNELS) and sum(s[0] for s in sizes) == 3 * 96000
    with open_audio(write_wav(tmp_path / "mono.wav", np.zeros(RATE * 3), RATE)) as reader:
        assert block_frames_for(reader, 1.0) == RATE  # the time limit when it is smaller


def test_wav_saver_logs_one_line_when_it_cannot_save(tmp_path: Path, caplog) -> None:
    from audio.events import Event
    from audio.sinks import WavSaverSink

    directory = tmp_path / "saved"
    directory.mkdir()
    sink = WavSaverSink(directory)
    directory.rmdir()  # the disk went away under the running capture
    event = Event(id=1, start=0.0, end=1.0, timestamp=1700000000.0, predictions=(),
                  source="mic", audio=np.zeros(RATE, dtype=np.float32), sample_rate=RATE)
    with caplog.at_level(logging.ERROR, logger="audio.sinks"):
        sink.handle(event)
    assert sink.failed == 1 and sink.saved == []
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot save {directory / 'record_1700000000.wav'}: no such file or directory "
        f"(the window was still classified)"]


def test_watched_folder_skips_bad_files_once_per_change(tmp_path: Path, caplog) -> None:
    """daemon.py --source DIR: a bad file is logged once (again after it changes), never
    stops the source, and the good audio keeps coming on every pass (a damaged file's
    good first seconds included)."""
    from audio.sources import FileStreamSource

    rng = np.random.default_rng(9)
    write_wav(tmp_path / "a_good.wav", rng.standard_normal(2 * RATE) * 0.1, RATE)
    corrupt = _corrupt_flac(tmp_path)
    notes = tmp_path / "b_notes.wav"
    notes.write_text("not audio\n" * 10)
    (tmp_path / "sub").mkdir()
    loop = _symlink_loop(tmp_path / "sub")
    source = FileStreamSource([tmp_path], loop=True, window_seconds=1.0)
    stop = threading.Event()
    windows = source.windows(stop)
    with caplog.at_level(logging.WARNING, logger="audio.sources"):
        first = [next(windows) for _ in range(8)]  # two passes: 2 good + 2 before the damage
        notes.write_text("still not audio\n" * 10)  # changed: reported again
        second = [next(windows) for _ in range(4)]
    stop.set()
    windows.close()
    spans = [(Path(w.source).name, w.start) for w in first + second]
    assert spans == [("a_good.wav", 0.0), ("a_good.wav", 1.0),
                     ("corrupt.flac", 0.0), ("corrupt.flac", 1.0)] * 3
    skipped = [r.getMessage() for r in caplog.records]
    assert sorted(skipped) == sorted([
        f"skipping {corrupt}: corrupt FLAC stream at 2.000 s (flac decoder lost sync.)",
        f"skipping {notes}: not an audio file (unrecognised format)",
        f"skipping {notes}: not an audio file (unrecognised format)",
        f"skipping {loop}: symlink loop",
        f"skipping {loop.with_name('loop_b.wav')}: symlink loop"]), skipped
    assert source.files_failed == 2 * 4 + 1  # four bad files a pass, then notes in the 3rd


def test_watched_folder_forgets_bad_files_that_are_removed(tmp_path: Path, caplog) -> None:
    """A months-long watch keeps no record of bad files that are gone; a new bad file
    under the same name is reported again."""
    from audio.sources import FileStreamSource

    rng = np.random.default_rng(4)
    write_wav(tmp_path / "a_good.wav", rng.standard_normal(RATE) * 0.1, RATE)
    bad = tmp_path / "b_bad.wav"
    bad.write_text("not audio\n")
    source = FileStreamSource([tmp_path], loop=True, window_seconds=1.0)
    stop = threading.Event()
    windows = source.windows(stop)
    with caplog.at_level(logging.WARNING, logger="audio.sources"):
        next(windows), next(windows)  # two passes: b_bad.wav reported once
        assert source._reported and len(caplog.records) == 1
        bad.unlink()  # the pass under way still lists it: reported once as missing
        next(windows)  # ... and the next pass forgets it
        assert source._reported == {}
        bad.write_text("not audio\n")
        next(windows), next(windows)
    stop.set()
    windows.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping {bad}: not an audio file (unrecognised format)",
        f"skipping {bad}: no such file",
        f"skipping {bad}: not an audio file (unrecognised format)"]


@pytest.mark.e2e
def test_m4a_says_format_not_supported_and_how_to_convert(tmp_path: Path, good: Path,
                                                          yamnet_model: Path) -> None:
    """Issue 23: not "not an audio file (unrecognised format)" for an AAC recording."""
    from tests.unsupported_formats import write_m4a

    bad = write_m4a(tmp_path / "memo.m4a")
    result = parse([bad, good], yamnet_model, tmp_path)
    assert_one_bad_then_good(result, bad, good, "format not supported (m4a/AAC): convert it, "
                             f"e.g. `ffmpeg -i {bad} {tmp_path / 'memo.flac'}`")


@pytest.mark.e2e
def test_folder_classifies_mp3_and_names_what_it_skipped(tmp_path: Path,
                                                         yamnet_model: Path) -> None:
    """Issue 23: a folder took .wav/.flac/.ogg/.aif only; its .mp3 were skipped silently."""
    from tests.unsupported_formats import write_m4a

    rng = np.random.default_rng(3)
    folder = tmp_path / "memos"
    folder.mkdir()
    mp3 = write_test_wav(folder / "a.mp3", rng.standard_normal(2 * RATE) * 0.1, RATE,
                         "MPEG_LAYER_III", "MP3")
    for name in ("b.m4a", "c.m4a", "d.m4a"):
        write_m4a(folder / name)
    result = parse([folder], yamnet_model, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "skipped 3 files: unsupported format (.m4a)"], result.stderr
    out = result.stdout.strip().splitlines()
    assert len(out) == 1 and ": 0." in out[0] and mp3.exists(), out  # the ranking line

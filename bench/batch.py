"""Benchmark: ``python -m audio.batch`` with 1 and 2 workers vs serial ``parse_file.py``.

Targets (issue 17): 2 workers ≥ 1.7× 1 worker on 2 idle cores; ``audio.batch`` with 2
workers ≥ 1.5× serial ``parse_file.py`` over the same files.

Corpus (written once into ``--corpus``, reused when present): ``--files`` files (200) of
about ``--hours`` hours (1) of audio in all: one file of ``--long-minutes`` (20) and the
rest of mixed lengths (2 s to about a minute), each made of the real clips of
``../shared/audio`` cut and joined at random, half at 44.1 kHz stereo and half at 16 kHz
mono (so resampling is part of the cost, as on real archives). Backend: YAMNet (the real
model from ``../shared/models/yamnet``).

Each command runs in a fresh process, as a user runs it; its wall time includes start-up
(Beam's worker processes, the model loads). Figures: audio-hours per wall-minute and the
ratios. The load average is printed before and after each run: the machine is shared, and
other processes' load distorts every figure.

    .venv/bin/python bench/batch.py [--corpus DIR] [--files 200] [--hours 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402

SHARED = Path(os.environ.get("AUDIO_ANALYSIS_SHARED", PROJECT.parent / "shared"))
CLIPS = sorted((SHARED / "audio" / "urbansound_samples").glob("*.wav")) + \
    sorted((SHARED / "audio" / "misc").glob("*.wav"))
YAMNET = SHARED / "models" / "yamnet" / "yamnet.tflite"


def _clips() -> list[np.ndarray]:
    """The shared clips as 44.1 kHz stereo float arrays (linear interpolation)."""
    import soundfile

    out = []
    for path in CLIPS:
        clip, rate = soundfile.read(str(path), always_2d=True)
        t = np.arange(int(clip.shape[0] * 44100 / rate)) / 44100
        src = np.arange(clip.shape[0]) / rate
        out.append(np.stack([np.interp(t, src, clip[:, c % clip.shape[1]]) for c in (0, 1)], 1))
    return out


def _lengths(files: int, hours: float, long_minutes: float, rng: np.random.Generator
             ) -> list[float]:
    rest = max(hours * 3600 - long_minutes * 60, 2.0 * (files - 1))
    raw = rng.lognormal(0.0, 0.9, files - 1)
    lengths = np.maximum(2.0, raw / raw.sum() * rest)
    return [long_minutes * 60, *lengths.tolist()]


def write_corpus(folder: Path, files: int, hours: float, long_minutes: float) -> list[Path]:
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2017)
    clips = _clips()
    paths = []
    for i, seconds in enumerate(_lengths(files, hours, long_minutes, rng)):
        stereo = i % 2 == 0
        path = folder / f"f{i:03d}_{round(seconds)}s.{'wav' if stereo else 'flac'}"
        paths.append(path)
        if path.exists():
            continue
        pieces, total = [], 0
        while total < seconds * 44100:
            clip = clips[rng.integers(len(clips))]
            pieces.append(clip)
            total += clip.shape[0]
        audio = (np.concatenate(pieces)[:int(seconds * 44100)] * 0.9).astype(np.float32)
        if stereo:
            soundfile.write(str(path), audio, 44100, subtype="PCM_16")
        else:
            mono = audio.mean(axis=1)[::1]
            t = np.arange(int(mono.shape[0] * 16000 / 44100)) / 16000
            soundfile.write(str(path), np.interp(t, np.arange(mono.shape[0]) / 44100, mono),
                            16000, subtype="PCM_16")
    return paths


def timed(command: list[str]) -> tuple[float, str]:
    load = os.getloadavg()[0]
    started = time.monotonic()
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({result.returncode}):\n"
                         f"{result.stderr[-3000:]}")
    return wall, f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path,
                        default=Path(tempfile.gettempdir()) / "audio-batch-bench-corpus")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--long-minutes", type=float, default=20.0)
    args = parser.parse_args()
    paths = write_corpus(args.corpus, args.files, args.hours, args.long_minutes)
    import soundfile

    hours = sum(soundfile.info(str(p)).duration for p in paths) / 3600
    print(f"corpus: {len(paths)} files, {hours:.3f} h of audio in {args.corpus}; "
          f"{os.cpu_count()} cores", flush=True)
    model = ["--backend", "yamnet", "--yamnet_model", str(YAMNET)]
    rates = {}
    with tempfile.TemporaryDirectory() as out:
        for workers in (1, 2):
            wall, load = timed([sys.executable, "-m", "audio.batch", str(args.corpus),
                                "--output_dir", f"{out}/w{workers}", *model,
                                f"--direct_num_workers={workers}"])
            rates[workers] = hours / (wall / 60)
            print(f"audio.batch, {workers} worker(s): {wall:.1f} s, "
                  f"{rates[workers]:.2f} audio-h/wall-min ({load})", flush=True)
    wall, load = timed([sys.executable, "parse_file.py", "--format", "json", *model,
                        *map(str, paths)])
    serial = hours / (wall / 60)
    print(f"parse_file.py, serial: {wall:.1f} s, {serial:.2f} audio-h/wall-min ({load})")
    print(f"scaling 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (target >= 1.7x)")
    print(f"audio.batch 2 workers / parse_file.py: {rates[2] / serial:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()

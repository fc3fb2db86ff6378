"""Benchmark: parse_file.py cold on a 10 s clip (wall + breakdown); one hour of audio.

Targets (issue 5): cold ``parse_file.py`` on a 10 s clip ≤ 3 s wall on this machine;
a one-hour file ≥ 50× real time with peak RSS ≤ ~1 GB.

* cold wall: ``python parse_file.py clip.wav`` in a fresh process, as a user runs it
  (median of ``--repeats`` runs);
* breakdown, in another fresh process: imports (the script, then TensorFlow/Keras),
  model load (VGGish checkpoint + PCA + classifier bundle), compute (read, front end,
  VGGish, classifier);
* one hour: ``WavProcessor.analyze_file`` on a 16 kHz int16 wav of 3600 s (written by
  blocks), in a fresh process: wall time, real-time factor, peak RSS (``ru_maxrss``).

Without Google's checkpoint in ``models/`` a random-weight checkpoint in the official
format is written to a temporary directory (the output says so): the cost of the
arithmetic does not depend on the weight values. Prints the load average, since other
processes on the machine distort every figure.

    .venv/bin/python bench/parse_file.py [--repeats 3] [--hour-seconds 3600] [--skip-hour]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402

from bench._model_files import model_files  # noqa: E402


def write_clip(path: Path, seconds: float, rng: np.random.Generator) -> Path:
    from audio.io import write_wav

    t = np.arange(int(seconds * 16000)) / 16000
    audio = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.shape[0])
    return write_wav(path, audio, 16000)


def write_long_wav(path: Path, seconds: int, rng: np.random.Generator) -> Path:
    """A 16 kHz mono int16 wav written one minute at a time (the bench stays small)."""
    import wave

    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        for start in range(0, seconds, 60):
            n = min(60, seconds - start) * 16000
            t = (np.arange(n) + start * 16000) / 16000
            block = (0.2 * np.sin(2 * np.pi * (300 + (start % 600)) * t)
                     + 0.05 * rng.standard_normal(n))
            wav.writeframes((block * 32767).astype("<i2").tobytes())
    return path


BREAKDOWN = textwrap.dedent("""
    import json, os, resource, sys, threading, time

    def rss_mb():
        with open("/proc/self/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0]) / 1024

    t0 = time.perf_counter()
    import parse_file
    from audio.settings import Settings
    from audio.pipeline import WavProcessor
    t1 = time.perf_counter()
    import tensorflow, keras
    t2 = time.perf_counter()
    processor = WavProcessor(Settings.from_args(parse_file.build_parser().parse_args(
        [sys.argv[1]]))).load()
    t3 = time.perf_counter()
    after_load = rss_mb()
    peak = [after_load]
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    c3 = time.process_time()
    result = processor.analyze_file(sys.argv[1])
    t4 = time.perf_counter()
    c4 = time.process_time()
    done.set()
    sampler.join()
    print(json.dumps({"import_script_s": t1 - t0, "import_tensorflow_s": t2 - t1,
                      "model_load_s": t3 - t2, "compute_s": t4 - t3, "compute_cpu_s": c4 - c3,
                      "frames": result.frames, "duration_s": result.duration,
                      "rss_after_load_mb": after_load, "peak_rss_compute_mb": peak[0],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def run_child(code: str, args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=env, cwd=PROJECT, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold runs (median reported)")
    parser.add_argument("--hour-seconds", type=int, default=3600,
                        help="length of the long file (default one hour)")
    parser.add_argument("--skip-hour", action="store_true", help="only the 10 s clip")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_parse_file_") as tmp:
        work = Path(tmp)
        checkpoint, pca, note = model_files(work)
        env = dict(os.environ, PYTHONPATH=str(PROJECT), TF_CPP_MIN_LOG_LEVEL="2",
                   AUDIO_ANALYSIS_VGGISH_CHECKPOINT=str(checkpoint),
                   AUDIO_ANALYSIS_PCA_PARAMS=str(pca))
        clip = write_clip(work / "clip10s.wav", 10.0, rng)
        print(f"model files: {note}")
        print(f"CPUs: {os.cpu_count()}; load average before: {os.getloadavg()}")

        walls, cpus = [], []
        for _ in range(args.repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, str(PROJECT / "parse_file.py"), str(clip)],
                                 capture_output=True, text=True, env=env, cwd=PROJECT)
            walls.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if out.returncode != 0:
                raise SystemExit(f"parse_file.py failed:\n{out.stderr[-3000:]}")
        print(f"\ncold parse_file.py, 10 s clip: median {statistics.median(walls):.2f} s wall "
              f"(runs: {', '.join(f'{w:.2f}' for w in walls)}; target ≤ 3 s); CPU time "
              f"median {statistics.median(cpus):.2f} s (less sensitive to other processes)")
        b = run_child(BREAKDOWN, [str(clip)], env)
        print(f"  breakdown (fresh process): import script {b['import_script_s']:.2f} s, "
              f"import TensorFlow/Keras {b['import_tensorflow_s']:.2f} s, model load "
              f"{b['model_load_s']:.2f} s, compute {b['compute_s']:.2f} s "
              f"({b['frames']} frames)")
        print(f"  load average: {os.getloadavg()}")

        if not args.skip_hour:
            long_wav = write_long_wav(work / "hour.wav", args.hour_seconds, rng)
            h = run_child(BREAKDOWN, [str(long_wav)], env)
            factor = h["duration_s"] / h["compute_s"]
            print(f"\n{args.hour_seconds} s file: compute {h['compute_s']:.1f} s = "
                  f"{factor:.0f}× real time (target ≥ 50×; CPU time {h['compute_cpu_s']:.1f} s "
                  f"on {os.cpu_count()} cores), {h['frames']} frames; "
                  f"model load {h['model_load_s']:.1f} s")
            print(f"  RSS: {h['rss_after_load_mb']:.0f} MB once the models are loaded, "
                  f"{h['peak_rss_compute_mb']:.0f} MB at most while streaming the file "
                  f"(+{h['peak_rss_compute_mb'] - h['rss_after_load_mb']:.0f} MB); process "
                  f"peak {h['peak_rss_mb']:.0f} MB (target ≤ ~1 GB)")
            print(f"  load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

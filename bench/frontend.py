#!/usr/bin/env python3
"""Benchmark of VGGish's numpy front end on ONE core: real-time factors.

Measures, on synthetic audio (tones + noise) of the given durations:

* ``waveform_to_examples`` at 16 kHz (log-mel + patching to (K, 96, 64) float32), the
  figure with a goal: at least 1000× real time on one core;
* ``mel_features.log_mel_spectrogram`` alone (float64 result);
* resampling 44.1 kHz → 16 kHz with resampy (what any non-16 kHz input pays first),
  reported separately because it is resampy's cost, not the front end's.

One core: the BLAS/OpenMP thread pools are limited to one thread *before* numpy is
imported (they read these variables once, at load time) and, where the OS allows, the
process is pinned to a single CPU. Each figure is the best of ``--repeats`` runs (the
least disturbed by other processes). The load average is printed with the figures,
because on a shared machine they are only as good as the machine was idle.

Usage:  .venv/bin/python bench/frontend.py [--minutes 10 60] [--repeats 3]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vggish import mel_features  # noqa: E402
from vggish.input import waveform_to_examples  # noqa: E402
from vggish.params import PARAMS  # noqa: E402

TARGET_REAL_TIME_FACTOR = 1000.0


def pin_to_one_cpu() -> str:
    """Pin this process to the CPU it is running on; say what was done."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this OS); thread pools limited to 1"
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    return f"pinned to CPU {cpus[-1]} of {len(cpus)} available; thread pools limited to 1"


def synthetic_audio(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Tones and noise: realistic spectra (the FFT's speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    audio = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    audio += 0.1 * np.sin(2 * np.pi * 3100.0 * t)
    audio += 0.05 * (rng.random(n) - 0.5)
    return audio


def best_time(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (process) time of ``repeats`` runs, in seconds.

    On an idle machine the two agree. On a shared one, wall time also counts the time
    other processes held the core, so CPU time is the fairer measure of the code's cost
    (cache sharing still slows it somewhat); both are printed.
    """
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu


def describe(seconds: float, timing: tuple[float, float]) -> str:
    wall, cpu = timing
    return (f"wall {wall:7.3f} s = {seconds / wall:7.0f}x real time | "
            f"CPU {cpu:7.3f} s = {seconds / cpu:7.0f}x")


def loadavg() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unavailable"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Real-time factor of the VGGish front end "
                                                 "on one core.")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0],
                        help="durations of 16 kHz audio to process (default: 10 60)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per figure, best kept (default: 3)")
    parser.add_argument("--resample-minutes", type=float, default=2.0,
                        help="duration of 44.1 kHz audio for the resampling figure (default: 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or min(args.minutes) <= 0 or args.resample_minutes <= 0:
        print("error: --repeats, --minutes and --resample-minutes must be positive",
              file=sys.stderr)
        return 2
    pinning = pin_to_one_cpu()
    print(f"VGGish front end benchmark: {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print(f"  {pinning}")
    print(f"  load average before: {loadavg()}")
    rate = PARAMS.sample_rate

    # Warm-up: builds the cached mel matrix and touches the code paths once.
    waveform_to_examples(synthetic_audio(2.0, rate), rate)

    results: list[tuple[str, float]] = []
    for minutes in args.minutes:
        seconds = minutes * 60.0
        audio = synthetic_audio(seconds, rate)
        timing = best_time(lambda a=audio: waveform_to_examples(a, rate), args.repeats)
        examples = waveform_to_examples(audio, rate)
        results.append((seconds / timing[0], seconds / timing[1]))
        print(f"  waveform_to_examples {minutes:5g} min @ 16 kHz:   {describe(seconds, timing)}"
              f"  -> {examples.shape} {examples.dtype}")
        timing = best_time(lambda a=audio: mel_features.log_mel_spectrogram(
            a, audio_sample_rate=rate, log_offset=PARAMS.log_offset,
            window_length_secs=PARAMS.stft_window_seconds,
            hop_length_secs=PARAMS.stft_hop_seconds, num_mel_bins=PARAMS.num_mel_bins,
            lower_edge_hertz=PARAMS.mel_min_hz, upper_edge_hertz=PARAMS.mel_max_hz),
            args.repeats)
        print(f"  log_mel_spectrogram  {minutes:5g} min @ 16 kHz:   {describe(seconds, timing)}"
              f"  (float64, all frames)")
        del audio, examples

    import resampy  # After the front-end figures: its import (numba) is not theirs.

    resample_rate = 44100
    seconds = args.resample_minutes * 60.0
    audio = synthetic_audio(seconds, resample_rate)
    resampy.resample(audio[:resample_rate], resample_rate, rate)  # JIT compile first.
    timing = best_time(lambda: resampy.resample(audio, resample_rate, rate), args.repeats)
    print(f"  resampy 44.1k->16k   {args.resample_minutes:5g} min:           "
          f"{describe(seconds, timing)}  (resampy {resampy.__version__}, default filter)")
    timing = best_time(lambda: waveform_to_examples(audio, resample_rate), args.repeats)
    print(f"  waveform_to_examples {args.resample_minutes:5g} min @ 44.1 kHz: "
          f"{describe(seconds, timing)}  (resampling + front end)")

    print(f"  load average after:  {loadavg()}")
    worst_wall = min(wall for wall, _ in results)
    worst_cpu = min(cpu for _, cpu in results)
    verdict = "meets" if worst_cpu >= TARGET_REAL_TIME_FACTOR else "MISSES"
    print(f"16 kHz front end on one core: slowest {worst_cpu:.0f}x real time in CPU time "
          f"({worst_wall:.0f}x wall clock at this load): {verdict} the "
          f"{TARGET_REAL_TIME_FACTOR:.0f}x goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())

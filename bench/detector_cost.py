"""Benchmark: what following sound events costs, per hour of audio.

Two parts (issue 14 asks for the detector's cost per hour of audio):

1. Detector and frame scoring alone, on synthetic score streams: one hour of YAMNet
   frames (7,500 frames of 521 class scores, a 0.48 s hop) with low background scores,
   bursts of high scores in 60 random classes and random frame levels. Timed: the
   per-frame scoring (``FrameScorer``, YAMNet's context of one frame) and the detector
   (``EventDetector``) fed one frame at a time as a live stream does, for every class
   followed (no ``--listen``: 521 sounds) and for ``--listen dog,siren,speech`` (3 groups).
2. The whole ``EventStream`` on one hour of real audio with YAMNet (a one-minute program
   of silence, a dog bark, a siren and speech, repeated), pushed in 0.1 s blocks as the
   loop does, split into model time (YAMNet's frames), scoring, detector and the rest
   (framing, levels, glue), for the same two listen sets.

Prints the load average: other processes distort the figures.

    .venv/bin/python bench/detector_cost.py [--minutes 60] [--skip-audio]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402

SHARED = PROJECT.parent / "shared"
RATE = 16000
LISTEN_SETS = {"all classes": None, "--listen dog,siren,speech": "dog,siren,speech"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="audio per run")
    parser.add_argument("--yamnet_model", type=Path,
                        default=SHARED / "models" / "yamnet" / "yamnet.tflite")
    parser.add_argument("--skip-audio", action="store_true", help="part 1 only")
    return parser


class _Clock:
    """Seconds spent in wrapped callables, by name."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, name: str, function: Callable[..., Any], eager: bool = False
             ) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = function(*args, **kwargs)
            if eager:  # a generator: its work happens while it is consumed
                out = list(out)
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t0
            return out
        return timed


def _sounds(backend: Any, listen: str | None) -> Any:
    from audio.settings import Settings
    from audio.sounds import configured_sounds

    return configured_sounds(Settings(events=True, listen=listen), backend.labels)


def _synthetic(frames: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    scores = rng.beta(0.5, 20.0, size=(frames, classes)).astype(np.float32)
    for cls in rng.choice(classes, 60, replace=False):
        for _ in range(5):
            start = int(rng.integers(0, frames - 20))
            scores[start:start + int(rng.integers(3, 20)), cls] = rng.uniform(0.6, 0.95)
    starts = np.arange(frames) * 0.48
    return scores, starts, np.full(frames, 0.96), rng.uniform(-70.0, -10.0, frames)


def part1(backend: Any, minutes: float) -> None:
    from audio.detect import EventDetector
    from audio.framestream import Frames, FrameScorer

    frames = round(minutes * 60 / 0.48)
    scores, starts, durations, levels = _synthetic(frames, len(backend.labels),
                                                   np.random.default_rng(0))
    per_hour = 60.0 / minutes
    scorer = FrameScorer(backend)
    t0 = time.perf_counter()
    for i in range(frames):
        scorer.push(Frames(scores[i:i + 1], starts[i:i + 1], durations[i:i + 1],
                           levels[i:i + 1]))
    scoring = time.perf_counter() - t0
    print(f"\n1. synthetic scores: {frames} frames x {scores.shape[1]} classes "
          f"({minutes:g} min of YAMNet frames)")
    print(f"   frame scoring (context 1), one frame at a time: {scoring * per_hour:.2f} s "
          f"per hour of audio")
    for name, listen in LISTEN_SETS.items():
        sounds = _sounds(backend, listen)
        detector = EventDetector(sounds)
        t0 = time.perf_counter()
        records = []
        for i in range(frames):
            records += detector.push(scores[i], starts[i], durations[i], levels[i])
        records += detector.close()
        spent = time.perf_counter() - t0
        print(f"   detector, {name} ({len(sounds)} sounds): {spent * per_hour:.2f} s per hour "
              f"of audio ({spent / frames * 1e6:.0f} µs a frame; {len(records)} records)")


def _program() -> np.ndarray:
    """One minute: silence, a dog bark, silence, a siren, silence, speech, silence."""
    from audio.io import mono_blocks, open_audio

    def clip(relative: str) -> np.ndarray:
        with open_audio(SHARED / "audio" / relative) as reader:
            return np.concatenate(list(mono_blocks(reader, RATE)))

    parts = [clip("urbansound_samples/dogbark.wav"), clip("urbansound_samples/siren.wav"),
             clip("misc/speech.wav")]
    pieces = []
    for part in parts:
        pieces += [np.zeros(4 * RATE, np.float32), part]
    audio = np.concatenate(pieces)
    minute = np.zeros(60 * RATE, np.float32)
    minute[:min(audio.shape[0], minute.shape[0])] = audio[:minute.shape[0]]
    return minute


def part2(backend: Any, minutes: float) -> None:
    import audio.detect
    from audio.eventstream import EventStream

    program = _program()
    block = RATE // 10
    count = round(minutes)
    print(f"\n2. EventStream with YAMNet on {count} min of audio (a 1 min program repeated), "
          f"pushed in 0.1 s blocks")
    original_feed = audio.detect.EventDetector.feed
    for name, listen in LISTEN_SETS.items():
        clock = _Clock()
        features, scoring = backend.frame_features, backend.score_windows
        backend.frame_features = clock.wrap("model", features, eager=True)
        backend.score_windows = clock.wrap("scoring", scoring)
        audio.detect.EventDetector.feed = clock.wrap("detector", original_feed)
        try:
            stream = EventStream(backend, _sounds(backend, listen))
            records = 0
            t0 = time.perf_counter()
            for minute in range(count):
                for offset in range(0, program.shape[0], block):
                    records += len(stream.push(program[offset:offset + block],
                                               minute * 60.0 + offset / RATE))
            records += len(stream.close())
            total = time.perf_counter() - t0
        finally:
            del backend.frame_features, backend.score_windows
            audio.detect.EventDetector.feed = original_feed
        per_hour = 60.0 / count
        spent = {k: v * per_hour for k, v in clock.spent.items()}
        rest = total * per_hour - sum(spent.values())
        print(f"   {name}: {total * per_hour:.1f} s per hour of audio "
              f"({total / (count * 60) * 100:.2f}% of real time; {records} records): model "
              f"{spent.get('model', 0):.1f} s, scoring {spent.get('scoring', 0):.1f} s, "
              f"detector {spent.get('detector', 0):.1f} s, framing and rest {rest:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audio.backends.yamnet import YamnetBackend
    from audio.settings import apply_native_output_defaults

    apply_native_output_defaults(verbose=False)
    print(f"CPUs: {os.cpu_count()}; load average before: {os.getloadavg()}")
    backend = YamnetBackend(args.yamnet_model)
    backend.load()
    try:
        part1(backend, args.minutes)
        if not args.skip_audio:
            part2(backend, args.minutes)
    finally:
        backend.close()
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

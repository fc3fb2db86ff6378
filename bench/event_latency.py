"""Benchmark: sound event latency, from a dog bark's first sample to its ``start`` record.

Target (issue 14): with YAMNet, an event's ``start`` leaves the processing loop at most
1.5 s after the sound begins in a live stream. Measured through the real capture path: a
private PulseAudio daemon whose pipe source is the default input (``tests.fixtures_audio``),
PyAudio in callback mode, ``MicrophoneSource`` in block mode → ``ProcessingLoop`` →
``EventStream`` (YAMNet) → a sink. N barks separated by silence are written into the pipe
at real-time pace, 0.1 s at a time; each bark is placed so that its onset (the first 10 ms
frame 10 dB above the clip's median level: ``dogbark.wav`` opens on 0.25 s of street
noise) falls on the first sample of a written chunk. For every bark the delay is

    (time the start record reached the sink) − (wall-clock time the chunk that begins
    with the bark's onset was written to the pipe)

i.e. PulseAudio and PortAudio buffering + waiting for the frame to complete + YAMNet +
detection, as a user of ``capture.py --listen dog`` experiences it. A bark is detected
when a ``dog`` start arrives between its onset and the next bark's. Prints the load
average: other processes distort the figures.

    .venv/bin/python bench/event_latency.py [--barks 8] [--silence 4] [--block_seconds 0.1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from tests.fixtures_audio import VirtualMicrophone

SHARED = PROJECT.parent / "shared"
RATE = 16000
CHUNK = 1600  # what VirtualMicrophone.play writes at a time (0.1 s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--barks", type=int, default=8, help="barks played")
    parser.add_argument("--silence", type=float, default=4.0,
                        help="seconds of silence before each bark")
    parser.add_argument("--block_seconds", type=float, default=None,
                        help="microphone block length (default: the scripts' choice, "
                             "audio.blocks.DEFAULT_BLOCK_SECONDS)")
    parser.add_argument("--clip", type=Path,
                        default=SHARED / "audio" / "urbansound_samples" / "dogbark.wav")
    parser.add_argument("--listen", default="dog")
    parser.add_argument("--yamnet_model", type=Path,
                        default=SHARED / "models" / "yamnet" / "yamnet.tflite")
    parser.add_argument("--min_time", type=float, default=5.0)
    parser.add_argument("--max_time", type=float, default=7.0)
    return parser


def _clip(path: Path) -> tuple[np.ndarray, int]:
    """The clip at 16 kHz mono, and its onset in samples (see the module docstring)."""
    from audio.io import mono_blocks, open_audio

    with open_audio(path) as reader:
        audio = np.concatenate(list(mono_blocks(reader, RATE)))
    frame = RATE // 100
    levels = np.array([10 * np.log10(np.mean(np.square(audio[i:i + frame], dtype=np.float64))
                                     + 1e-12) for i in range(0, len(audio) - frame, frame)])
    onset = int(np.argmax(levels >= np.median(levels) + 10.0)) * frame
    return audio, onset


def _program(args: argparse.Namespace) -> tuple[np.ndarray, list[int]]:
    """int16 samples to play, and the chunk index at which each bark's onset is written."""
    audio, onset = _clip(args.clip)
    pieces, onsets, length = [], [], 0
    for _ in range(args.barks):
        gap = round(args.silence * RATE)
        gap += (-(length + gap + onset)) % CHUNK  # the onset on a chunk's first sample
        pieces += [np.zeros(gap, np.float32), audio]
        onsets.append((length + gap + onset) // CHUNK)
        length += gap + audio.shape[0]
    pieces.append(np.zeros(round(args.silence * RATE), np.float32))
    return np.round(np.concatenate(pieces) * 32767).astype(np.int16), onsets


def _play(mic: VirtualMicrophone, pcm: np.ndarray, written: list[float]) -> None:
    """``VirtualMicrophone.play``, recording the wall-clock time of every chunk write."""
    handle = open(mic.fifo, "wb", buffering=0)
    try:
        t0 = time.monotonic()
        for i, start in enumerate(range(0, pcm.shape[0], CHUNK)):
            written.append(time.time())
            handle.write(pcm[start:start + CHUNK].tobytes())
            delay = t0 + (i + 1) * CHUNK / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        handle.close()


def _run(args: argparse.Namespace, mic: VirtualMicrophone, processor: Any, sounds: Any
         ) -> tuple[list[tuple[float, Any]], list[float], dict[str, Any], list[float]]:
    """Play the program through the capture path; (start records with their arrival
    time, chunk write times, the loop's stats, window lengths)."""
    from audio.blocks import DEFAULT_BLOCK_SECONDS
    from audio.eventstream import EventStream
    from audio.loop import ProcessingLoop
    from audio.sinks import CallbackSink
    from audio.sources import MicrophoneSource

    for key, value in mic.env({}).items():
        os.environ[key] = value
    starts: list[tuple[float, Any]] = []
    windows: list[float] = []
    sink = CallbackSink(lambda e: windows.append(e.end - e.start),
                        lambda r: starts.append((time.time(), r)) if r.kind == "start" else None)
    block = args.block_seconds or DEFAULT_BLOCK_SECONDS
    source = MicrophoneSource(args.min_time, args.max_time, block_seconds=block)
    source.open()
    loop = ProcessingLoop(source, processor, [sink],
                          events=EventStream(processor.backend, sounds))
    thread = loop.start()
    pcm, _ = _program(args)
    written: list[float] = []
    player = threading.Thread(target=_play, args=(mic, pcm, written))
    print(f"CPUs: {os.cpu_count()}; load average before: {os.getloadavg()}; block {block} s")
    player.start()
    player.join()
    time.sleep(2.0)
    loop.stop()
    thread.join(timeout=30)
    return starts, written, loop.stats(), windows


def _report(args: argparse.Namespace, starts: list[tuple[float, Any]], written: list[float],
            stats: dict[str, Any], windows: list[float]) -> int:
    _, onsets = _program(args)
    times = [written[i] for i in onsets]
    delays, missed = [], 0
    for i, onset in enumerate(times):
        later = times[i + 1] if i + 1 < len(times) else float("inf")
        arrived = [t for t, r in starts if r.sound == args.listen and onset <= t < later]
        if arrived:
            delays.append(arrived[0] - onset)
        else:
            missed += 1
    others = sum(1 for t, r in starts if r.sound != args.listen or t < times[0])
    print(f"{len(windows)} windows of {min(windows, default=0):.2f}-"
          f"{max(windows, default=0):.2f} s classified; blocks dropped "
          f"{stats['blocks_dropped']}, errors {stats['errors']}")
    print(f"barks: {len(times)}; detected {len(delays)}, missed {missed}; other starts "
          f"{others}")
    if not delays:
        return 1
    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"bark onset → start record: median {statistics.median(delays) * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms (target ≤ 1500 ms)")
    print("per bark (ms): " + " ".join(f"{d * 1000:.0f}" for d in delays))
    print(f"load average after: {os.getloadavg()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audio.pipeline import WavProcessor
    from audio.settings import Settings, apply_native_output_defaults
    from audio.sounds import configured_sounds
    from tests.fixtures_audio import start_virtual_microphone, stop_virtual_microphone

    apply_native_output_defaults(verbose=False)  # PortAudio's and LiteRT's chatter
    settings = Settings(backend="yamnet", yamnet_model=args.yamnet_model, listen=args.listen)
    with tempfile.TemporaryDirectory(prefix="bench_events_") as tmp, \
            WavProcessor(settings) as processor:
        processor.load()
        sounds = configured_sounds(settings, processor.labels,
                                   processor.backend.class_thresholds)
        processor.predict(np.zeros(RATE, np.float32), RATE)  # warm the interpreter
        mic = start_virtual_microphone(Path(tmp))
        try:
            result = _run(args, mic, processor, sounds)
        finally:
            stop_virtual_microphone(mic)
    return _report(args, *result)


if __name__ == "__main__":
    sys.exit(main())

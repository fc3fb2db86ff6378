"""Benchmark: from the start of a sound in a live stream to its MQTT ``start`` message.

Target (issue 16): with YAMNet, median and p95 at most 1.5 s. The path is the daemon's: a
private PulseAudio daemon whose pipe source is the default input (``tests.fixtures_audio``)
→ PyAudio → ``MicrophoneSource`` in 0.1 s blocks → ``ProcessingLoop`` → ``EventStream`` →
the event store (committed first) → ``MqttSink`` (sender thread, outbox, QoS 1) → a real
mosquitto on a loopback port → a subscriber. The program is ``bench/event_latency.py``'s:
N dog barks separated by silence written into the pipe at real-time pace, each onset on
the first sample of a 0.1 s chunk. For every bark the delay is

    (time the subscriber received the ``start`` message) − (wall-clock time the chunk
    that begins with the bark's onset was written to the pipe)

With YAMNet the sound listened to is ``dog``; a bark counts as detected when a ``dog``
start arrives before the next bark. With VGGish the checkpoint is a random-weight one in
the official format (Google's cannot be downloaded here), so what it detects means
nothing: it follows every class (``--events``) at a threshold any score passes, gated
at -60 dBFS (the program's silence is digital silence), and the first start of any sound
after each onset is timed: the figure is the cost of the VGGish path (0.96 s frames,
the TensorFlow model), not a detection rate.
Prints the load average: other processes distort the figures.

    .venv/bin/python bench/mqtt_latency.py [--backend yamnet|vggish|both] [--barks 8]
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
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.event_latency import RATE, _play, _program  # noqa: E402

SHARED = PROJECT.parent / "shared"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("yamnet", "vggish", "both"), default="both")
    parser.add_argument("--barks", type=int, default=8)
    parser.add_argument("--silence", type=float, default=4.0)
    parser.add_argument("--clip", type=Path,
                        default=SHARED / "audio" / "urbansound_samples" / "dogbark.wav")
    parser.add_argument("--yamnet_model", type=Path,
                        default=SHARED / "models" / "yamnet" / "yamnet.tflite")
    parser.add_argument("--min_time", type=float, default=5.0)
    parser.add_argument("--max_time", type=float, default=7.0)
    return parser


def _settings(backend: str, args: argparse.Namespace, work: Path) -> Any:
    from audio.settings import Settings
    from bench._model_files import model_files

    if backend == "yamnet":
        return Settings(backend="yamnet", yamnet_model=args.yamnet_model, listen="dog")
    checkpoint, pca, note = model_files(work)
    print(f"VGGish model files: {note}")
    # Random weights: every class, a threshold any score passes, and the loudness gate
    # (the program's silence is digital silence) so that events start at the barks.
    return Settings(vggish_checkpoint=checkpoint, pca_params=pca, events=True,
                    event_threshold=0.001, min_dbfs=-60.0)


def _run(backend: str, args: argparse.Namespace, mic: Any, broker: Any, work: Path
         ) -> tuple[list[Any], list[float], dict[str, Any]]:
    """Play the program once through the daemon's path; (start messages, chunk write
    times, the loop's stats)."""
    from audio.blocks import DEFAULT_BLOCK_SECONDS
    from audio.eventstream import EventStream
    from audio.loop import ProcessingLoop
    from audio.pipeline import WavProcessor
    from audio.sinks.mqtt import MqttSink, mqtt_settings
    from audio.sounds import configured_sounds
    from audio.sources import MicrophoneSource
    from audio.store import Store
    from tests.fixtures_mqtt import Subscriber

    settings = _settings(backend, args, work)
    with WavProcessor(settings) as processor, Store(work / f"{backend}.db") as store:
        processor.load()
        sounds = configured_sounds(settings, processor.labels,
                                   processor.backend.class_thresholds)
        processor.predict(np.zeros(RATE, np.float32), RATE)  # warm the interpreter
        topic = f"audio-analysis/{backend}/events"
        subscriber = Subscriber(broker, (topic,), f"bench-{backend}")
        sink = MqttSink(mqtt_settings(broker.url, device_id=backend, predictions=False),
                        store=store, sounds=[s.name for s in sounds])
        source = MicrophoneSource(args.min_time, args.max_time,
                                  block_seconds=DEFAULT_BLOCK_SECONDS)
        source.open()
        loop = ProcessingLoop(source, processor, [sink],
                              events=EventStream(processor.backend, sounds), store=store)
        thread = loop.start()
        pcm, _ = _program(args)
        written: list[float] = []
        player = threading.Thread(target=_play, args=(mic, pcm, written))
        print(f"{backend}: CPUs {os.cpu_count()}; load average before: {os.getloadavg()}")
        player.start()
        player.join()
        time.sleep(2.0)
        loop.stop()
        thread.join(timeout=30)
        subscriber.close()
        starts = [m for m in subscriber.on(topic) if m.json()["type"] == "start"]
        return starts, written, loop.stats()


def _report(backend: str, args: argparse.Namespace, starts: list[Any], written: list[float],
            stats: dict[str, Any]) -> bool:
    _, onsets = _program(args)
    times = [written[i] for i in onsets]
    wanted = "dog" if backend == "yamnet" else None
    delays, missed = [], 0
    for i, onset in enumerate(times):
        later = times[i + 1] if i + 1 < len(times) else float("inf")
        arrived = [m.time for m in starts if onset <= m.time < later
                   and (wanted is None or m.json()["sound"] == wanted)]
        if arrived:
            delays.append(arrived[0] - onset)
        else:
            missed += 1
    print(f"{backend}: barks {len(times)}, timed {len(delays)}, missed {missed}; start "
          f"messages {len(starts)}; windows {stats['windows_processed']}, blocks dropped "
          f"{stats['blocks_dropped']}, errors {stats['errors']}")
    if not delays:
        return False
    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"{backend}: onset → MQTT start message: median "
          f"{statistics.median(delays) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max "
          f"{max(delays) * 1000:.0f} ms (target ≤ 1500 ms)")
    print(f"{backend}: per bark (ms): " + " ".join(f"{d * 1000:.0f}" for d in delays))
    print(f"{backend}: load average after: {os.getloadavg()}")
    return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audio.settings import apply_native_output_defaults
    from tests.fixtures_audio import start_virtual_microphone, stop_virtual_microphone
    from tests.fixtures_mqtt import Broker

    apply_native_output_defaults(verbose=False)
    backends = ("yamnet", "vggish") if args.backend == "both" else (args.backend,)
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench_mqtt_") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker").start()
        (work / "mic").mkdir()
        mic = start_virtual_microphone(work / "mic")
        for key, value in mic.env({}).items():
            os.environ[key] = value
        try:
            for backend in backends:
                ok &= _report(backend, args, *_run(backend, args, mic, broker, work))
        finally:
            stop_virtual_microphone(mic)
            broker.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

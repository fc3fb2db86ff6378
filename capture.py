#!/usr/bin/env python3
"""Capture audio from a microphone and log what it hears, window after window.

    python capture.py [--min_time 5] [--max_time 7] [-s DIR] [--device N|NAME]
                      [--list_devices] [--model ...] [--top_k N] [--threshold P]
                      [--events | --listen dog,siren] [--save_events] [event flags]

Windows of ``min_time``..``max_time`` seconds (the original's semantics) are recorded on
their own thread while the previous one is being classified; each window's predictions
are logged (``Predictions [start-end s]: Speech: 0.75, ...``) and, with ``--save_path``,
the window is saved as ``record_<unix time>.wav``. Ctrl-C or SIGTERM finishes the windows
already captured, then exits (130 after Ctrl-C, 0 after SIGTERM).

With ``--events`` or ``--listen``, each sound event's start and end is also logged as it
happens (``Event start: dog at 12.40 s (peak 0.83, -18 dBFS, #1)``, ``Event end: dog
12.40-15.10 s ...``): the microphone then hands the loop 0.1 s blocks that go to the
event detector at once, while the predictions keep their windows. ``--save_events``
(with ``--save_path``) saves each event's audio with a second of context on each side
as ``event_<id>_<sound>_<unix time of its start>.wav`` instead of every window
(``audio.sinks.EventAudioSink``: at most 120 s per event).

What PortAudio (ALSA, JACK), TensorFlow and LiteRT print while the device is probed and
the models load is kept off the terminal unless ``-v``. Without a microphone (no sound
card, no PulseAudio/PipeWire) ``--list_devices`` says so in one line and names the
alternatives: ``daemon.py --source FILE|DIR`` and ``parse_file.py FILE``.

Exit codes: 0 normal end (SIGTERM included); 1 model files missing/broken, no input
device, or the device failed; 2 usage error (bad save path, unknown device, bad times);
130 Ctrl-C, at any moment (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from audio.cli import run_script
from audio.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    AudioAnalysisError,
    UsageError,
    exit_code,
)
from audio.settings import (
    DEFAULT_MAX_TIME,
    DEFAULT_MIN_TIME,
    Settings,
    add_event_arguments,
    add_model_arguments,
    apply_native_output_defaults,
)

NO_MICROPHONE_HINT = ("no sound card, or no sound server reachable (is PulseAudio or "
                      "PipeWire running?); without a microphone, classify audio files "
                      "with `daemon.py --source FILE|DIR` or `parse_file.py FILE`")

logger = logging.getLogger("audio_analysis.capture")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capture.py",
                                     description="Capture and process audio from a microphone")
    parser.add_argument("--min_time", type=float, default=None, metavar="SECONDS",
                        help=f"minimum capture time of a window (default {DEFAULT_MIN_TIME:g})")
    parser.add_argument("--max_time", type=float, default=None, metavar="SECONDS",
                        help=f"maximum capture time of a window (default {DEFAULT_MAX_TIME:g})")
    parser.add_argument("-s", "--save_path", metavar="DIR", default=None,
                        help="save every processed window as DIR/record_<unix time>.wav")
    parser.add_argument("--device", metavar="INDEX_OR_NAME", default=None,
                        help="input device (index or part of its name; default: the system's "
                             "default input)")
    parser.add_argument("--list_devices", action="store_true",
                        help="list the input devices and exit")
    add_model_arguments(parser)
    add_event_arguments(parser)
    parser.add_argument("--save_events", action="store_true",
                        help="with --save_path: save each sound event's audio, with a second "
                             "of context on each side, as DIR/event_<id>_<sound>_<unix time>"
                             ".wav, instead of every window (implies --events)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _list_devices() -> int:
    from audio.sources import SourceError, list_input_devices

    try:
        devices = list_input_devices()
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not devices:
        print(f"no input devices found: {NO_MICROPHONE_HINT}")
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['channels']} ch, "
              f"{d['default_sample_rate']:g} Hz)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    apply_native_output_defaults(args.verbose)
    if args.list_devices:
        return _list_devices()
    try:
        if args.save_events:
            if args.save_path is None:
                raise UsageError("--save_events needs --save_path DIR")
            args.events = True
        return _capture(Settings.from_args(args), args.save_events)
    except AudioAnalysisError as exc:
        return _report(exc)


def _report(exc: AudioAnalysisError) -> int:
    """One line for the error (with the way out when there is no microphone at all);
    the exit code is the project's one mapping (``audio.errors.exit_code``)."""
    from audio.sources import NoInputDeviceError

    hint = f": {NO_MICROPHONE_HINT}" if isinstance(exc, NoInputDeviceError) else ""
    print(f"error: {exc}{hint}", file=sys.stderr)
    return exit_code(exc)


def _sinks(settings: Settings, save_events: bool) -> list:
    """Where windows and events go: the log, and the wav files of ``--save_path``."""
    from audio.sinks import EventAudioSink, LogSink, WavSaverSink

    sinks: list = []
    if settings.save_path is not None:
        sinks.append(EventAudioSink(settings.save_path) if save_events
                     else WavSaverSink(settings.save_path))
    sinks.append(LogSink(logger))
    return sinks


def _event_stream(settings: Settings, processor: Any) -> Any:
    """The sound events to follow (None without ``--events``/``--listen``); a model loaded."""
    from audio.eventstream import EventStream
    from audio.sounds import configured_sounds, warn_weak_sounds

    backend = processor.backend
    sounds = configured_sounds(settings, backend.labels, backend.class_thresholds)
    if sounds is None:
        return None
    warn_weak_sounds(settings, sounds, backend, logger)
    names = ", ".join(s.name for s in sounds[:8]) + (", ..." if len(sounds) > 8 else "")
    logger.info("Following %d sound%s: %s", len(sounds), "" if len(sounds) == 1 else "s",
                names)
    return EventStream(backend, sounds)


def _capture(settings: Settings, save_events: bool = False) -> int:
    """Check the device, load the models, then record and classify until stopped."""
    from audio.blocks import DEFAULT_BLOCK_SECONDS
    from audio.loop import ProcessingLoop
    from audio.pipeline import WavProcessor
    from audio.sources import MicrophoneSource, check_input_device

    sinks = _sinks(settings, save_events)
    check_input_device(settings.device)
    processor = WavProcessor(settings)
    try:
        # Models first: the microphone starts only when windows can be classified.
        processor.load()
        events = _event_stream(settings, processor)
        source = MicrophoneSource(settings.min_time, settings.max_time,
                                  device=settings.device,
                                  block_seconds=DEFAULT_BLOCK_SECONDS if events else None)
        source.open()
        loop = ProcessingLoop(source, processor, sinks, events=events)
        logger.info("Start recording (windows of %g-%g s); Ctrl-C to stop.",
                    settings.min_time, settings.max_time)
        loop.run()
    finally:
        processor.close()
    stats = loop.stats()
    logger.info("Stopped: %d windows processed, %d dropped, %d errors.",
                stats["windows_processed"], stats["windows_dropped"], stats["errors"])
    if events is not None:
        logger.info("Sound events: %d started, %d ended; %d blocks dropped.",
                    stats["sound_events_started"], stats["sound_events_ended"],
                    stats["blocks_dropped"])
    if loop.stop_signal == signal.SIGINT:
        return EXIT_INTERRUPTED
    return EXIT_FAILURE if stats["source_error"] else EXIT_OK


if __name__ == "__main__":
    run_script(main)  # Ctrl-C at any moment: exit 130, no traceback

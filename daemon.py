#!/usr/bin/env python3
"""daemon.py: classify sounds continuously, show them on a local web page, push them to
DeviceHive.

The microphone (or, with ``--source FILE|DIR``, audio files played in a loop, for headless
machines and demos) feeds the shared processing loop. Every classified window (and sound
event record) is first committed to the event store (``--db``: one SQLite file,
``audio.store``; its seq is the id everything shows), then logged (one line per
prediction unless ``--quiet``; sound events always), shown on the web page and delivered
to DeviceHive, which sends from the store's outbox: nothing committed is lost by a kill or
an outage, and a restart resumes where delivery stopped. With ``--events`` or
``--listen`` the loop also follows sound events (the shared event flags, ``audio.settings``): each start
and end goes to the web page (``/events/``, ``/api/sounds``) and to DeviceHive as a
``soundEvent`` notification, the source handing the loop 0.1 s blocks so that a start
leaves the loop within a second or so of the sound. The web interface listens on
http://127.0.0.1:8000 by default: ``/`` configures DeviceHive, MQTT and webhooks and
switches detection (saved in the per-user config file, applied without a restart; flags
override it for the run), ``/events/`` shows the last predictions live.
``--mqtt_url`` publishes to an MQTT broker with Home Assistant discovery and ``--webhook``
POSTs each sound event start and end (``audio.sinks.factory``; both from the outbox too).

Without ``--source`` the microphone is checked first, before the web interface starts and
the models load: with none usable the daemon exits at once, in one line naming
``--source``. What PortAudio (ALSA, JACK), TensorFlow and LiteRT print while probing and
loading is kept off the terminal unless ``-v``.

Exit codes: 0 stopped by SIGTERM (a service manager's stop) or ``--once`` done; 1 no
usable microphone, or the audio source failed while running; 2 usage error, unusable
configuration, unknown ``--device``, a ``--source`` without readable audio, model files
missing/broken, or the event store
unusable or held by another daemon; 130 Ctrl-C, at any
moment (after finishing the queued windows when it comes while running; no traceback).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audio.cli import EXIT_INTERRUPTED, run_script
from audio.errors import UsageError
from audio.settings import (
    DEFAULT_MAX_TIME,
    DEFAULT_MIN_TIME,
    Settings,
    SettingsError,
    add_event_arguments,
    add_model_arguments,
    apply_native_output_defaults,
)

logger = logging.getLogger("daemon")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_PORT = 8000
FLUSH_SECONDS = 3.0
"""How long a stop waits for queued DeviceHive notifications: short enough that SIGTERM
ends well within the 10 s service managers allow, whatever the server does."""
EXIT_NO_MICROPHONE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daemon.py",
        description="Classify sounds continuously from the microphone (or audio files), show "
                    "them on a local web page and send them to DeviceHive.",
    )
    src = parser.add_argument_group("audio")
    src.add_argument("--source", metavar="FILE|DIR", action="append", default=None,
                     help="classify these audio files (a directory: its audio files) "
                          "instead of the microphone; repeatable; played in a loop")
    src.add_argument("--once", action="store_true",
                     help="with --source: play the files once, deliver, then exit")
    src.add_argument("--no_realtime", action="store_true",
                     help="with --source: classify as fast as possible instead of at the "
                          "pace of the audio")
    src.add_argument("--device", default=None,
                     help="microphone: input device index or name (default: system default)")
    src.add_argument("--min_time", type=float, default=None, metavar="SECONDS",
                     help=f"shortest window to classify (default {DEFAULT_MIN_TIME:g}); with "
                          f"--source, the window length")
    src.add_argument("--max_time", type=float, default=None, metavar="SECONDS",
                     help=f"longest microphone window (default {DEFAULT_MAX_TIME:g})")
    add_model_arguments(parser)
    add_event_arguments(parser)
    _add_web_arguments(parser)
    _add_devicehive_arguments(parser)
    from audio.sinks.factory import add_home_arguments  # MQTT, Home Assistant, webhooks

    add_home_arguments(parser)
    _add_store_and_log_arguments(parser)
    return parser


def _add_web_arguments(parser: argparse.ArgumentParser) -> None:
    web = parser.add_argument_group("web interface")
    web.add_argument("--host", default=DEFAULT_HOST,
                     help=f"address to listen on (default {DEFAULT_HOST}; anything else "
                          f"exposes the page to the network and needs a password)")
    web.add_argument("--port", type=int, default=DEFAULT_PORT,
                     help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    web.add_argument("--allowed_host", action="append", default=[], metavar="NAME",
                     help="extra Host header name the page answers to (DNS-rebinding "
                          "protection refuses others); repeatable")
    web.add_argument("--config", metavar="PATH", default=None,
                     help="configuration file (env AUDIO_ANALYSIS_CONFIG; default "
                          "$XDG_CONFIG_HOME/audio-analysis/config.json)")
    web.add_argument("--legacy_config", metavar="PATH", default=None,
                     help="the original daemon's dh_config.json to import when no "
                          "configuration exists yet (default: ./dh_config.json if present)")
    web.add_argument("--set_password", action="store_true",
                     help="store a hash of the web page's password in the configuration "
                          "(prompted, or one line on stdin), then exit; a non-loopback "
                          "--host needs it or env AUDIO_ANALYSIS_WEB_PASSWORD")
    web.add_argument("--no_auth", action="store_true",
                     help="serve a non-loopback --host without a password (anyone who can "
                          "reach the page can change the DeviceHive settings)")


def _add_store_and_log_arguments(parser: argparse.ArgumentParser) -> None:
    from audio.store.retention import DEFAULT_MAX_ROWS

    store = parser.add_argument_group(
        "event store (windows and sound events, committed before they are shown or sent)")
    store.add_argument("--db", metavar="PATH", default=None,
                       help="the SQLite file (env AUDIO_ANALYSIS_DB; default "
                            "$XDG_STATE_HOME/audio-analysis/events.db); one daemon per file")
    store.add_argument("--retention_days", type=float, default=DEFAULT_RETENTION_DAYS,
                       metavar="DAYS",
                       help=f"delete rows older than this, once delivered (default "
                            f"{DEFAULT_RETENTION_DAYS:g})")
    store.add_argument("--max_rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                       help=f"keep at most this many delivered rows (default "
                            f"{DEFAULT_MAX_ROWS:,}; undelivered ones beyond twice this go "
                            f"too, counted as lost)")
    log = parser.add_argument_group("terminal")
    log.add_argument("--quiet", action="store_true",
                     help="no line per prediction (sound event starts and ends are still "
                          "logged)")
    log.add_argument("-v", "--verbose", action="store_true", help="log more")


def _add_devicehive_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported here, not at the top: it brings numpy, and the module's own import is the
    # one moment a Ctrl-C cannot be turned into a quiet exit (run_script is not running).
    from audio.sinks.devicehive import DEFAULT_NOTIFICATION_NAME, DEFAULT_QUEUE_SIZE

    dh = parser.add_argument_group("DeviceHive (flags override the saved configuration "
                                   "for this run)")
    dh.add_argument("--dh_url", metavar="URL",
                    help="server: ws(s)://host/api/websocket or http(s)://host/api/rest")
    dh.add_argument("--dh_refresh_token", metavar="TOKEN",
                    help="or env AUDIO_ANALYSIS_DH_REFRESH_TOKEN, which ps does not show")
    dh.add_argument("--dh_access_token", metavar="TOKEN",
                    help="or env AUDIO_ANALYSIS_DH_ACCESS_TOKEN")
    dh.add_argument("--dh_login", metavar="LOGIN")
    dh.add_argument("--dh_password", metavar="PASSWORD")
    dh.add_argument("--dh_device_id", metavar="ID", help="letters, digits and dashes")
    dh.add_argument("--dh_notification", metavar="NAME", default=None,
                    help=f"notification name (default {DEFAULT_NOTIFICATION_NAME})")
    dh.add_argument("--dh_legacy_format", action="store_true",
                    help="send what the original sent: the JSON list of [label, score] as "
                         "the notification name, no parameters")
    dh.add_argument("--dh_queue_size", type=int, default=DEFAULT_QUEUE_SIZE, metavar="N",
                    help="no longer used: the backlog is kept in the event store (see "
                         "--max_rows); accepted so that existing command lines still work")


class StartError(UsageError):
    """A reason not to start, reported in one line, with the exit code it calls for (the
    daemon has always answered 2 for anything found wrong before it starts, its model
    files included, and 1 for a missing microphone)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"daemon.py: error: {message}", file=sys.stderr)
    return code


def _check_microphone(device: str | None) -> None:
    """Raise ``StartError`` unless the microphone can be opened.

    Done before anything is announced or loaded: a machine without sound (a server, a
    container) learns at once that ``--source`` is the way, and that works even when the
    model files are missing.
    """
    from audio.sources import DeviceNotFoundError, SourceError, check_input_device

    try:
        check_input_device(device)
    except DeviceNotFoundError as error:
        raise StartError(str(error)) from None
    except SourceError as error:
        raise StartError(f"no usable microphone ({error}); give --source FILE|DIR to "
                         f"classify audio files instead, or start PulseAudio/PipeWire",
                         EXIT_NO_MICROPHONE) from None


def _check_readable(sources: list[Path]) -> None:
    """Raise ``StartError`` unless some ``--source`` file opens as audio: a folder of
    nothing readable is one line and exit 2, before the web interface starts, with or
    without ``--once``."""
    from audio.sources import SourceError, require_readable_audio

    try:
        require_readable_audio(sources)
    except SourceError as error:
        raise StartError(str(error)) from None


def _checked_inputs(args: argparse.Namespace) -> tuple[Settings, list[Path]]:
    """The settings and the ``--source`` paths, once the flags and the audio input are
    known to be usable (``StartError`` otherwise): checked before anything starts."""
    if not 0 <= args.port <= 65535:
        raise StartError(f"--port must be in 0..65535, got {args.port}")
    if args.dh_queue_size < 1:
        raise StartError("--dh_queue_size must be at least 1")
    if args.once and not args.source:
        raise StartError("--once needs --source")
    try:
        settings = Settings.from_args(args)
    except SettingsError as error:
        raise StartError(str(error)) from None
    sources = [Path(p).expanduser() for p in args.source or []]
    for path in sources:
        if not path.exists():
            raise StartError(f"--source {path}: no such file or directory")
    if sources:
        _check_readable(sources)
    else:
        _check_microphone(args.device)
    return settings, sources


def _open_store(args: argparse.Namespace) -> Any:
    """The event store, open (``StartError`` in one line: another daemon holds the file,
    it is not writable, damaged, or the retention flags are wrong)."""
    from audio.store import Retention, Store, StoreError

    try:
        retention = Retention(days=args.retention_days, max_rows=args.max_rows)
    except StoreError as error:
        raise StartError(f"--retention_days/--max_rows: {error}") from None
    try:
        return Store(args.db, retention=retention)
    except StoreError as error:
        raise StartError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("daemon").setLevel(logging.INFO)
    apply_native_output_defaults(args.verbose)
    if args.set_password:
        from web.launch import set_password

        return set_password(args)
    try:
        settings, sources = _checked_inputs(args)
        db = _open_store(args)
    except StartError as error:
        return _fail(str(error), error.code)
    try:
        return _serve(args, settings, sources, db)
    finally:
        db.close()  # last: the loop, its sinks and the web server are done with it


def _serve(args: argparse.Namespace, settings: Settings, sources: list[Path], db: Any) -> int:
    """Start the web interface and run the loop until stopped (the store is open)."""
    from web.launch import WebStartError, announce, configure, web_auth
    from web.server import WebApp, WebServer, allowed_hosts_for

    try:
        auth = web_auth(args)
        configured = configure(args, db)  # the configuration file, env, flags; the sinks
    except WebStartError as error:
        return _fail(str(error))
    sink, home = configured.devicehive, configured.home

    state: dict[str, Any] = {"loop": None, "phase": "loading models"}

    def on_config(new_config: Any) -> None:
        sink.reconfigure(new_config.devicehive_settings())

    def loop_status() -> dict[str, Any]:
        loop = state["loop"]
        stats = loop.stats() if loop is not None else {}
        return {"state": state["phase"], **stats}

    def capture_status() -> dict[str, Any]:
        if sources:
            return {"kind": "files", "paths": [str(p) for p in sources],
                    "looping": not args.once, "realtime": not args.no_realtime}
        return {"kind": "microphone", "device": args.device}

    app = WebApp(db, on_config=on_config, **configured.web_options(),
                 status_sources={"loop": loop_status, "capture": capture_status,
                                 "devicehive": sink.status, **home.status_sources(),
                                 "listening": lambda: {"state": state["phase"],
                                                       "sounds": state.get("sounds")}},
                 allowed_hosts=allowed_hosts_for(args.host, args.allowed_host), auth=auth)
    try:
        server = WebServer((args.host, args.port), app)
    except OSError as error:
        sink.close(timeout=0)
        home.close()
        return _fail(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
    server.start()
    announce(args, server.server_address, configured.path)

    try:
        return _run(args, settings, sources, state, sink, db, home)
    finally:
        server.stop()
        home.close()  # done already when the loop ran (it closes its sinks)


def _run(args: argparse.Namespace, settings: Settings, sources: list[Path],
         state: dict[str, Any], sink: Any, db: Any, home: Any) -> int:
    from audio.blocks import DEFAULT_BLOCK_SECONDS
    from audio.downloads import MissingModelFilesError
    from audio.loop import ProcessingLoop
    from audio.pipeline import WavProcessor
    from audio.sinks import LogSink
    from audio.sources import FileStreamSource, MicrophoneSource, SourceError
    from web.home import listened_sounds

    try:
        processor = WavProcessor(settings).load()
    except MissingModelFilesError as error:
        sink.close(timeout=0)
        return _fail(str(error))
    except Exception as error:  # e.g. a corrupt checkpoint: one line, not a traceback
        sink.close(timeout=0)
        return _fail(f"cannot load the models: {error}")
    try:
        events = _event_stream(settings, processor)
        home.set_sounds([s.name for s in events.sounds] if events else [])
        state["sounds"] = listened_sounds(events.sounds if events else ())
        block = DEFAULT_BLOCK_SECONDS if events is not None else None
        if sources:
            source: Any = FileStreamSource(sources, loop=not args.once,
                                           realtime=not args.no_realtime,
                                           window_seconds=settings.min_time,
                                           block_seconds=block)
        else:
            source = MicrophoneSource(settings.min_time, settings.max_time, device=args.device,
                                      block_seconds=block)
    except (ValueError, SourceError, UsageError) as error:
        processor.close()
        sink.close(timeout=0)
        return _fail(str(error))
    log = LogSink(logger, predictions=not args.quiet,  # one line per prediction, as the
                  name_source=bool(sources))  # original, naming the file with --source
    loop = ProcessingLoop(source, processor,
                          [log, _FlushingSink(sink, FLUSH_SECONDS), home],
                          events=events, store=db, detection=home.detection)
    state["loop"] = loop
    state["phase"] = "running"
    try:
        loop.run()  # SIGINT/SIGTERM stop it; the queue is drained, the sinks closed
    finally:
        state["phase"] = "stopped"
        processor.close()
    if loop.stop_signal == signal.SIGINT:
        return EXIT_INTERRUPTED
    error = loop.stats().get("source_error")
    if error:
        print(f"daemon.py: error: audio source failed: {error}", file=sys.stderr)
        return 1
    return 0


def _event_stream(settings: Settings, processor: Any) -> Any:
    """The loop's ``EventStream``, or None without ``--events``/``--listen``; raises
    ``UsageError`` for an unknown sound or a bad groups file."""
    from audio.eventstream import EventStream
    from audio.sounds import configured_sounds, warn_weak_sounds

    sounds = configured_sounds(settings, processor.labels, processor.backend.class_thresholds)
    if sounds is None:
        return None
    warn_weak_sounds(settings, sounds, processor.backend, logger)
    logger.info("following %d sound%s", len(sounds), "" if len(sounds) == 1 else "s")
    return EventStream(processor.backend, sounds)


class _FlushingSink:
    """Closes the DeviceHive sink with a delivery grace period (the loop calls close())."""

    def __init__(self, sink: Any, grace: float) -> None:
        self._sink = sink
        self._grace = grace

    def handle(self, event: Any) -> None:
        self._sink.handle(event)

    def handle_sound(self, record: Any) -> None:
        self._sink.handle_sound(record)

    def close(self) -> None:
        if not self._sink.flush(self._grace):
            status = self._sink.status()
            logger.warning("DeviceHive: %d notifications not delivered at exit%s",
                           status["queued"], " (kept in the event store: sent after the "
                           "next start)" if status.get("outbox") else "")
        self._sink.close(timeout=0)


if __name__ == "__main__":
    run_script(main)  # Ctrl-C at any moment: exit 130, no traceback

"""The one processing loop: source → bounded queue → pipeline → sinks.

Used by ``capture.py`` (microphone, log and wav sinks) and ``daemon.py`` (microphone or
files, web/DeviceHive/MQTT sinks). The original copied a loop between its two scripts
and busy-waited on a shared buffer with ``time.sleep(0.01)``; here:

* the source runs on its own thread and puts ``AudioWindow``s in a bounded queue;
* the loop blocks on ``queue.get()`` (no polling); a sentinel put by the source thread
  when it ends (exhausted, failed, or stopped) ends the loop after the windows already
  queued have been processed (the queue is drained, not dropped);
* a real-time source (microphone) never blocks on a full queue: the oldest queued
  window is dropped and counted (``dropped``), so capture never stalls; a file source
  blocks instead (back-pressure, nothing is lost);
* before blocking on an empty queue the loop calls ``source.request_window()``: the
  microphone source uses it to hand over a window as soon as ``min_time`` seconds are
  buffered (and otherwise waits up to ``max_time``), the original's behaviour;
* an exception in the pipeline or in one sink is logged and counted (``errors``), and
  the loop goes on with the other sinks and the next window;
* ``run()`` on the main thread turns SIGINT/SIGTERM into ``stop()`` for its duration,
  and records which one stopped it (``stop_signal``): the scripts exit with 130 after a
  Ctrl-C, as a shell expects, but with 0 after a service manager's SIGTERM.

Sound events. With ``events`` (an ``audio.eventstream.EventStream``), every piece of audio
is also pushed into the event stream as soon as it is dequeued, and each ``start``,
``update`` and ``end`` record goes to every sink's ``handle_sound``, in order, on the
loop's thread, before the window that holds the audio is classified. For that to be
quick, a source in block mode (``block_seconds`` set: ``MicrophoneSource`` and
``FileStreamSource`` take it) hands over short blocks instead of whole windows; the loop
joins them back into the source's windows for the predictions (``audio.blocks``), so the
windows classified are the ones the source would have handed over whole. At the end of
the stream the event stream is closed and its last ``end`` records are delivered before
the sinks are closed.

Pausing detection. With ``detection`` (an ``audio.control.DetectionSwitch``, set by the
MQTT sink's ``detect/set`` or the web page), nothing is pushed into the event stream while
the switch is off: the first piece after it went off closes the stream (the active events
end there, their ``end`` records delivered as usual) and no event starts until it is on
again, when a new segment begins with the next piece. Windows are still classified.

The event store. With ``store`` (an ``audio.store.Store``: the daemon's), every window and
every sound event record is committed to the store before any sink sees it, and its id is
the store's seq, monotonic across restarts (``audio.commit`` says how windows' and sound
events' ids are given). A record that cannot be committed yet (a full disk, a lock held
by another program) reaches no sink until it is: it waits in order in ``audio.commit``'s
bounded queue, retried at least once a second even when no audio comes
(``store_queued``); one that never can be is counted (``store_errors``), and no event is
ever left with a start and no end. Network sinks deliver from the store, not from
what the loop hands them; the loop closes the sinks but never the store, which belongs
to its caller and must outlive them.

``stats()`` returns counters for the daemon's ``/api/status``.
"""

from __future__ import annotations

import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from audio.blocks import AudioWindow, WindowAssembler
from audio.commit import RETRY_SECONDS, Committer
from audio.control import DetectionSwitch
from audio.events import Event, Prediction, Sink, SoundEvent
from audio.settings import DEFAULT_MAX_TIME
from audio.store import Store

__all__ = ["DEFAULT_QUEUE_SIZE", "AudioWindow", "ProcessingLoop", "Processor", "Source"]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 4
"""Windows queued before a real-time source's oldest is dropped. A source in block mode
gets as many blocks as make this many windows of ``DEFAULT_MAX_TIME`` seconds."""


@runtime_checkable
class Source(Protocol):
    """Produces windows on the loop's source thread.

    ``realtime``: True when audio keeps coming whether or not it is consumed
    (microphone), so the loop must never block it. ``windows(stop)`` yields windows until
    exhausted or ``stop`` is set; ``request_window()`` is called by the loop (from its
    own thread) when it is idle; ``close()`` (from any thread) must make a blocked
    ``windows`` return promptly. A source may also have ``block_seconds`` (not None: it
    hands over blocks of about that length, ``AudioWindow.ends_window`` marking the
    block that completes a window).
    """

    name: str
    realtime: bool

    def windows(self, stop: threading.Event) -> Iterator[AudioWindow]: ...

    def request_window(self) -> None: ...

    def close(self) -> None: ...


class Processor(Protocol):
    def predict(self, waveform: np.ndarray, sample_rate: int) -> Sequence[Prediction]: ...


class SoundEvents(Protocol):
    """What the loop needs of ``audio.eventstream.EventStream``."""

    def push(self, audio: np.ndarray, start: float, *, timestamp: float | None = None,
             source: str = "") -> list[SoundEvent]: ...

    def close(self) -> list[SoundEvent]: ...


_SENTINEL = object()
_SOUND_COUNTERS = {"start": "sound_events_started", "end": "sound_events_ended"}


class ProcessingLoop:
    """Runs ``source`` → queue → ``processor.predict`` → every sink, until stopped.

    Args:
      source: where windows come from (``audio.sources``).
      processor: anything with ``predict(waveform, sample_rate)`` (``WavProcessor``).
      sinks: receive every ``Event`` and ``SoundEvent`` in order, on the loop's thread.
      queue_size: bound of the window queue (in windows; see ``DEFAULT_QUEUE_SIZE``).
      events: follow sound events in the audio (``audio.eventstream.EventStream``).
      store: commit every window and record here before the sinks see it (the ids are
        then the store's; see the module's docstring). Not closed by the loop.
      detection: follow sound events only while this switch is on (module docstring).
    """

    def __init__(self, source: Source, processor: Processor, sinks: Sequence[Sink] = (),
                 queue_size: int = DEFAULT_QUEUE_SIZE, events: SoundEvents | None = None,
                 store: Store | None = None, detection: DetectionSwitch | None = None
                 ) -> None:
        self.source = source
        self.processor = processor
        self.events = events
        self.detection = detection
        self._paused = False
        """The loop thread's view: the event stream was closed because detection is off."""
        self._commit = Committer(store)
        self._sinks: list[Sink] = list(sinks)
        block = getattr(source, "block_seconds", None)
        self._blocks = block is not None
        if self._blocks:
            queue_size = math.ceil(max(1, queue_size) * DEFAULT_MAX_TIME / block)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._assembler = WindowAssembler()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._source_thread: threading.Thread | None = None
        self._run_thread: threading.Thread | None = None
        self._counters = {"windows_received": 0, "windows_processed": 0,
                          "windows_dropped": 0, "windows_cut_short": 0,
                          "blocks_received": 0, "blocks_dropped": 0,
                          "errors": 0, "sink_errors": 0,
                          "sound_records": 0,
                          "sound_events_started": 0, "sound_events_ended": 0}
        self._started_at: float | None = None
        self._last_event: Event | None = None
        self._last_latency: float | None = None
        self._max_latency: float | None = None
        self._source_error: str | None = None
        self._stop_signal: int | None = None

    # -- public API -----------------------------------------------------------------------
    def add_sink(self, sink: Sink) -> None:
        """Add a sink (before ``run``/``start``; the list is read on the loop's thread)."""
        self._sinks.append(sink)

    def run(self) -> None:
        """Run on this thread until the source ends or ``stop()``; closes the sinks.

        On the main thread, SIGINT and SIGTERM call ``stop()`` while it runs.
        """
        previous = self._install_signal_handlers()
        try:
            self._deliver(self._commit.close_unfinished())  # what an earlier run left open
            self._start_source()
            self._consume()
        finally:
            self._restore_signal_handlers(previous)
            self.stop()
            if self._source_thread is not None:
                self._source_thread.join()
            self._finish_stream()
            for sink in self._sinks:
                try:
                    sink.close()
                except Exception:
                    logger.exception("closing sink %r failed", sink)
            self._finished.set()

    def start(self) -> threading.Thread:
        """Run the loop on a background thread (the daemon's way); returns the thread."""
        thread = threading.Thread(target=self.run, name="processing-loop", daemon=True)
        self._run_thread = thread
        thread.start()
        return thread

    def stop(self) -> None:
        """Ask the source to stop; the loop then drains the queue and returns. Any thread."""
        if not self._stop.is_set():
            logger.debug("stopping the processing loop")
            self._stop.set()
            try:
                self.source.close()
            except Exception:
                logger.exception("closing source %s failed", self.source.name)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop to finish; True when it has."""
        return self._finished.wait(timeout)

    @property
    def stop_signal(self) -> int | None:
        """The signal (``signal.SIGINT``/``SIGTERM``) that stopped ``run()``, if one did."""
        return self._stop_signal

    @property
    def running(self) -> bool:
        return self._started_at is not None and not self._finished.is_set()

    def stats(self) -> dict[str, Any]:
        """Counters and state, JSON-ready (for ``/api/status``)."""
        with self._lock:
            stats: dict[str, Any] = {**self._counters, **self._commit.stats()}
            stats["errors"] += stats["store_errors"]
            last = self._last_event
            stats.update({
                "source": self.source.name,
                "running": self.running,
                "events": self.events is not None,
                "detecting": self.events is not None and not self._paused,
                "store": self._commit.store is not None,
                "started_at": self._started_at,
                "queue_size": self._queue.qsize(),
                "last_event_id": last.id if last else None,
                "last_event_time": last.timestamp if last else None,
                "last_latency_s": self._last_latency,
                "max_latency_s": self._max_latency,
                "source_error": self._source_error,
            })
        return stats

    # -- internals ------------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def _start_source(self) -> None:
        self._started_at = time.time()
        self._source_thread = threading.Thread(target=self._produce, name="audio-source",
                                               daemon=True)
        self._source_thread.start()

    def _produce(self) -> None:
        try:
            received = "blocks_received" if self._blocks else "windows_received"
            for window in self.source.windows(self._stop):
                self._count(received)
                if self.source.realtime:
                    self._put_dropping_oldest(window)
                else:
                    self._queue.put(window)  # Back-pressure; the consumer always drains.
                if self._stop.is_set():
                    break
        except Exception as exc:
            logger.exception("audio source %s failed", self.source.name)
            with self._lock:
                self._counters["errors"] += 1
                self._source_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._queue.put(_SENTINEL)

    def _put_dropping_oldest(self, window: AudioWindow) -> None:
        while True:
            try:
                self._queue.put_nowait(window)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if dropped is _SENTINEL:  # Never happens (only this thread puts it).
                    self._queue.put_nowait(dropped)
                    return
                self._count("blocks_dropped" if self._blocks else "windows_dropped")
                logger.warning("processing falls behind: dropped the %s %.2f-%.2f s",
                               "block" if self._blocks else "window", dropped.start,
                               dropped.end)

    def _consume(self) -> None:
        while True:
            if self._queue.empty() and not self._stop.is_set():
                self.source.request_window()
            try:  # with records waiting for the store, retry even when no audio comes
                item = self._queue.get(timeout=RETRY_SECONDS if self._commit.waiting else None)
            except queue.Empty:
                self._deliver(self._commit.retry())
                continue
            if item is _SENTINEL:
                return
            self._process(item)

    def _process(self, piece: AudioWindow) -> None:
        """A window, or a block: events first (at once), then the windows it completes."""
        if self._commit.waiting:
            self._deliver(self._commit.retry())
        if self.events is not None:
            if self.detection is None or self.detection.on:
                self._paused = False
                self._follow(self.events, piece)
            elif not self._paused:
                self._paused = True
                self._deliver_sounds(self._closed_events(self.events))
        windows = self._assembler.add(piece)
        if self._blocks:
            self._count("windows_received", len(windows))
        for window in windows:
            self._classify(window)

    def _finish_stream(self) -> None:
        """End of the stream: the window cut short, then the events' last records."""
        try:
            for window in self._assembler.flush():
                self._classify(window)
            if self.events is not None:
                self._deliver_sounds(self.events.close())
        except Exception:
            logger.exception("finishing the stream failed")
            self._count("errors")
        self._deliver(self._commit.finish())  # one last try for what waits for the store
        # Not "dropped": nothing fell behind; a window cut by a gap or by the end of the
        # stream was too short to classify (the gap's blocks are counted as dropped).
        self._count("windows_cut_short", self._assembler.cut_dropped)

    def _closed_events(self, events: SoundEvents) -> list[SoundEvent]:
        """Detection paused: the active events end where they were last heard."""
        try:
            return events.close()
        except Exception:
            logger.exception("ending the sound events when detection was paused failed")
            self._count("errors")
            return []

    def _follow(self, events: SoundEvents, piece: AudioWindow) -> None:
        try:
            records = events.push(piece.audio, piece.start, timestamp=piece.timestamp,
                                       source=piece.source)
        except Exception:
            logger.exception("following sound events in %.2f-%.2f s of %s failed",
                             piece.start, piece.end, piece.source)
            self._count("errors")
            return
        self._deliver_sounds(records)

    def _deliver_sounds(self, records: Sequence[SoundEvent]) -> None:
        for detected in records:
            self._deliver(self._commit.commit(detected))

    def _deliver(self, committed: Sequence[Event | SoundEvent]) -> None:
        """Hand what has been committed (or numbered, without a store) to the sinks."""
        for item in committed:
            if isinstance(item, Event):
                self._hand_window(item)
            else:
                self._hand_sound(item)

    def _hand_sound(self, record: SoundEvent) -> None:
        counter = _SOUND_COUNTERS.get(record.kind)
        with self._lock:
            self._counters["sound_records"] += 1
            if counter is not None:
                self._counters[counter] += 1
        for sink in self._sinks:
            try:
                sink.handle_sound(record)
            except Exception:
                logger.exception("sink %s failed on the %s of sound event %d",
                                 type(sink).__name__, record.kind, record.id)
                with self._lock:
                    self._counters["errors"] += 1
                    self._counters["sink_errors"] += 1

    def _classify(self, window: AudioWindow) -> None:
        try:
            predictions = tuple(self.processor.predict(window.audio, window.sample_rate))
        except Exception:
            logger.exception("classifying window %.2f-%.2f s of %s failed", window.start,
                             window.end, window.source)
            self._count("errors")
            return
        self._deliver(self._commit.commit(Event(
            id=0, timestamp=window.timestamp, start=window.start, end=window.end,
            predictions=predictions, source=window.source, sample_rate=window.sample_rate,
            audio=window.audio)))

    def _hand_window(self, event: Event) -> None:
        latency = time.time() - event.timestamp
        with self._lock:
            self._counters["windows_processed"] += 1
            self._last_event = event
            self._last_latency = latency
            self._max_latency = max(latency, self._max_latency or 0.0)
        for sink in self._sinks:
            try:
                sink.handle(event)
            except Exception:
                logger.exception("sink %s failed on event %d", type(sink).__name__, event.id)
                with self._lock:
                    self._counters["errors"] += 1
                    self._counters["sink_errors"] += 1

    def _install_signal_handlers(self) -> dict[int, Any] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {}

        def handler(signum: int, _frame: object) -> None:
            logger.info("received %s: finishing the queued windows, then exiting",
                        signal.Signals(signum).name)
            if self._stop_signal is None:
                self._stop_signal = signum
            self.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any] | None) -> None:
        if previous:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

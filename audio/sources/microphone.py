"""The microphone as a source: PyAudio capture on its own thread.

``MicrophoneSource`` reproduces the original's capture semantics without its busy-wait:
PyAudio is read on a dedicated thread, 0.1 s at a time, into a ring buffer that holds
``max_time`` seconds. A window is handed over when at least ``min_time`` seconds are
buffered and the loop asks for one (it is idle), or when ``max_time`` seconds are
buffered whatever the loop is doing. So while a window is being classified the next one
keeps recording (nothing is lost), windows are between ``min_time`` and ``max_time``
long, and if classification ever falls behind by more than the loop's queue, the loop
drops whole windows and counts them rather than stalling the microphone.

Block mode (``block_seconds``, for sound events): the same windows are handed over in
blocks of at most ``block_seconds`` as the audio comes, the block that completes a window
marked (``AudioWindow.ends_window``), so that the loop can push each block to the event
detector at once and still classify the windows the rule above makes. Blocks are cut at
the window's ``min_time`` and ``max_time`` marks, so the windows are the same length as
whole windows would be (to a block: a window that the loop's idleness ends after
``min_time`` ends with the first block after the loop asked).

The device is opened at 16 kHz mono int16; when it refuses that rate, at its native
rate, each window then being resampled to 16 kHz with resampy (in block mode, the blocks
are resampled as one stream, ``audio.io.StreamResampler``, so that no block edge shows). PortAudio's start-up and
device-opening chatter (ALSA, JACK) is kept off stderr by ``audio.native`` when the
application asks for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from audio.blocks import AudioWindow
from audio.native import silenced_native_stderr
from audio.settings import DEFAULT_MAX_TIME, DEFAULT_MIN_TIME, MIN_AUDIO_SECONDS
from audio.sources.base import (
    TARGET_RATE,
    DeviceNotFoundError,
    NoInputDeviceError,
    SourceError,
)

logger = logging.getLogger(__name__)

CHUNK_SECONDS = 0.1
CLOSE_TIMEOUT = 3.0


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:  # pragma: no cover - pyaudio is in requirements.txt
        raise SourceError(f"PyAudio is not available ({exc}); install portaudio19-dev and "
                          f"`pip install pyaudio`") from None
    return pyaudio


def _portaudio() -> Any:
    """A started ``pyaudio.PyAudio``: the probe of every host API and device.

    That probe is where ALSA and JACK print their ~100 lines when there is no sound
    card or server, hence the silenced stderr.
    """
    pyaudio = _pyaudio()
    with silenced_native_stderr():
        return pyaudio.PyAudio()


def list_input_devices() -> list[dict[str, Any]]:
    """Input-capable devices: index, name, channels, default rate, and the default flag."""
    pa = _portaudio()
    try:
        try:
            default = int(pa.get_default_input_device_info()["index"])
        except OSError:
            default = None
        devices = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) > 0:
                devices.append({"index": i, "name": str(info["name"]),
                                "channels": int(info["maxInputChannels"]),
                                "default_sample_rate": float(info["defaultSampleRate"]),
                                "default": i == default})
        return devices
    finally:
        pa.terminate()


def check_input_device(device: str | int | None) -> str:
    """The name of the input device ``device`` designates (None: the default one).

    Lets a script reject a bad ``--device`` before it spends seconds loading models.
    Raises ``DeviceNotFoundError`` / ``SourceError``.
    """
    pa = _portaudio()
    try:
        return str(_find_device(pa, device)["name"])
    finally:
        pa.terminate()


def _input_infos(pa: Any) -> list[dict[str, Any]]:
    infos = (dict(pa.get_device_info_by_index(i)) for i in range(pa.get_device_count()))
    return [info for info in infos if int(info.get("maxInputChannels", 0)) > 0]


def _names(infos: list[dict[str, Any]]) -> str:
    return ", ".join(f"{info['index']}: {info['name']}" for info in infos)


def _find_device(pa: Any, device: str | int | None) -> dict[str, Any]:
    """The device info ``device`` designates; messages name the inputs there are.

    They name no flag: each script adds the way out it offers (``--list_devices``,
    ``--source``).
    """
    inputs = _input_infos(pa)
    if device is None:
        try:
            return dict(pa.get_default_input_device_info())
        except OSError:
            raise NoInputDeviceError(f"no default input device (inputs: {_names(inputs)})"
                                     if inputs else "no input device") from None
    text = str(device).strip()
    if text.isdigit():
        for info in inputs:
            if int(info["index"]) == int(text):
                return info
    candidates = [info for info in inputs if text.casefold() in str(info["name"]).casefold()]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise DeviceNotFoundError(f"input device {text!r} is ambiguous ({_names(candidates)})")
    known = f"inputs: {_names(inputs)}" if inputs else "there is no input device"
    raise DeviceNotFoundError(f"no input device {text!r} ({known})")


class _RingBuffer:
    """Fixed-capacity sample buffer; writing past capacity overwrites the oldest samples."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, dtype=np.int16)
        self._start = 0
        self.size = 0

    def write(self, samples: np.ndarray) -> int:
        """Append; returns how many old samples were overwritten."""
        capacity = self._data.shape[0]
        samples = samples[-capacity:]
        n = samples.shape[0]
        end = (self._start + self.size) % capacity
        first = min(n, capacity - end)
        self._data[end:end + first] = samples[:first]
        self._data[:n - first] = samples[first:]
        overwritten = max(0, self.size + n - capacity)
        self.size = min(capacity, self.size + n)
        self._start = (self._start + overwritten) % capacity
        return overwritten

    def take(self, count: int | None = None) -> np.ndarray:
        """The oldest ``count`` samples (default: everything buffered), removed."""
        count = self.size if count is None else min(count, self.size)
        idx = (self._start + np.arange(count)) % self._data.shape[0]
        out = self._data[idx]
        self.size -= count
        self._start = 0 if self.size == 0 else (self._start + count) % self._data.shape[0]
        return out


class MicrophoneSource:
    """PyAudio capture on its own thread; windows of ``min_time``..``max_time`` seconds,
    whole or (``block_seconds``) in blocks."""

    realtime = True

    def __init__(self, min_time: float = DEFAULT_MIN_TIME, max_time: float = DEFAULT_MAX_TIME,
                 device: str | int | None = None, chunk_seconds: float = CHUNK_SECONDS,
                 name: str = "microphone", block_seconds: float | None = None) -> None:
        if min_time < MIN_AUDIO_SECONDS or max_time < min_time:
            raise ValueError(f"need {MIN_AUDIO_SECONDS} s ≤ min_time ≤ max_time, got "
                             f"{min_time}, {max_time}")
        if block_seconds is not None and not 0 < block_seconds <= min_time:
            raise ValueError(f"block_seconds must be in (0, min_time], got {block_seconds}")
        self.block_seconds = block_seconds
        self._in_window = 0  # device samples of the current window handed over (blocks)
        self._resampler: Any = None
        self._out_samples = 0  # 16 kHz samples handed over (blocks, resampled device)
        self.name = name
        self.min_time, self.max_time = float(min_time), float(max_time)
        self.device = device
        self.chunk_seconds = chunk_seconds
        self.rate = TARGET_RATE
        self.device_name = ""
        self._cond = threading.Condition()
        self._requested = False
        self._closed = False
        self._ring: _RingBuffer | None = None
        self._captured = 0  # samples captured since open (window positions)
        self._last_chunk_time = 0.0
        self._pa: Any = None
        self._stream: Any = None
        self._continue = 0
        self._overflow_flag = 0

    # -- device -------------------------------------------------------------------------
    def open(self) -> None:
        """Open the device and start recording (``windows`` does it when not done).

        PortAudio's callback mode is used: PortAudio calls ``_on_audio`` on its own
        thread with every 0.1 s chunk, so recording never waits for the loop, and closing
        never blocks on a read that a silent device would never complete.
        """
        if self._stream is not None:
            return
        pyaudio = _pyaudio()
        pa = _portaudio()
        try:
            info = _find_device(pa, self.device)
            index = int(info["index"])
            stream = None
            for rate in (TARGET_RATE, round(float(info["defaultSampleRate"]))):
                self.rate = rate
                self._ring = _RingBuffer(round(self.max_time * rate))
                try:
                    with silenced_native_stderr():  # ALSA complains about refused rates
                        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=rate,
                                         input=True, input_device_index=index,
                                         frames_per_buffer=int(rate * self.chunk_seconds),
                                         stream_callback=self._on_audio, start=False)
                    break
                except (OSError, ValueError) as exc:
                    logger.info("device %s refuses %d Hz mono int16 (%s)", info["name"], rate,
                                exc)
            if stream is None:
                raise SourceError(f"cannot open input device {info['name']!r} at "
                                  f"{TARGET_RATE} Hz or its native rate")
            stream.start_stream()
        except BaseException:
            pa.terminate()
            raise
        self.device_name = str(info["name"])
        self._pa, self._stream = pa, stream
        self._continue = pyaudio.paContinue
        self._overflow_flag = pyaudio.paInputOverflow
        logger.info("recording from %r (device %d) at %d Hz%s", self.device_name, index,
                    self.rate, "" if self.rate == TARGET_RATE else " (resampled to 16 kHz)")

    def _on_audio(self, data: bytes | None, frame_count: int, _time_info: object,
                  status: int) -> tuple[None, int]:
        """PortAudio's callback (its thread): append the chunk to the ring buffer."""
        now = time.time()
        if status & self._overflow_flag:
            logger.warning("input overflow reported by the audio device")
        samples = np.frombuffer(data or b"", dtype="<i2")
        ring = self._ring
        with self._cond:
            if ring is not None and samples.shape[0]:
                overwritten = ring.write(samples)
                if overwritten:
                    logger.warning("capture buffer full: %d samples (%.2f s) dropped",
                                   overwritten, overwritten / self.rate)
                self._captured += samples.shape[0]
                self._last_chunk_time = now
                self._cond.notify_all()
        return None, self._continue

    def _close_device(self) -> None:
        """Close the stream and PortAudio, waiting at most ``CLOSE_TIMEOUT`` seconds.

        PortAudio waits for the device's pending buffer when stopping; a source that has
        gone silent (a PulseAudio pipe source nobody writes to, a stalled USB device)
        would make that wait forever, so it happens on a helper thread.
        """
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        if stream is None and pa is None:
            return

        def close() -> None:
            try:
                if stream is not None:
                    stream.close()  # Pa_CloseStream: aborts an active stream
            except OSError as exc:
                logger.warning("closing the input stream: %s", exc)
            finally:
                if pa is not None:
                    pa.terminate()

        closer = threading.Thread(target=close, name="microphone-close", daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT)
        if closer.is_alive():
            logger.warning("the audio device did not close within %.0f s; leaving it",
                           CLOSE_TIMEOUT)

    # -- Source protocol ----------------------------------------------------------------
    def request_window(self) -> None:
        with self._cond:
            self._requested = True
            self._cond.notify_all()

    def _block_size(self) -> int:
        """Device samples of the next block: ``block_seconds``, or less to stop at the
        window's ``min_time`` or ``max_time`` mark."""
        low, high = round(self.min_time * self.rate), round(self.max_time * self.rate)
        mark = low if self._in_window < low else high
        return max(1, min(round(self.block_seconds * self.rate),  # type: ignore[operator]
                          mark - self._in_window))

    def _ready(self, ring: _RingBuffer) -> bool:
        if self.block_seconds is not None:
            return ring.size >= self._block_size()
        buffered = ring.size / self.rate
        return buffered >= self.max_time or (self._requested and buffered >= self.min_time)

    def _take(self, ring: _RingBuffer) -> tuple[int, np.ndarray, float, bool]:
        """(first sample, samples, wall-clock time of the last one, ends a window); with
        ``_cond`` held."""
        start = self._captured - ring.size
        if self.block_seconds is None:
            samples, ends = ring.take(), True
        else:
            samples = ring.take(self._block_size())
            self._in_window += samples.shape[0]
            ends = self._in_window >= round(self.max_time * self.rate) or (
                self._requested and self._in_window >= round(self.min_time * self.rate))
            if ends:
                self._in_window = 0
        self._requested = False
        timestamp = self._last_chunk_time - ring.size / self.rate  # the rest came later
        return start, samples, timestamp, ends

    def _piece(self, start: int, samples: np.ndarray, timestamp: float,
               ends: bool) -> AudioWindow:
        """The samples as 16 kHz float32 audio, timed in seconds from the first sample."""
        audio = samples.astype(np.float32) / np.float32(32768.0)
        begin, end = start / self.rate, (start + samples.shape[0]) / self.rate
        if self.rate != TARGET_RATE and self.block_seconds is None:
            import resampy

            audio = resampy.resample(audio, self.rate, TARGET_RATE).astype(np.float32)
        elif self.rate != TARGET_RATE:
            if self._resampler is None:
                from audio.io import StreamResampler

                self._resampler = StreamResampler(self.rate, TARGET_RATE)
            audio = self._resampler.process(audio).astype(np.float32)
            begin = self._out_samples / TARGET_RATE
            self._out_samples += audio.shape[0]
            end = self._out_samples / TARGET_RATE
        return AudioWindow(audio=audio, sample_rate=TARGET_RATE, start=begin, end=end,
                           timestamp=timestamp, source=self.name, ends_window=ends)

    def windows(self, stop: threading.Event) -> Iterator[AudioWindow]:
        self.open()
        ring = self._ring
        if ring is None:
            raise SourceError("the microphone is not open")
        try:
            while True:
                with self._cond:
                    while not (self._closed or stop.is_set() or self._ready(ring)):
                        self._cond.wait()
                    if self._closed or stop.is_set():
                        return
                    taken = self._take(ring)
                yield self._piece(*taken)
        finally:
            self.close()
            self._close_device()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

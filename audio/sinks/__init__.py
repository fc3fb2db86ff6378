"""Sinks of the processing loop: a log line per window, a wav file per window or per sound
event, a callback.

Sinks receive ``audio.events.Event``s (windows) and ``audio.events.SoundEvent``s (sound
event records) on the loop's thread (``audio.events.Sink``).
The network sink for DeviceHive lives in ``audio.sinks.devicehive``; it is not imported
here, so ``capture.py`` does not load it. The web page's event store lives with the
daemon's web layer (``web.store``). All follow the same protocol.
"""

from __future__ import annotations

from audio.sinks.callback import CallbackSink
from audio.sinks.eventaudio import EventAudioSink
from audio.sinks.log import LogSink
from audio.sinks.wav import SaveDirectoryError, WavSaverSink, check_save_directory

__all__ = ["CallbackSink", "EventAudioSink", "LogSink", "SaveDirectoryError", "WavSaverSink",
           "check_save_directory"]

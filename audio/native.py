"""Keeping native libraries' chatter off the terminal.

PortAudio (through ALSA and JACK), LiteRT and TensorFlow write diagnostics straight to
file descriptor 2 from C and C++, where no Python setting reaches them: on a machine
without sound hardware every ``pyaudio.PyAudio()`` prints about 100 lines of ALSA
"cannot find card" and JACK "server is not running"; the first LiteRT interpreter prints
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (``TF_CPP_MIN_LOG_LEVEL`` does
not silence it); importing TensorFlow 2.21 prints absl lines (oneDNN, CUDA drivers, CPU
features) before ``TF_CPP_MIN_LOG_LEVEL`` takes effect.

``silenced_native_stderr()`` points fd 2 at ``/dev/null`` around the calls that print
them. Python's own writers of fd 2 (``sys.stderr`` and the logging handlers that write to
it) are moved to a duplicate of the real fd 2 for that time, so that a warning logged or
an error printed meanwhile, by this thread or another, still reaches the terminal.

Whether to silence is the application's decision, read from ``$AUDIO_ANALYSIS_QUIET_NATIVE``
(``1``: silence; the entry scripts set it unless ``-v``, see
``audio.settings.apply_native_output_defaults``). Unset, the context manager does nothing:
a library user, or a ``-v`` run diagnosing a sound problem, sees everything.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from vggish.environment import QUIET_NATIVE_ENV, env_value

_FD2_LOCK = threading.RLock()
"""fd 2 is one per process: windows opened by several threads must nest, never
interleave (an interleaved restore would leave fd 2 on /dev/null for good). Reentrant,
so that a window opened inside another on the same thread nests."""


def quiet_native_output() -> bool:
    """True when the application asked for native stderr chatter to be silenced."""
    return env_value(QUIET_NATIVE_ENV) == "1"


@contextmanager
def silenced_native_stderr() -> Iterator[None]:
    """Send what native code writes to fd 2 to /dev/null for the ``with`` block.

    A no-op unless ``quiet_native_output()``. Keep the block short: native messages from
    other threads are lost while it lasts (Python's are not).
    """
    if not quiet_native_output():
        yield
        return
    with _FD2_LOCK:
        _flush(sys.stderr)
        saved = _dup_or_none(2)
        if saved is None:  # no fd 2 (a daemon started with it closed): nothing to silence
            yield
            return
        try:
            _point_fd2_at_devnull()
            with _python_stderr_on(saved):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _dup_or_none(fd: int) -> int | None:
    try:
        return os.dup(fd)
    except OSError:
        return None


def _point_fd2_at_devnull() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
    finally:
        os.close(devnull)


def _writes_fd2(stream: Any) -> bool:
    try:
        return stream is not None and stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _stream_handlers() -> list[logging.Handler]:
    """Every handler attached to a logger (the root included), each once."""
    loggers: list[Any] = [logging.getLogger()]
    loggers += [lg for lg in list(logging.Logger.manager.loggerDict.values())
                if isinstance(lg, logging.Logger)]
    handlers: dict[int, logging.Handler] = {}
    for lg in loggers:
        for handler in list(lg.handlers):
            handlers[id(handler)] = handler
    return list(handlers.values())


@contextmanager
def _python_stderr_on(fd: int) -> Iterator[None]:
    """Point ``sys.stderr`` and the logging handlers that write to fd 2 at ``fd``."""
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    stream: TextIO = open(fd, "w", buffering=1, encoding=encoding,
                          errors="backslashreplace", closefd=False)
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in _stream_handlers():
        if isinstance(handler, logging.StreamHandler) and _writes_fd2(handler.stream):
            moved.append((handler, handler.setStream(stream)))
    previous_stderr = sys.stderr
    if _writes_fd2(previous_stderr):
        sys.stderr = stream
    try:
        yield
    finally:
        if sys.stderr is stream:
            sys.stderr = previous_stderr
        for handler, old in moved:
            if old is not None and handler.stream is stream:
                handler.setStream(old)
        _flush(stream)
        stream.close()

"""The ``audio-analysis`` console script: one entry point for the project's commands.

    audio-analysis parse-file FILE [FILE...] [options]   (= python parse_file.py ...)
    audio-analysis capture [options]                     (= python capture.py ...)
    audio-analysis daemon [options]                      (= python daemon.py ...)
    audio-analysis download [GROUP...] [options]         (= python -m audio.models download)
    audio-analysis models list                           (= python -m audio.models list)

Each subcommand hands the rest of the command line to that script's ``main(argv)``, so
flags and exit codes are the scripts' own. Modules are imported only for the command
that runs, keeping ``--help`` instant.

Ctrl-C: every entry point (this one and the scripts' ``__main__`` blocks) runs its
``main`` through ``run_script``, so that a Ctrl-C at any moment (argument parsing,
imports, model loading, shutdown) exits with 130, as shells report a program stopped by
SIGINT, without Python's ``KeyboardInterrupt`` traceback.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from audio.errors import EXIT_INTERRUPTED

"""128 + SIGINT: the exit code of a program stopped by Ctrl-C."""

COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "parse-file": ("parse_file", (), "classify audio files"),
    "capture": ("capture", (), "classify what a microphone hears"),
    "daemon": ("daemon", (), "microphone/file daemon with a web page and DeviceHive"),
    "download": ("audio.models", ("download",), "download the model files"),
    "models": ("audio.models", (), "manage the model files (list, download)"),
    "batch": ("audio.batch.cli", (), "classify and embed large corpora on Apache Beam "
                                     "(pip install .[batch])"),
}
ALIASES = {"parse_file": "parse-file"}


def _usage() -> str:
    lines = ["usage: audio-analysis COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`audio-analysis COMMAND --help` describes a command's options."]
    return "\n".join(lines)


def call_main(main: Callable[[Sequence[str] | None], int | None],
              argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit code; ``EXIT_INTERRUPTED`` when Ctrl-C interrupted it.

    ``KeyboardInterrupt`` is what Python's default SIGINT handler raises wherever the main
    thread is; the ``finally`` blocks on its way out have closed what was open.
    """
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _raise_and_remember(interrupted: threading.Event) -> None:
    """Ctrl-C raises ``KeyboardInterrupt`` as by default, and is remembered.

    Remembered because a ``KeyboardInterrupt`` raised inside a C extension's import
    (TensorFlow's) can come out as another exception, handled as a loading error.
    """

    def handler(_signum: int, _frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def _ignore_ctrl_c() -> None:
    """For the interpreter's own teardown, after the last atexit handler: Python resets
    its handlers to SIG_DFL there (a Ctrl-C would kill the process, not exit 130), but
    leaves SIG_IGN alone."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_at_next_ctrl_c() -> None:
    """From now on, Ctrl-C ends the process at once with 130 and prints nothing.

    For the way out (the return to ``sys.exit``, interpreter shutdown, atexit handlers),
    where a ``KeyboardInterrupt`` would print "Exception ignored" and a traceback.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_interrupted)


def _exit_interrupted(_signum: int, _frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError, RuntimeError):
            pass  # closed, or interrupted in the middle of its own flush
    os._exit(EXIT_INTERRUPTED)


def run_script(main: Callable[[Sequence[str] | None], int | None]) -> NoReturn:
    """Exit with the code of a script's ``main`` run on ``sys.argv``: its ``__main__`` use.

    130 whenever Ctrl-C came while ``main`` ran, whatever became of the
    ``KeyboardInterrupt``; a Ctrl-C on the way out exits 130 at once, or is ignored in
    the interpreter's last steps.
    """
    interrupted = threading.Event()
    _raise_and_remember(interrupted)
    atexit.register(_ignore_ctrl_c)  # registered first, so it runs last
    try:
        code = call_main(main)
    finally:  # also after a SystemExit (argparse's --help and usage errors)
        _exit_at_next_ctrl_c()
    sys.exit(EXIT_INTERRUPTED if interrupted.is_set() else code)


def run() -> NoReturn:
    """The ``audio-analysis`` console script's entry point."""
    run_script(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name = ALIASES.get(args[0], args[0])
    if name not in COMMANDS:
        print(f"audio-analysis: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, prefix, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    return call_main(module.main, [*prefix, *args[1:]])


if __name__ == "__main__":
    run_script(main)

"""The ``audio-analysis`` console script: one entry point for the project's commands.

    audio-analysis parse-file FILE [FILE...] [options]   (= python parse_file.py ...)
    audio-analysis capture [options]                     (= python capture.py ...)
    audio-analysis daemon [options]                      (= python daemon.py ...)
    audio-analysis download [GROUP...] [options]         (= python -m audio.models download)
    audio-analysis models list                           (= python -m audio.models list)

Each subcommand hands the rest of the command line to that script's ``main(argv)``, so
flags and exit codes are the scripts' own. Modules are imported only for the command
that runs, keeping ``--help`` instant.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "parse-file": ("parse_file", (), "classify audio files"),
    "capture": ("capture", (), "classify what a microphone hears"),
    "daemon": ("daemon", (), "microphone/file daemon with a web page and DeviceHive"),
    "download": ("audio.models", ("download",), "download the model files"),
    "models": ("audio.models", (), "manage the model files (list, download)"),
}
ALIASES = {"parse_file": "parse-file"}


def _usage() -> str:
    lines = ["usage: audio-analysis COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`audio-analysis COMMAND --help` describes a command's options."]
    return "\n".join(lines)


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
    return int(module.main([*prefix, *args[1:]]) or 0)


if __name__ == "__main__":
    sys.exit(main())

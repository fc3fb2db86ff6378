"""The application's kinds of error and the one mapping from errors to exit codes.

``AudioAnalysisError`` is the root of every error the project raises on purpose (defined
in ``vggish.errors``, the lowest layer, so that every layer can derive from it). The
scripts catch it once and ask :func:`exit_code` what to return:

====  ===================================================================
0     everything processed
1     a failure of the machine or its files: missing/broken model files, no usable
      audio device, a download that failed, anything unexpected
2     the user's input: a bad file (the other files are still processed), a bad flag
      or setting, an unknown class name or device
3     an output would replace an existing one and ``--force`` was not given
      (``audio.train_custom``: a bundle of that name exists); nothing was written
130   interrupted (Ctrl-C)
141   the output pipe was closed by its reader (``... | head -1``): stopped quietly,
      as a Unix tool killed by SIGPIPE (128 + 13) is reported by the shell
====  ===================================================================
"""

from __future__ import annotations

from vggish.errors import AudioAnalysisError, BadAudioError, ModelFilesError

__all__ = [
    "EXIT_BROKEN_PIPE", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_OUTPUT_EXISTS",
    "EXIT_USAGE",
    "AudioAnalysisError",
    "BadAudioError", "ModelFilesError", "UsageError", "exit_code",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
"""Also a bad input file: the original's scripts and ours have always used 2 for it."""
EXIT_OUTPUT_EXISTS = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(AudioAnalysisError):
    """A flag, setting, name or path the user gave cannot be used (exit 2)."""


def exit_code(error: BaseException) -> int:
    """The exit code a script returns for ``error`` (see the table above)."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, (BadAudioError, UsageError)):
        return EXIT_USAGE
    return EXIT_FAILURE

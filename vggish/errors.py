"""The root of every error the project raises on purpose, and its two broad kinds.

Defined here, in the lowest layer, so that the front end, the classifier bundle and the
application can all derive from it without an import pointing up. The application
(``audio.errors``) adds the rest of the kinds and maps each to an exit code, once.

Each concrete error also keeps the built-in class it always had (``ValueError``,
``FileNotFoundError``, ``RuntimeError``) as a second base, so code that caught those
still does.
"""

from __future__ import annotations


class AudioAnalysisError(Exception):
    """Anything the project reports on purpose: one line a user can act on."""


class ModelFilesError(AudioAnalysisError):
    """Model files are missing, unreadable or do not fit together (the scripts' exit 1)."""


class BadAudioError(AudioAnalysisError):
    """One input cannot be used as audio (the scripts' exit 2; the next input goes on)."""

"""The store's file: where it is, opening it, one daemon per file, and its errors.

One daemon per file
-------------------
A second daemon on the same file would append to the same log and advance the same
cursors: both would deliver, twice. SQLite's own locks cannot say "another daemon has
this file": they are held for one transaction at a time, so a ``BEGIN EXCLUSIVE`` probe
only catches a daemon that happens to be inside a transaction at that instant, and
``PRAGMA locking_mode=EXCLUSIVE`` in WAL mode keeps the wal-index out of shared memory,
which shuts out this process's own reader connections too. So the writer holds an
``flock`` on ``<file>.lock`` for its whole life: the kernel releases it when the process
ends, however it ends (``kill -9`` included), so there is never a stale lock to clean up;
the pid written into the file is only for the message. (``flock`` is unreliable on NFS;
so is SQLite, which must not be used there.)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from vggish.environment import DB_ENV, XDG_STATE_HOME_ENV, env_value
from vggish.errors import AudioAnalysisError

logger = logging.getLogger(__name__)

DB_FILENAME = "events.db"
APP_DIR = "audio-analysis"
BUSY_TIMEOUT_MS = 5000
"""How long a statement waits for another connection's lock (a checkpoint, a reader
opening the WAL) before ``database is locked``."""
SYNCHRONOUS_MODES = ("NORMAL", "FULL")


class StoreError(AudioAnalysisError):
    """The event store cannot be opened, read or written (one line, naming the file)."""


def resolve_db_path(flag: str | os.PathLike[str] | None = None,
                    environ: Mapping[str, str] | None = None) -> Path:
    """The event store's file: ``--db``, else ``$AUDIO_ANALYSIS_DB``, else
    ``$XDG_STATE_HOME/audio-analysis/events.db``, else ``~/.local/state/...``.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG specification requires (it would
    move with the working directory).
    """
    if flag:
        return Path(flag).expanduser()
    configured = env_value(DB_ENV, environ)
    if configured:
        return Path(configured).expanduser()
    state = env_value(XDG_STATE_HOME_ENV, environ)
    base = Path(state) if state and Path(state).is_absolute() else (
        Path.home() / ".local" / "state")
    return base / APP_DIR / DB_FILENAME


def describe(error: BaseException) -> str:
    """The one-line reason of an sqlite3 or OS error."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def store_error(path: Path, action: str, error: BaseException) -> StoreError:
    """A :class:`StoreError` whose message says what failed and, for the known cases, what
    to do."""
    reason = describe(error)
    if "file is not a database" in reason or "malformed" in reason:
        return StoreError(f"event store {path} is damaged or not an SQLite file ({reason}): "
                          f"move it away to start a new one, or pass another --db")
    if "database is locked" in reason or "database is busy" in reason:
        return StoreError(f"event store {path} is locked by another program ({reason}) "
                          f"for over {BUSY_TIMEOUT_MS / 1000:g} s while trying to {action}")
    if "readonly" in reason or "unable to open" in reason or isinstance(error, OSError):
        return StoreError(f"cannot {action} the event store {path}: {reason} "
                          f"(pass a writable --db PATH)")
    return StoreError(f"cannot {action} the event store {path}: {reason}")


class DaemonLock:
    """An exclusive ``flock`` on ``<db>.lock``, held until :meth:`release` or the process's
    end (see the module's docstring)."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise store_error(db_path, "open", error) from error
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = self._holder()
            self.release()
            who = ("this process" if holder == str(os.getpid())
                   else f"another process{f' (pid {holder})' if holder else ''}")
            raise StoreError(f"event store {db_path} is in use by {who}: one daemon per "
                             f"store; stop it or pass another --db") from error
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def _holder(self) -> str:
        with contextlib.suppress(OSError):
            return os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()  # type: ignore[arg-type]
        return ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def prepare_directory(path: Path) -> None:
    """Create the file's directory (0700: the log says what was heard, and when)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (FileExistsError, NotADirectoryError) as error:
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()),
                       path.parent)
        raise StoreError(f"cannot create the directory of the event store {path}: {blocker} "
                         f"is not a directory (pass a writable --db PATH)") from error
    except OSError as error:
        raise store_error(path, "create the directory of", error) from error


FILE_MODE = 0o600
"""The store's files (the log, its ``-wal`` and ``-shm``, the lock): the owner's only."""
SIDE_FILES = ("-wal", "-shm", ".lock")


def secure_files(path: Path) -> None:
    """Create the log file 0600 when it is missing (SQLite gives its ``-wal`` and ``-shm``
    the mode of the file they belong to, so they are 0600 too), and make any of the
    store's files that others can read or write 0600 (an older version made them 0644:
    the log says what was heard, and when)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    except OSError as error:
        raise store_error(path, "open", error) from error
    for file in (path, *(path.with_name(path.name + side) for side in SIDE_FILES)):
        try:
            mode = file.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(file, FILE_MODE)
                logger.info("%s was mode %o, readable by others: now %o", file, mode,
                            FILE_MODE)
        except FileNotFoundError:
            continue
        except OSError as error:
            logger.warning("cannot make %s private (mode %o): %s", file, FILE_MODE,
                           describe(error))


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit ``BEGIN``), WAL journal,
    ``synchronous`` as chosen, usable from any thread (the store serialises its use)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as error:
        raise store_error(path, "open", error) from error
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"event store {path}: the file system refused WAL mode "
                             f"(journal mode {mode}); put it on a local disk")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as error:
        conn.close()
        raise store_error(path, "open", error) from error
    except StoreError:
        conn.close()
        raise
    return conn

"""Model files: the registry, where they live, and a checksum-verified download.

The registry (``audio.model_registry``, re-exported here) lists every downloadable file
with its official URL and the builds it is known in (size and sha256; a file published
in two official builds, as YAMNet's is, is accepted in either). Files are grouped:
``vggish`` (Google's checkpoint and PCA parameters) is what ``download`` with no
arguments fetches.

A download streams into ``<file>.part`` (resumed with an HTTP Range request when a
previous attempt was interrupted; a server that ignores Range is handled by starting
over), is checked against the size and sha256 of the registry's builds, and only then renamed into
place atomically. A corrupted download is deleted, never left where the loaders would
find it. Files already present with the right checksum are skipped.

Paths: ``--dir`` or ``$AUDIO_ANALYSIS_MODELS_DIR`` (see :func:`vggish.files.models_dir`);
``--base-url`` or ``$AUDIO_ANALYSIS_DOWNLOAD_BASE_URL`` replaces the URL's directory
(mirrors, tests). The application finds the files with :func:`resolve_vggish_checkpoint`
and :func:`resolve_pca_params`, and reports absent ones with :func:`require_files`.

Only the standard library is used (urllib), so this module is cheap to import. The
command line (``python -m audio.models download|list``) is ``audio.models``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from audio.errors import AudioAnalysisError, ModelFilesError
from audio.model_registry import DEFAULT_GROUPS as DEFAULT_GROUPS  # re-exported
from audio.model_registry import GROUPS as GROUPS
from audio.model_registry import VGGISH_CHECKPOINT as VGGISH_CHECKPOINT
from audio.model_registry import VGGISH_PCA_PARAMS as VGGISH_PCA_PARAMS
from audio.model_registry import YAMNET_CLASS_MAP as YAMNET_CLASS_MAP
from audio.model_registry import YAMNET_TFLITE as YAMNET_TFLITE
from audio.model_registry import Build, ModelFile
from vggish.environment import DOWNLOAD_BASE_URL_ENV, PCA_PARAMS_ENV, model_file
from vggish.files import resolve_vggish_checkpoint as resolve_vggish_checkpoint  # re-exported

log = logging.getLogger(__name__)

BASE_URL_ENV = DOWNLOAD_BASE_URL_ENV
"""The mirror variable, under the name this module's callers know it by."""

DOWNLOAD_COMMAND = "python -m audio.models download"

CHUNK_SIZE = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
PART_SUFFIX = ".part"




class DownloadError(AudioAnalysisError, RuntimeError):
    """A download failed (network, HTTP, or checksum); the message is one line.

    ``entry`` and ``url`` say which file failed and from where, so that the command line
    can tell the user what to do about that file; both are None for failures that are
    about no single file (an unknown group).
    """

    def __init__(self, message: str, entry: ModelFile | None = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry
        self.url = url


class NetworkError(DownloadError):
    """The file could not be fetched: unreachable or unresolvable host, timeout, lost
    connection, or an HTTP error status.

    Separate from a checksum mismatch because the registry's file is presumably fine here,
    so the ways out differ: retrying later, a mirror, or copying the files in by hand.
    """

    entry: ModelFile

    def __init__(self, message: str, entry: ModelFile, url: str) -> None:
        super().__init__(message, entry, url)


class MissingModelFilesError(ModelFilesError, FileNotFoundError):
    """Model files the command needs are absent; the message says how to fetch them."""

    def __init__(self, missing: Sequence[Path], group: str | None = None) -> None:
        self.missing = tuple(missing)
        command = f"{DOWNLOAD_COMMAND} {group}" if group else DOWNLOAD_COMMAND
        names = ", ".join(str(p) for p in self.missing)
        super().__init__(f"missing model file{'s' if len(self.missing) > 1 else ''}: {names} "
                         f"(run `{command}` to fetch them, or point the command's flags or "
                         f"environment variables at existing copies)")

    def __str__(self) -> str:
        return str(self.args[0])


# --- Path resolution used by the application -----------------------------------------
# resolve_vggish_checkpoint is vggish.files' (``python -m vggish.export`` needs it alone).

def resolve_pca_params(override: str | os.PathLike[str] | None = None) -> Path:
    """Flag > ``$AUDIO_ANALYSIS_PCA_PARAMS`` > ``models_dir()/vggish_pca_params.npz``."""
    return model_file(override, PCA_PARAMS_ENV, VGGISH_PCA_PARAMS.filename)


def require_files(paths: Iterable[str | os.PathLike[str]], group: str | None = None) -> None:
    """Raise :class:`MissingModelFilesError` naming every path that isn't a file.

    ``group`` (e.g. ``"yamnet"``) makes the message name ``download <group>``; without it
    the message names plain ``download`` (the VGGish files).
    """
    missing = [Path(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise MissingModelFilesError(missing, group)


# --- Downloading ----------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_on_disk(path: Path, entry: ModelFile) -> Build | None:
    """The known build of ``entry`` that ``path`` is (None: absent, or no known build).
    The size is compared first, so a wrong-sized file is never hashed."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if not any(b.size == size for b in entry.known_builds):
        return None
    return entry.build_of(size, sha256_of(path))


def is_verified(path: Path, entry: ModelFile) -> bool:
    """True when ``path`` is a file with the size and sha256 of an accepted build."""
    build = build_on_disk(path, entry)
    return build is not None and build.accepted


def presence(path: Path, entry: ModelFile) -> str:
    """What ``models list`` says of ``path``: absent, present and verified (which build,
    when there are several), or present but unverified and why."""
    if not path.is_file():
        return "absent"
    build = build_on_disk(path, entry)
    if build is None:
        size = path.stat().st_size
        wrong = "sha256" if any(b.size == size for b in entry.known_builds) else "size"
        return f"present, unverified: {wrong} mismatch"
    named = f" ({build.origin})" if len(entry.known_builds) > 1 and build.origin else ""
    if not build.accepted:
        return f"present, unverified: a different build{named}, not accepted"
    return f"present, verified{named}"


class ProgressBar:
    """A hand-written one-line progress bar, redrawn in place with carriage returns."""

    WIDTH = 30

    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        self._label = label
        self._total = max(total, 1)
        self._stream = stream
        self._start = time.monotonic()
        self._start_bytes: int | None = None
        self._last_draw = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if self._start_bytes is None:
            self._start_bytes = done
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = min(done / self._total, 1.0)
        filled = int(fraction * self.WIDTH)
        elapsed = max(now - self._start, 1e-6)
        rate = (done - self._start_bytes) / elapsed / 1e6
        self._stream.write(
            f"\r{self._label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{fraction * 100:5.1f}% {done / 1e6:7.1f}/{self._total / 1e6:.1f} MB "
            f"{rate:6.1f} MB/s")
        self._stream.flush()

    def close(self, done: int) -> None:
        self.update(done, force=True)
        self._stream.write("\n")
        self._stream.flush()


def one_line(reason: object) -> str:
    text = str(reason).strip().replace("\n", " ")
    return text or type(reason).__name__


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "audio-analysis"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _copy(response: BinaryIO, stream: BinaryIO, done: int, limit: int,
          on_progress: Callable[[int], None] | None) -> int:
    """Append the body to ``stream``; stop (and report) past ``limit`` bytes."""
    while True:
        chunk = response.read(CHUNK_SIZE)
        if not chunk:
            return done
        done += len(chunk)
        if done > limit:
            raise DownloadError(f"server sent more than the expected {limit} bytes")
        stream.write(chunk)
        if on_progress:
            on_progress(done)


def _transfer(entry: ModelFile, url: str, part: Path, offset: int, timeout: float,
              on_progress: Callable[[int], None] | None) -> int:
    """Stream ``url`` into ``part`` from byte ``offset``; return the bytes ``part`` holds.

    Network trouble propagates as urllib/http.client/socket exceptions, for
    :func:`download_file` to turn into a :class:`NetworkError` (keeping ``part`` to
    resume); a response that can't be the right file raises :class:`DownloadError`.
    """
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        # Range not satisfiable: the partial file is stale; start over.
        part.unlink()
        offset = 0
        response = _open(url, 0, timeout)
    with response:
        status = response.status
        if offset and status == 200:
            log.info("%s: server ignored the Range request; starting over", url)
            offset = 0
        elif offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DownloadError(f"{url}: unexpected Content-Range {content_range!r} "
                                    f"for a resume from byte {offset}", entry, url)
            log.info("%s: resuming at byte %d", url, offset)
        with part.open("ab" if offset else "wb") as stream:
            done = _copy(response, stream, offset, entry.largest_size, on_progress)
            stream.flush()
            os.fsync(stream.fileno())
        # http.client returns a short body silently when the server hangs up early;
        # that is an interruption (keep the .part to resume), not a wrong file.
        length = response.headers.get("Content-Length")
        if length is not None and done - offset < int(length):
            raise http.client.IncompleteRead(b"", int(length) - (done - offset))
    return done


def _network_error(exc: Exception, entry: ModelFile, url: str, part: Path) -> NetworkError:
    """The one-line :class:`NetworkError` for an exception of the transfer."""
    if isinstance(exc, urllib.error.HTTPError):
        return NetworkError(f"{url}: HTTP {exc.code} {one_line(exc.reason)}", entry, url)
    if isinstance(exc, urllib.error.URLError):
        return NetworkError(f"cannot reach {url}: {one_line(exc.reason)}", entry, url)
    kept = part.stat().st_size if part.is_file() else 0
    return NetworkError(f"{url}: connection lost after {kept} of {entry.size} bytes "
                        f"({one_line(exc)}); run the command again to resume", entry, url)


def download_file(entry: ModelFile, directory: Path, base_url: str | None = None,
                  progress: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
                  progress_stream: TextIO | None = None) -> tuple[Path, bool]:
    """Fetch one file into ``directory``; return (path, whether it was downloaded).

    Skips a file already present with the right checksum. Raises
    :class:`DownloadError` with a one-line message on any failure; an interrupted
    transfer keeps its ``.part`` for the next attempt to resume, a checksum mismatch
    deletes it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / entry.filename
    part = directory / (entry.filename + PART_SUFFIX)
    if final.exists():
        if is_verified(final, entry):
            log.info("%s already present and verified", final)
            return final, False
        log.warning("%s exists but doesn't match its checksum; downloading it again", final)

    url = entry.url_for(base_url)
    offset = part.stat().st_size if part.is_file() else 0
    if offset > entry.largest_size:
        part.unlink()
        offset = 0

    bar = (ProgressBar(entry.filename, entry.size, progress_stream or sys.stderr)
           if progress else None)
    done = offset
    try:
        if offset < entry.largest_size:
            done = _transfer(entry, url, part, offset, timeout, bar.update if bar else None)
    except (urllib.error.URLError, TimeoutError, ConnectionError,
            http.client.HTTPException) as exc:
        raise _network_error(exc, entry, url, part) from None
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    finally:
        if bar:
            bar.close(done)

    # The transfer completed: a wrong size or digest means the server's file is wrong
    # (not an interruption), so the bytes are useless; never leave them to be resumed.
    size = part.stat().st_size
    digest = sha256_of(part)
    build = entry.build_of(size, digest)
    if build is None or not build.accepted:
        part.unlink()
        raise _mismatch(entry, url, size, digest, build)
    os.replace(part, final)
    log.info("downloaded %s (%d bytes, sha256 verified)", final, size)
    return final, True


def _mismatch(entry: ModelFile, url: str, size: int, digest: str,
              build: Build | None) -> DownloadError:
    """The refusal of a completed download that is no accepted build: a known build is
    named as such, anything else is corrupted."""
    if build is not None:
        return DownloadError(f"{url}: {size} bytes with sha256 {digest} is a different build "
                             f"({build.origin or 'known, not accepted'}), expected "
                             f"{entry.accepted_text()}; the download was deleted", entry, url)
    return DownloadError(f"{url}: {size} bytes with sha256 {digest}, expected "
                         f"{entry.accepted_text()}; the corrupted download was deleted",
                         entry, url)


def download(entries: Iterable[ModelFile], directory: Path, base_url: str | None = None,
             progress: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
             report: Callable[[str], None] | None = None) -> list[Path]:
    """Fetch every entry into ``directory`` (see :func:`download_file`)."""
    paths = []
    for entry in entries:
        path, fetched = download_file(entry, directory, base_url, progress, timeout)
        if report:
            done = "downloaded, sha256 verified" if fetched else "already present, verified"
            build = build_on_disk(path, entry) if len(entry.known_builds) > 1 else None
            named = f" ({build.origin})" if build is not None and build.origin else ""
            report(f"{path}: {done}{named}")
        paths.append(path)
    return paths

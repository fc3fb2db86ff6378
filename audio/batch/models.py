"""``--models_dir URI``: model files read from a URI, staged once per worker process.

Workers on Dataflow, Flink or Spark do not share the launching machine's disk. Rather
than baking the models into a container image, ``--models_dir gs://bucket/models`` (or
``s3://``, ``hdfs://``, a local folder: anything ``apache_beam.io.filesystems`` reads)
names a folder laid out as the project's ``models/`` (``yamnet.tflite`` and
``yamnet_class_map.csv``; ``vggish_model.ckpt``, ``vggish_pca_params.npz`` and the
classifier bundle folder).

* The launcher lists the files the run needs (:func:`plan_models`, with
  ``FileSystems.match``): a missing one is one line naming it before any work starts.
* Each worker process stages them once (a Beam ``Shared`` handle: every DoFn of the
  process gets the same staged folder) into ``<tempdir>/audio-analysis-models/<hash of
  the URI>``: each file is copied to a temporary name and renamed, so several processes
  of one machine staging at once each rename a complete copy (rename wins, no lock); a
  file already there with the listed size is not copied again. The run then uses local
  paths (:func:`local_settings`).

Each staging appends ``pid files-copied`` to ``staging.log`` in the staged folder: what a
worker did, and what ``tests/test_batch.py`` counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from audio.errors import UsageError
from audio.settings import Settings

logger = logging.getLogger(__name__)

YAMNET_FILES = ("yamnet.tflite", "yamnet_class_map.csv")
VGGISH_FILES = ("vggish_model.ckpt", "vggish_pca_params.npz")
CACHE_FOLDER = "audio-analysis-models"
STAGING_LOG = "staging.log"
PATH_FLAGS = (("--yamnet_model", "yamnet_model"), ("--vggish_checkpoint", "vggish_checkpoint"),
              ("--pca_params", "pca_params"))


class ModelsDirError(UsageError):
    """``--models_dir`` lacks a file the run needs, or flags that do not fit with it."""


@dataclass(frozen=True)
class ModelFiles:
    """The files to stage: ``names`` (relative to ``uri``, ``/``-separated) with their
    sizes, and the bundle folder's name (``--model``) when the backend uses one."""

    uri: str
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    bundle: str | None = None

    def cache_dir(self, root: str | None = None) -> Path:
        base = Path(root) if root else Path(tempfile.gettempdir()) / CACHE_FOLDER
        return base / hashlib.sha256(self.uri.encode()).hexdigest()[:16]


def is_uri(text: object) -> bool:
    return text is not None and "://" in str(text)


def check_flags(args: object, models_dir: str | None) -> None:
    """Model path flags that are URIs are refused (``--models_dir`` is the way); with
    ``--models_dir`` they are refused too, since the files come from there."""
    for flag, name in PATH_FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if is_uri(value) or models_dir:
            raise ModelsDirError(f"{flag} {value}: model files on workers come from "
                                 "--models_dir URI (a folder laid out as models/); give "
                                 f"that instead of {flag}")
    model = getattr(args, "model", None)
    if model is not None and (is_uri(model) or (models_dir and _is_path(model))):
        raise ModelsDirError(f"--model {model}: with --models_dir give the bundle's folder "
                             "name in it, not a path or URI")


def _is_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith((".", "~"))


def _bundle_name(settings: Settings) -> str | None:
    from yt8m.bundle.format import DEFAULT_BUNDLE

    if settings.backend == "vggish":
        return settings.model or DEFAULT_BUNDLE
    return settings.model  # YAMNet: a head trained on its embeddings, if any


def _match(uri: str, pattern: str) -> list:
    """``FileSystems.match``'s files for one pattern; an unusable URI is one line."""
    from apache_beam.io.filesystems import FileSystems

    try:
        return list(FileSystems.match([pattern])[0].metadata_list)
    except Exception as exc:  # Beam's IO errors (ValueError, BeamIOError) share no base
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelsDirError(f"--models_dir {uri}: cannot list {pattern}: {first}") from exc


def plan_models(uri: str, settings: Settings) -> ModelFiles:
    """The files under ``uri`` this run needs, each checked to exist (on the launcher)."""
    from apache_beam.io.filesystems import FileSystems

    uri = uri.rstrip("/") or "/"
    wanted = YAMNET_FILES if settings.backend == "yamnet" else VGGISH_FILES
    bundle = _bundle_name(settings)
    names: list[str] = []
    sizes: list[int] = []
    for name in wanted:
        found = _match(uri, FileSystems.join(uri, name))
        if not found:
            raise ModelsDirError(f"--models_dir {uri}: {name} is missing "
                                 f"({FileSystems.join(uri, name)})")
        names.append(name)
        sizes.append(found[0].size_in_bytes)
    if bundle is not None:
        folder = FileSystems.join(uri, bundle)
        found = _match(uri, FileSystems.join(folder, "*"))
        if not any(m.path.endswith("/config.json") for m in found):
            raise ModelsDirError(f"--models_dir {uri}: the classifier bundle {bundle} is "
                                 f"missing ({FileSystems.join(folder, 'config.json')})")
        for meta in sorted(found, key=lambda m: m.path):
            names.append(f"{bundle}/{meta.path.rstrip('/').rsplit('/', 1)[-1]}")
            sizes.append(meta.size_in_bytes)
    return ModelFiles(uri, tuple(names), tuple(sizes), bundle)


def _copy(source: str, target: Path) -> None:
    """``source`` → ``target`` through a temporary name in the same folder, renamed."""
    from apache_beam.io.filesystems import FileSystems

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, part = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                    dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, FileSystems.open(source) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(part, target)  # atomic: a concurrent stager's complete copy or ours
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


def stage(files: ModelFiles, cache_root: str | None = None) -> Path:
    """Copy the files not yet in the local cache; the cache folder."""
    from apache_beam.io.filesystems import FileSystems

    folder = files.cache_dir(cache_root)
    copied = 0
    for name, size in zip(files.names, files.sizes, strict=True):
        target = folder.joinpath(*name.split("/"))
        if target.is_file() and target.stat().st_size == size:
            continue
        _copy(FileSystems.join(files.uri, *name.split("/")), target)
        copied += 1
    with open(folder / STAGING_LOG, "a", encoding="ascii") as log:
        log.write(f"{os.getpid()} {copied}\n")
    logger.info("models from %s staged in %s (%d files copied)", files.uri, folder, copied)
    return folder


def local_settings(settings: Settings, files: ModelFiles, folder: Path) -> Settings:
    """``settings`` with the model paths in the staged ``folder``."""
    bundle = str(folder / files.bundle) if files.bundle is not None else settings.model
    if settings.backend == "yamnet":
        return dataclasses.replace(settings, yamnet_model=folder / YAMNET_FILES[0],
                                   model=bundle)
    return dataclasses.replace(settings, vggish_checkpoint=folder / VGGISH_FILES[0],
                               pca_params=folder / VGGISH_FILES[1], model=bundle)


class _Staged:
    """The staged folder, held by Beam's ``Shared`` (it needs a weak-referenceable
    object)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder


@dataclass(frozen=True)
class ModelSource:
    """What workers need to stage the models once per process: pickled with the DoFns;
    the ``Shared`` handle's key is kept, so every DoFn of a process shares one staging."""

    files: ModelFiles
    cache_root: str | None = None
    handle: object = dataclasses.field(default=None, compare=False)

    @classmethod
    def create(cls, files: ModelFiles, cache_root: str | None = None) -> ModelSource:
        from apache_beam.utils.shared import Shared

        return cls(files, cache_root, Shared())

    def acquire(self) -> _Staged:
        """This process's staged folder, staged on its first call; the caller keeps the
        object (``Shared`` holds it weakly)."""
        return self.handle.acquire(  # type: ignore[attr-defined]
            lambda: _Staged(stage(self.files, self.cache_root)), tag=self.files.uri)


def worker_settings(settings: Settings, source: ModelSource | None
                    ) -> tuple[Settings, object]:
    """``settings`` with local model paths (staged once per process) and the object the
    caller keeps alive while it uses them; unchanged without ``--models_dir``."""
    if source is None:
        return settings, None
    staged = source.acquire()
    return local_settings(settings, source.files, staged.folder), staged


__all__: Sequence[str] = ("ModelFiles", "ModelSource", "ModelsDirError", "check_flags",
                          "local_settings", "plan_models", "stage", "worker_settings")

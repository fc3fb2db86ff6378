"""The command line of the model files: ``python -m audio.models download|list``.

The registry, path resolution and the checksum-verified downloader are
``audio.downloads``; this module only reads the command line and reports. A failed
download ends with one ``error:`` line, and, when the network was the problem, the ways
out (retry, a mirror, copying the files in) in at most four more.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from audio.downloads import (
    BASE_URL_ENV,
    DEFAULT_GROUPS,
    DEFAULT_TIMEOUT_S,
    DOWNLOAD_COMMAND,
    GROUPS,
    DownloadError,
    ModelFile,
    NetworkError,
    download,
    is_verified,
    one_line,
    presence,
)
from vggish.environment import env_value
from yt8m.paths import models_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m audio.models",
        description="Manage the model files (Google's VGGish checkpoint and PCA parameters).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch = commands.add_parser(
        "download", help="download and verify model files",
        description="Download model files, verify their sha256, and place them atomically. "
                    "Interrupted downloads resume; verified files are skipped.")
    fetch.add_argument("groups", nargs="*", metavar="GROUP",
                       help=f"file groups to fetch: {', '.join(GROUPS)} "
                            f"(default: {', '.join(DEFAULT_GROUPS)})")
    fetch.add_argument("--dir", type=Path, default=None,
                       help="destination directory (default: $AUDIO_ANALYSIS_MODELS_DIR "
                            "or the project's models/)")
    fetch.add_argument("--base-url", default=None,
                       help=f"fetch <BASE_URL>/<file> instead of the official URLs "
                            f"(default: ${BASE_URL_ENV} if set)")
    fetch.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                       help="network timeout in seconds (default %(default)s)")
    bar = fetch.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show a progress bar (default: only on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    listing = commands.add_parser("list", help="list the registry and what is present")
    listing.add_argument("--dir", type=Path, default=None,
                         help="directory to look in (default as for download)")
    return parser


def _selected(groups: Sequence[str]) -> list[ModelFile]:
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise DownloadError(f"unknown group {', '.join(unknown)!s} "
                            f"(choose from {', '.join(GROUPS)})")
    entries: list[ModelFile] = []
    for group in groups or DEFAULT_GROUPS:
        entries.extend(e for e in GROUPS[group] if e not in entries)
    return entries


def _size_text(size: int) -> str:
    """Sizes the way the README writes them (291 MB, 73 kB), to recognise the files."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} bytes"


def still_missing(selected: Sequence[ModelFile], failed: ModelFile,
                  directory: Path) -> list[ModelFile]:
    """The file that failed and the selected ones after it not yet verified in ``directory``.

    The ones before it were verified by :func:`download` already, so only these are left
    to fetch, mirror or copy in; naming the others would send the user after files they have.
    """
    after = selected[selected.index(failed) + 1:] if failed in selected else []
    return [failed, *(e for e in after if not is_verified(directory / e.filename, e))]


def ways_out(missing: Sequence[ModelFile], directory: Path, base_url: str | None,
             yamnet_hint: bool) -> list[str]:
    """The lines that follow a network failure's ``error:`` line (at most four).

    Offline, the bare error left users stuck although three remedies exist; they are
    spelled out where the user is, with the actual directory, names and full sha256s
    (so that a copy can be checked with ``sha256sum`` or by running the command again,
    which verifies files already present without touching the network).
    """
    mirror = "<mirror URL>"
    fetched = " and ".join(f"{mirror}/{e.filename}" for e in missing)
    if base_url:
        mirror_line = (f"  - or fix the mirror: {BASE_URL_ENV} or --base-url (now {base_url}) "
                       f"must serve {fetched}")
    else:
        mirror_line = f"  - or set {BASE_URL_ENV}={mirror} (or --base-url) to fetch {fetched}"
    files = ", ".join(f"{e.filename} ({_size_text(e.size)}, sha256 {e.sha256})"
                      for e in missing)
    lines = [
        "  - retry when the network is back: run the same command again "
        "(an interrupted download resumes)",
        mirror_line,
        f"  - or copy the files into {directory}/ (running the command again then verifies "
        f"them offline): {files}",
    ]
    if yamnet_hint:
        size = _size_text(sum(e.size for e in GROUPS["yamnet"]))
        lines.append(f"  - or, if --backend yamnet will do, fetch only its {size}: "
                     f"`{DOWNLOAD_COMMAND} yamnet`")
    return lines


def _list(directory: Path) -> int:
    for group, entries in GROUPS.items():
        for entry in entries:
            state = presence(directory / entry.filename, entry)
            print(f"{group:8} {entry.filename:28} {entry.size:>12,} bytes  {state}  {entry.url}")
    return 0


def _download(args: argparse.Namespace, directory: Path) -> int:
    """Run ``download``; every failure is an ``error:`` line on stderr and exit status 1,
    followed by the ways out when the network was the problem."""
    base_url = args.base_url or env_value(BASE_URL_ENV) or None
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    selected: list[ModelFile] = []
    try:
        selected = _selected(args.groups)
        download(selected, directory, base_url, progress, args.timeout, report=print)
    except NetworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        missing = still_missing(selected, exc.entry, directory)
        yamnet_hint = not set(selected) & set(GROUPS["yamnet"])
        for line in ways_out(missing, directory, base_url, yamnet_hint):
            print(line, file=sys.stderr)
        return 1
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, ...
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the command again to resume", file=sys.stderr)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    directory = (args.dir or models_dir()).expanduser()
    if args.command == "list":
        return _list(directory)
    return _download(args, directory)


if __name__ == "__main__":
    sys.exit(main())

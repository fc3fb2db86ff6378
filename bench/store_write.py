#!/usr/bin/env python3
"""Benchmark of the event store's write cost per classified window.

For each ``synchronous`` mode (NORMAL, FULL) it prints, for single appends (what the loop
does, one committed transaction per window) and for batched appends (``append_many``):
the mean and p99 cost per call in µs, and rows per second; then the bytes the process
wrote to the disk per single append (``/proc/self/io``, where the kernel reports it) and
the file's size per 100,000 windows (database after a checkpoint, WAL excluded).

Windows are synthetic Events with ``--predictions`` classes each (the daemon reports at
most 20 classes above 0.1; a few is typical). The figures are those of the disk under
``--dir``: a tmpfs (RAM) makes FULL look free; the file system type is printed.

Usage:  .venv/bin/python bench/store_write.py [--single 3000] [--batch 100] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audio.events import Event, Prediction
from audio.store import Retention, Store

LABELS = ("Speech", "Music", "Dog", "Bark", "Vehicle", "Siren", "Silence", "Inside, small room",
          "Animal", "Domestic animals, pets", "Car", "Wind", "Rain", "Bird", "Laughter")
NO_PRUNING = Retention(days=None, max_rows=10**12)


def window(i: int, predictions: int) -> Event:
    preds = tuple(Prediction(LABELS[(i + k) % len(LABELS)], 0.9 / (k + 1) + (i % 97) * 1e-4)
                  for k in range(predictions))
    return Event(id=i, timestamp=1.7e9 + 5.0 * i, start=5.0 * i, end=5.0 * i + 5.0,
                 predictions=preds, source="default")


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (longest matching mount point)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def disk_writes() -> int | None:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def summary(label: str, seconds: list[float], rows_per_call: int) -> str:
    micros = sorted(s * 1e6 for s in seconds)
    p99 = micros[min(len(micros) - 1, round(0.99 * (len(micros) - 1)))]
    rate = rows_per_call * len(seconds) / sum(seconds)
    return (f"  {label:<26} mean {statistics.fmean(micros):9.1f} µs  p99 {p99:9.1f} µs  "
            f"per row {statistics.fmean(micros) / rows_per_call:8.1f} µs  {rate:10.0f} rows/s")


def bench_mode(directory: Path, mode: str, single: int, batch: int, predictions: int) -> None:
    path = directory / f"bench-{mode.lower()}.db"
    with Store(path, synchronous=mode, retention=NO_PRUNING, prune_in_background=False) as store:
        for i in range(50):  # warm-up: file created, pages cached
            store.append(window(i, predictions))
        written = disk_writes()
        times = []
        for i in range(single):
            item = window(i, predictions)
            t0 = time.perf_counter()
            store.append(item)
            times.append(time.perf_counter() - t0)
        after = disk_writes()
        print(summary("single append()", times, 1))
        if written is not None and after is not None:
            print(f"  disk writes per single append: {(after - written) / single:,.0f} bytes")
        batches = max(1, single // batch)
        times = []
        for b in range(batches):
            items = [window(b * batch + i, predictions) for i in range(batch)]
            t0 = time.perf_counter()
            store.append_many(items)
            times.append(time.perf_counter() - t0)
        print(summary(f"append_many({batch})", times, batch))
    path.unlink()


def size_per_100k(directory: Path, predictions: int) -> None:
    path = directory / "bench-size.db"
    n = 100_000
    with Store(path, retention=NO_PRUNING, prune_in_background=False) as store:
        for start in range(0, n, 1000):
            store.append_many([window(i, predictions) for i in range(start, start + 1000)])
    with sqlite3.connect(path) as conn:  # the last close checkpointed; measure the file
        pages, page_size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                            for p in ("page_count", "page_size"))
    size = path.stat().st_size
    print(f"  file size per 100k windows ({predictions} classes each): {size / 2**20:.1f} MiB "
          f"({size / n:.0f} bytes per window; {pages} pages of {page_size} B)")
    path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=3000, help="single appends per mode")
    parser.add_argument("--batch", type=int, default=100, help="rows per append_many")
    parser.add_argument("--predictions", type=int, default=5, help="classes per window")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the bench's files go (default: the temporary directory)")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir)).resolve()
    print(f"event store write cost: {platform.python_implementation()} "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"{directory} on {filesystem(directory)}, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for mode in ("NORMAL", "FULL"):
            print(f"synchronous={mode}:")
            bench_mode(directory, mode, args.single, args.batch, args.predictions)
        size_per_100k(directory, args.predictions)
    finally:
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())

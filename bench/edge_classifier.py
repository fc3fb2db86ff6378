"""Benchmark: the classifier bundles on the TensorFlow-free path (issue 18).

For each bundle (default: the distilled student and the shipped ensemble):

1. its size on disk, and the size of its TFLite export (made here by the project's own
   ``yt8m.bundle.export_bundle`` into ``--workdir``; int8 bundles stay int8);
2. LiteRT time per 10 s clip (10 VGGish frames; the export takes a zero-padded
   ``(1, max_frames)`` clip, so the clip's length barely matters), median and p95 over
   ``--clips`` eval clips, one thread and LiteRT's default; and the Keras bundle's time for
   the same clips, one at a time, for reference;
3. with ``--eval``: hit@1 and mAP of the TFLite export on the whole AudioSet eval split
   against the Keras bundle's (the accuracy cost of the export's int8 kernels).

Needs ``../shared`` (the eval split). Prints ``os.getloadavg()``: other processes on the
machine distort every timing.

    .venv/bin/python bench/edge_classifier.py [--bundles NAME ...] [--clips 200] [--eval]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402


def loadavg() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def eval_clips():
    from tests.conftest import shared_root
    from yt8m.reader import ReaderConfig, load_clips_cached

    pattern = str(shared_root() / "data" / "audioset_v1_embeddings" / "eval" / "*.tfrecord")
    return load_clips_cached(pattern, ReaderConfig(), PROJECT / "runs" / "cache")


def per_clip_ms(predict, frames: np.ndarray, counts: np.ndarray) -> list[float]:
    predict(frames[:1], counts[:1])  # allocation, weight packing, tracing
    times = []
    for i in range(len(frames)):
        t = time.perf_counter()
        predict(frames[i:i + 1], counts[i:i + 1])
        times.append(1000 * (time.perf_counter() - t))
    return times


def summary(times: list[float]) -> str:
    p95 = float(np.percentile(times, 95))
    return f"median {statistics.median(times):.2f} ms, p95 {p95:.2f} ms"


def bench_bundle(name: str, workdir: Path, clips, n: int, full_eval: bool) -> None:
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401  (LiteRT present)

    from yt8m import metrics
    from yt8m.bundle import TFLiteBundle, export_bundle, load_keras_bundle
    from yt8m.bundle.format import resolve_bundle_path

    path = resolve_bundle_path(name)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    t = time.perf_counter()
    tflite = export_bundle(path, out_dir=workdir / path.name)
    print(f"\n{path.name}: bundle {size / 1e6:.2f} MB, TFLite {tflite.stat().st_size / 1e6:.2f} MB "
          f"(export {time.perf_counter() - t:.0f} s)", flush=True)
    # 10 s clips: the first 10 frames of eval clips.
    rng = np.random.default_rng(0)
    pick = rng.choice(len(clips), size=min(n, len(clips)), replace=False)
    frames = np.ascontiguousarray(clips.frames[pick, :10])
    counts = np.minimum(clips.num_frames[pick], 10).astype(np.int32)
    lite = TFLiteBundle(path, tflite)
    print(f"  LiteRT, per 10 s clip ({len(pick)} clips): "
          f"{summary(per_clip_ms(lite.predict, frames, counts))}  [{loadavg()}]", flush=True)
    keras_bundle = load_keras_bundle(path)
    print(f"  Keras (TensorFlow), per 10 s clip: "
          f"{summary(per_clip_ms(keras_bundle.predict, frames, counts))}  [{loadavg()}]",
          flush=True)
    if not full_eval:
        return
    want = keras_bundle.predict(clips.frames, clips.num_frames)
    t = time.perf_counter()
    got = lite.predict(clips.frames, clips.num_frames)
    elapsed = time.perf_counter() - t
    mk, ml = metrics.evaluate(want, clips.labels), metrics.evaluate(got, clips.labels)
    print(f"  eval split ({len(clips)} clips, LiteRT {elapsed:.0f} s): "
          f"hit@1 {mk['hit_at_one']:.4f} → {ml['hit_at_one']:.4f}, "
          f"mAP {mk['map']:.4f} → {ml['map']:.4f} (Keras bundle → TFLite export); "
          f"max |Δscore| {np.abs(got - want).max():.4f}", flush=True)


def main() -> int:
    from yt8m.bundle.edge import STUDENT_BUNDLE
    from yt8m.bundle.format import DEFAULT_BUNDLE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundles", nargs="+", default=[STUDENT_BUNDLE, DEFAULT_BUNDLE])
    p.add_argument("--clips", type=int, default=200, help="clips timed per bundle")
    p.add_argument("--eval", action="store_true", help="also score the whole eval split")
    p.add_argument("--workdir", type=Path, default=None, help="where the exports go")
    args = p.parse_args()
    print(f"edge classifier bench, {os.cpu_count()} CPUs  [{loadavg()}]", flush=True)
    clips = eval_clips()
    with tempfile.TemporaryDirectory(prefix="edge_bench_") as tmp:
        workdir = args.workdir or Path(tmp)
        for name in args.bundles:
            bench_bundle(name, workdir, clips, args.clips, args.eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())

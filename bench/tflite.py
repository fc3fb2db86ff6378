"""Benchmark: inference without TensorFlow (issue 7) — VGGish TFLite exports and YAMNet.

Targets on this machine: cold ``parse_file.py`` on a 10 s clip ≤ 1.0 s wall with the
TensorFlow-free path; int8 VGGish embedding ≥ 150× real time batched; int8 vs float32
embeddings cosine ≥ 0.99 and top-5 class agreement ≥ 95% on test audio.

What it does, in a work directory laid out as ``models/`` (``--workdir``, reused between
runs so the slow export happens once):

1. VGGish checkpoint + PCA: Google's when in ``models/``, else a RANDOM-WEIGHT checkpoint
   in the official format (said in the output; timing does not depend on weight values,
   agreement figures do — random weights are a weak check of int8 quantisation);
   the shipped classifier bundle (``models/audioset-logistic-v1``, trained weights);
2. ``python -m audio.export`` equivalents: VGGish float32 + int8, the bundle's TFLite;
3. embedding throughput: real-time factor of float32 and int8 exports, batched (64), and
   of Keras for reference; the TFLite interpreters use LiteRT's default thread count;
4. int8 vs float32 on the shared real clips (and synthetic log-mel): cosine per example,
   top-5 agreement of the shipped bundle per clip and per 0.96 s frame;
5. cold ``parse_file.py`` on a 10 s 16 kHz clip (fresh process, median of ``--repeats``),
   VGGish with the int8 export and YAMNet, with whether TensorFlow was imported;
6. YAMNet: real-time factor, and the UrbanSound8K top-5 hits with per-clip ranks.

Prints ``os.getloadavg()``: other processes on the machine distort every figure.

    .venv/bin/python bench/tflite.py [--workdir DIR] [--repeats 5] [--skip-keras]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402

from bench._model_files import is_official_checkpoint, write_random_vggish_files  # noqa: E402

BUNDLE = "audioset-logistic-v1"
PROBE = (
    "import os, runpy, sys, time; t0 = time.perf_counter(); sys.argv = sys.argv[1:]; "
    "sys.path.insert(0, os.path.dirname(sys.argv[0])); rc = 0\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as e:\n    rc = e.code\n"
    "print('TF', 'tensorflow' in sys.modules, file=sys.stderr); sys.exit(rc)"
)


def loadavg() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def prepare(workdir: Path) -> tuple[Path, str]:
    """A models/ directory with checkpoint, PCA, bundle and exports; returns (dir, note)."""
    from audio.downloads import resolve_pca_params, resolve_vggish_checkpoint

    models = workdir / "models"
    models.mkdir(parents=True, exist_ok=True)
    ckpt, pca = models / "vggish_model.ckpt", models / "vggish_pca_params.npz"
    real_ckpt, real_pca = resolve_vggish_checkpoint(None), resolve_pca_params(None)
    if not ckpt.is_file():
        if real_ckpt.is_file() and real_pca.is_file():
            os.symlink(real_ckpt.resolve(), ckpt)
            shutil.copyfile(real_pca, pca)
        else:
            write_random_vggish_files(ckpt, pca)
    official = is_official_checkpoint(ckpt)
    note = ("Google's checkpoint" if official else
            "RANDOM-WEIGHT checkpoint in the official format (Google's is not downloaded)")
    bundle_src = PROJECT / "models" / BUNDLE
    if not (models / BUNDLE).is_dir():
        shutil.copytree(bundle_src, models / BUNDLE)
    from vggish.export import find_export

    os.environ["AUDIO_ANALYSIS_MODELS_DIR"] = str(models)
    if find_export(ckpt, models / "exported", ("int8",)) is None or \
            find_export(ckpt, models / "exported", ("float32",)) is None:
        from vggish.export import export_vggish

        t = time.perf_counter()
        export_vggish(ckpt, models / "exported")
        print(f"export VGGish float32 + int8: {time.perf_counter() - t:.1f} s", flush=True)
    from yt8m.bundle import export_bundle, find_bundle_export

    if find_bundle_export(models / BUNDLE) is None:
        t = time.perf_counter()
        export_bundle(models / BUNDLE)
        print(f"export classifier bundle: {time.perf_counter() - t:.1f} s", flush=True)
    return models, note


def throughput(models: Path, n_examples: int, skip_keras: bool) -> dict[str, float]:
    from vggish.export import TFLiteVGGish, tflite_name

    rng = np.random.default_rng(0)
    x = rng.normal(-1.0, 2.0, size=(n_examples, 96, 64)).astype(np.float32)
    audio_s = n_examples * 0.96
    out: dict[str, float] = {}
    for variant in ("int8", "float32"):
        m = TFLiteVGGish(models / "exported" / tflite_name(variant), batch=64)
        m(x[:64])  # allocation and weight packing happen on the first call
        t = time.perf_counter()
        m(x)
        out[variant] = audio_s / (time.perf_counter() - t)
    if not skip_keras:
        from vggish.model import embed, load_vggish

        model = load_vggish(models / "vggish_model.ckpt")
        embed(model, x[:64])
        t = time.perf_counter()
        embed(model, x)
        out["keras"] = audio_s / (time.perf_counter() - t)
    return out


def agreement(models: Path) -> dict[str, float] | None:
    from audio.io import read_audio
    from tests.conftest import shared_root
    from vggish.export import TFLiteVGGish, tflite_name
    from vggish.input import waveform_to_examples
    from vggish.postprocess import Postprocessor
    from yt8m.bundle import load_classifier

    folders = [shared_root() / "audio" / "urbansound_samples", shared_root() / "audio" / "misc"]
    clips = [p for f in folders if f.is_dir() for p in sorted(f.glob("*.wav"))]
    if not clips:
        return None
    f32 = TFLiteVGGish(models / "exported" / tflite_name("float32"))
    i8 = TFLiteVGGish(models / "exported" / tflite_name("int8"))
    post = Postprocessor(models / "vggish_pca_params.npz")
    clf = load_classifier(models / BUNDLE)

    def top5(scores: np.ndarray) -> list[set[int]]:
        return [set(np.argsort(-row, kind="stable")[:5]) for row in scores]

    cos, per_clip, per_frame = [], [], []
    for path in clips:
        ex = waveform_to_examples(*read_audio(path))
        a, b = f32(ex), i8(ex)
        cos.extend((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
        qa, qb = post.postprocess(a), post.postprocess(b)
        (ta,), (tb,) = top5(clf.predict(qa[None])), top5(clf.predict(qb[None]))
        per_clip.append(len(ta & tb) / 5)
        per_frame += [len(x & y) / 5 for x, y in zip(top5(clf.predict(qa[:, None])),
                                                    top5(clf.predict(qb[:, None])), strict=True)]
    return {"clips": len(clips), "frames": len(per_frame), "cos_min": float(min(cos)),
            "cos_mean": float(np.mean(cos)), "top5_clip": float(np.mean(per_clip)),
            "top5_frame": float(np.mean(per_frame))}


def cold_runs(models: Path, clip: Path, backend_args: list[str], repeats: int,
              extra_env: dict[str, str]) -> tuple[float, float, bool, str]:
    env = {**os.environ, "AUDIO_ANALYSIS_MODELS_DIR": str(models), **extra_env}
    for name in ("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", "AUDIO_ANALYSIS_PCA_PARAMS",
                 "AUDIO_ANALYSIS_MODEL"):
        env.pop(name, None)
    walls, tf_loaded, line = [], False, ""
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE, str(PROJECT / "parse_file.py"),
                              *backend_args, str(clip)], capture_output=True, text=True,
                             env=env, cwd=tempfile.gettempdir(), timeout=600)
        walls.append(time.perf_counter() - t)
        if out.returncode != 0:
            raise SystemExit(f"parse_file.py failed:\n{out.stderr[-2000:]}")
        tf_loaded = "TF True" in out.stderr
        line = out.stdout.strip().splitlines()[0][:100]
    return statistics.median(walls), min(walls), tf_loaded, line


def yamnet_figures(model: Path) -> tuple[float, list[tuple[str, int]], int]:
    from audio.backends.yamnet import YamnetModel
    from audio.io import StreamResampler, read_audio
    from tests.conftest import shared_root
    from tests.test_yamnet import ACCEPTED, CLIP_CLASS

    m = YamnetModel(model)
    x = (0.1 * np.random.default_rng(1).standard_normal(16000 * 60)).astype(np.float32)
    m.frame_scores(x[:16000])
    t = time.perf_counter()
    m.frame_scores(x)
    rtf = 60.0 / (time.perf_counter() - t)
    ranks = []
    for stem, cls in CLIP_CLASS.items():
        data, rate = read_audio(shared_root() / "audio" / "urbansound_samples" / f"{stem}.wav")
        mono = data.mean(axis=1) if data.ndim == 2 else data
        if rate != 16000:
            mono = StreamResampler(rate, 16000).process(mono, final=True)
        scores = m.frame_scores(mono).mean(axis=0)
        order = list(np.argsort(-scores, kind="stable"))
        ranks.append((stem, 1 + min(order.index(m.labels.index(n)) for n in ACCEPTED[cls])))
    return rtf, ranks, sum(r <= 5 for _, r in ranks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_tflite")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--examples", type=int, default=640, help="examples for throughput")
    parser.add_argument("--skip-keras", action="store_true")
    return parser


def report_throughput(models: Path, n_examples: int, skip_keras: bool) -> None:
    """Step 3: batched embedding speed against the int8 target of 150x real time."""
    rtf = throughput(models, n_examples, skip_keras)
    print(f"embedding, batched 64, {n_examples} examples ({n_examples * 0.96:.0f} s audio): "
          + ", ".join(f"{k} {v:.0f}x real time" for k, v in rtf.items())
          + f"   [target int8 >= 150x]   {loadavg()}", flush=True)


def report_agreement(models: Path) -> None:
    """Step 4: does int8 quantisation keep the embeddings and the shipped bundle's top 5?"""
    agree = agreement(models)
    if agree is None:
        print("int8 vs float32: shared clips not found, skipped")
        return
    print(f"int8 vs float32 on {agree['clips']} real clips ({agree['frames']} examples): "
          f"cosine min {agree['cos_min']:.5f} mean {agree['cos_mean']:.5f} [target >= 0.99]; "
          f"top-5 agreement ({BUNDLE}) per clip {agree['top5_clip']:.3f}, per 0.96 s frame "
          f"{agree['top5_frame']:.3f} [target >= 0.95]", flush=True)


def write_clip(workdir: Path) -> Path:
    """The 10 s 16 kHz clip the cold runs classify: a tone in noise, the same every run."""
    from audio.io import write_wav

    t = np.arange(16000 * 10) / 16000
    return write_wav(workdir / "clip10s.wav",
                     (0.2 * np.sin(2 * np.pi * 440 * t)
                      + 0.05 * np.random.default_rng(2).standard_normal(t.size)).astype(np.float32),
                     16000)


def report_cold_vggish(models: Path, clip: Path, repeats: int) -> None:
    """Step 5 for VGGish: a fresh ``parse_file.py`` per export variant, TensorFlow last."""
    for label, backend, env in (
            ("vggish int8 export", ["--model", BUNDLE], {"AUDIO_ANALYSIS_VGGISH_TFLITE": "int8"}),
            ("vggish float32 export", ["--model", BUNDLE],
             {"AUDIO_ANALYSIS_VGGISH_TFLITE": "float32"}),
            ("vggish TensorFlow (no export)", ["--model", BUNDLE],
             {"AUDIO_ANALYSIS_VGGISH_TFLITE": "off"})):
        median, best, tf_loaded, _line = cold_runs(models, clip, backend, repeats, env)
        print(f"cold parse_file.py 10 s clip, {label}: median {median:.2f} s, best {best:.2f} s, "
              f"TensorFlow imported: {tf_loaded} [target <= 1.0 s TF-free]   {loadavg()}",
              flush=True)


def report_yamnet(models: Path, clip: Path, repeats: int) -> None:
    """Steps 5 and 6 for YAMNet, from the shared model or ``models/``; skipped without one."""
    from tests.conftest import shared_root

    yamnet = shared_root() / "models" / "yamnet" / "yamnet.tflite"
    if not yamnet.is_file():
        yamnet = PROJECT / "models" / "yamnet.tflite"
    if not yamnet.is_file():
        print("YAMNet model not found (python -m audio.models download yamnet): skipped")
        return
    median, best, tf_loaded, _ = cold_runs(
        models, clip, ["--backend", "yamnet", "--yamnet_model", str(yamnet)], repeats, {})
    print(f"cold parse_file.py 10 s clip, yamnet: median {median:.2f} s, best {best:.2f} s, "
          f"TensorFlow imported: {tf_loaded}   {loadavg()}", flush=True)
    rtf_y, ranks, hits = yamnet_figures(yamnet)
    print(f"YAMNet: {rtf_y:.0f}x real time (one frame per invoke); UrbanSound8K top-5 hits "
          f"{hits}/{len(ranks)}; best rank of an accepted class per clip: "
          + ", ".join(f"{s} {r}" for s, r in ranks))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(loadavg(), f"cpus={os.cpu_count()}", flush=True)
    models, note = prepare(args.workdir)
    print(f"VGGish weights: {note}")
    report_throughput(models, args.examples, args.skip_keras)
    report_agreement(models)
    clip = write_clip(args.workdir)
    report_cold_vggish(models, clip, args.repeats)
    report_yamnet(models, clip, args.repeats)
    print(loadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())

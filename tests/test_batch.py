"""``python -m audio.batch`` on Beam's DirectRunner with several worker processes.

What is checked against what:

* a folder of real clips, a corrupt file and a 0.3 s clip: one JSON object per good file
  equal to ``parse_file.py --format json``'s (same ranked labels, scores within 1e-5,
  ``padded``), the corrupt file's error line equal to ``parse_file.py``'s, exit code 0
  and a summary that counts the failure; YAMNet workers never import TensorFlow;
* a long file at 44.1 kHz cut into many shards: the same result, timeline and sound
  events as the file classified whole (``WavProcessor.analyze_file``);
* ``--embeddings`` (VGGish with random weights through its TFLite export, plumbing
  only): AudioSet TFRecords that ``yt8m.reader`` reads back, frame for frame equal to
  the pipeline's own embeddings, and that ``python -m yt8m.train`` trains a Logistic
  model on for one epoch;
* inputs: globs, ``@manifest`` files, folders; labels files;
* the same folder on a portable runner (Beam's local job server, the Job API and the Fn
  API; workers in LOOPBACK and in a separate process of an EXTERNAL worker pool): the
  same predictions and error line as on the DirectRunner.

Beam is the optional extra ``[batch]``: without it these tests skip, except in CI
(``AUDIO_ANALYSIS_REQUIRE_SHARED=1``), where the test setup installs it and a missing
Beam fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, require_shared
from tests.fixtures_audio import script_env, write_test_wav

pytestmark = pytest.mark.slow
SCORE_TOLERANCE = 1e-5
WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def require_beam() -> None:
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        message = "apache-beam is not installed (pip install .[batch])"
        if os.environ.get("AUDIO_ANALYSIS_REQUIRE_SHARED") == "1":
            pytest.fail(message + " (AUDIO_ANALYSIS_REQUIRE_SHARED=1)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def yamnet_flags() -> list[str]:
    require_beam()
    model = require_shared("models", "yamnet", "yamnet.tflite")
    return ["--backend", "yamnet", "--yamnet_model", str(model)]


def run_batch(args: list[str], env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audio.batch", *args, *WORKERS],
                          cwd=PROJECT_ROOT, env=env or script_env(), capture_output=True,
                          text=True, timeout=600, check=False)


def run_parse_file(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "parse_file.py", "--format", "json", *args],
                          cwd=PROJECT_ROOT, env=script_env(), capture_output=True, text=True,
                          timeout=600, check=False)


def json_lines(folder: Path, pattern: str) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob(pattern))
            for line in path.read_text().splitlines() if line.strip()]


def assert_same_result(got: dict, want: dict) -> None:
    """Same file, duration, padding, ranked labels; scores within the tolerance."""
    assert got.keys() == want.keys(), (got.keys(), want.keys())
    assert (got["file"], got["duration"], got.get("padded")) == \
        (want["file"], want["duration"], want.get("padded"))
    assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
    np.testing.assert_allclose([p["score"] for p in got["predictions"]],
                               [p["score"] for p in want["predictions"]], atol=SCORE_TOLERANCE)


@pytest.fixture(scope="module")
def acceptance_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real clips (16, 44.1, 48 and 96 kHz, mono and stereo), a truncated WAV and 0.3 s."""
    audio = require_shared("audio")
    folder = tmp_path_factory.mktemp("acceptance")
    for name in ("misc/dog.wav", "misc/baby_cry.wav", "urbansound_samples/siren.wav",
                 "urbansound_samples/dogbark.wav", "urbansound_samples/carhorn.wav"):
        (folder / Path(name).name).write_bytes((audio / name).read_bytes())
    (folder / "corrupt.wav").write_bytes((audio / "misc" / "baby_cry.wav").read_bytes()[:3000])
    import soundfile

    horn, rate = soundfile.read(str(audio / "urbansound_samples" / "carhorn.wav"))
    soundfile.write(str(folder / "short.wav"), horn[:int(0.3 * rate)], rate)
    return folder


def test_acceptance_folder_equals_parse_file(acceptance_folder: Path, yamnet_flags,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    batch = run_batch([str(acceptance_folder), "--output_dir", str(out), *yamnet_flags])
    assert batch.returncode == 0, batch.stderr
    assert "files done 6, failed 1" in batch.stderr
    assert "TensorFlow" not in batch.stderr  # the workers' counter stayed at 0
    reference = run_parse_file([str(acceptance_folder), *yamnet_flags])
    assert reference.returncode == 2  # parse_file.py's exit for a bad file among good ones
    want = {o["file"]: o for o in map(json.loads, reference.stdout.splitlines())}
    got = {o["file"]: o for o in json_lines(out, "predictions-*.jsonl")}
    errors = json_lines(out, "errors-*.jsonl")
    assert errors == [want.pop(str(acceptance_folder / "corrupt.wav"))]
    assert got.keys() == want.keys() and len(got) == 6
    for path, obj in want.items():
        assert_same_result(got[path], obj)
    assert got[str(acceptance_folder / "short.wav")]["padded"] is True
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("file,duration,padded,events,label_1,score_1")
    assert len(summary) == 1 + 7


def test_all_files_failing_exits_2(yamnet_flags, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    batch = run_batch([str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                       *yamnet_flags])
    assert batch.returncode == 2, batch.stderr
    assert "files done 0, failed 1" in batch.stderr
    assert json_lines(tmp_path / "out", "errors-*.jsonl")[0]["file"].endswith("bad.wav")


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 75 s at 44.1 kHz stereo: clips between stretches of quiet noise."""
    import soundfile

    audio = require_shared("audio", "urbansound_samples")
    rate = 44100
    rng = np.random.default_rng(17)
    pieces = []
    for name in ("siren", "dogbark", "carhorn", "music", "gunshots", "siren", "drill") * 2:
        clip, clip_rate = soundfile.read(str(audio / f"{name}.wav"), always_2d=True)
        if clip_rate != rate:  # keep one rate: resample by linear interpolation
            t = np.arange(int(clip.shape[0] * rate / clip_rate)) / rate
            src = np.arange(clip.shape[0]) / clip_rate
            clip = np.stack([np.interp(t, src, clip[:, c % clip.shape[1]]) for c in range(2)], 1)
        pieces += [clip[:, :2] if clip.shape[1] >= 2 else np.repeat(clip, 2, 1),
                   rng.normal(0, 0.003, (int(1.3 * rate), 2))]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    write_test_wav(path, np.concatenate(pieces), rate)
    return path


def test_long_file_sharded_equals_whole(long_file: Path, yamnet_flags, tmp_path: Path) -> None:
    from audio.pipeline import WavProcessor
    from audio.settings import Settings
    from audio.sounds import configured_sounds

    settings = Settings(backend="yamnet", yamnet_model=Path(yamnet_flags[-1]),
                        listen="dog,siren,car horn,music")
    out = tmp_path / "out"
    batch = run_batch([str(long_file), "--output_dir", str(out), *yamnet_flags,
                       "--shard_seconds", "7", "--timeline", "--window", "4",
                       "--listen", "dog,siren,car horn,music"])
    assert batch.returncode == 0, batch.stderr
    [got] = json_lines(out, "predictions-*.jsonl")
    with WavProcessor(settings) as processor:
        sounds = configured_sounds(settings, processor.labels)
        whole = processor.analyze_file(long_file, timeline_window=4, sounds=sounds)
        duration = whole.duration
    assert duration > 60
    assert [p["label"] for p in got["predictions"]] == [p.label for p in whole.predictions]
    np.testing.assert_allclose([p["score"] for p in got["predictions"]],
                               [p.score for p in whole.predictions], atol=SCORE_TOLERANCE)
    assert len(got["windows"]) == len(whole.timeline)
    for window, want in zip(got["windows"], whole.timeline, strict=True):
        assert (window["start"], window["end"]) == (round(want.start, 3), round(want.end, 3))
        assert [p["label"] for p in window["predictions"]] == [p.label for p in want.predictions]
    assert [(e["sound"], e["start"], e["end"]) for e in got["events"]] == \
        [(e.sound, round(e.start, 3), round(e.end, 3)) for e in
         sorted(whole.events, key=lambda e: (e.start, e.id))]
    assert got["events"], "the clips should have made events"
    tables = sorted(p.name for p in (out / "tables").iterdir())
    assert tables == ["long.selections.txt", "long.txt"]


def test_shard_frames_equal_whole_file_frames(long_file: Path, yamnet_flags) -> None:
    """Below the pipeline: the shards' frames, in order, are the file's frames."""
    from audio.backends.yamnet import YamnetBackend
    from audio.batch.shards import FileTask, plan, shard_frames
    from audio.framestream import concat_frames
    from audio.io import mono_blocks, open_audio

    backend = YamnetBackend(yamnet_flags[-1])
    backend.load()
    shards = plan(FileTask(str(long_file), str(long_file), "long.wav"), backend, 5.0)
    assert len(shards) > 10 and shards[0].first == 0
    assert all(a.stop == b.first for a, b in itertools.pairwise(shards))
    parts = [shard_frames(s, backend).frames for s in shards]
    got = concat_frames(parts)
    from audio.framestream import FrameStream

    stream = FrameStream(backend)
    with open_audio(long_file) as reader:
        whole = concat_frames([stream.push(b) for b in mono_blocks(reader, 16000, 60.0)]
                              + [stream.finish()])
    assert len(got) == len(whole) == shards[-1].stop
    np.testing.assert_array_equal(got.starts, whole.starts)
    np.testing.assert_array_equal(got.durations, whole.durations)
    np.testing.assert_allclose(got.levels, whole.levels, atol=1e-3)
    np.testing.assert_allclose(got.features, whole.features, atol=SCORE_TOLERANCE)


def test_inputs_globs_manifests_and_labels(tmp_path: Path) -> None:
    require_beam()
    from audio.batch import inputs

    for name in ("a/x.wav", "a/b/y.flac", "c/x.wav", "c/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# corpus\n{tmp_path / 'c' / 'x.wav'}\n\n{tmp_path / 'a'}\n")
    files, problems = inputs.expand([f"{tmp_path}/a/**.flac", f"@{manifest}",
                                     str(tmp_path / "empty*.wav")])
    assert [f.path for f in files] == [str(tmp_path / p) for p in
                                       ("a/b/y.flac", "c/x.wav", "a/x.wav")]
    assert [f.relative for f in files] == ["b/y.flac", "x.wav", "x-2.wav"]
    assert [a for a, _ in problems] == [str(tmp_path / "empty*.wav")]
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("x.wav,Dog;7\nb/y.flac,\n")
    labels = inputs.read_labels_csv(str(labels_csv), ["Speech", "Dog"] + [f"c{i}" for i in
                                                                          range(8)])
    assert labels == {"x.wav": (1, 7), "b/y.flac": ()}
    labels_csv.write_text("x.wav,Unicorn\n")
    with pytest.raises(inputs.InputError, match="Unicorn"):
        inputs.read_labels_csv(str(labels_csv), ["Dog"])


def test_embeddings_are_audioset_records_that_train(edge_models_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """VGGish (random weights, TFLite export: plumbing only) → TFRecords → yt8m."""
    require_beam()
    from audio.framestream import FrameStream, concat_frames
    from audio.io import mono_blocks, open_audio
    from audio.pipeline import WavProcessor
    from audio.settings import Settings
    from tests.fixtures_edge import EDGE_BUNDLE
    from yt8m import reader, train

    audio = require_shared("audio", "urbansound_samples")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = ["siren", "dogbark", "carhorn", "music", "drill", "engine", "jackhammer", "play"]
    for name in names:
        (corpus / f"{name}.wav").write_bytes((audio / f"{name}.wav").read_bytes())
    (tmp_path / "labels.csv").write_text("".join(f"{n}.wav,{i % 3};5\n"
                                                 for i, n in enumerate(names)))
    env = script_env({"AUDIO_ANALYSIS_MODELS_DIR": str(edge_models_dir)})
    for key in ("AUDIO_ANALYSIS_VGGISH_CHECKPOINT", "AUDIO_ANALYSIS_PCA_PARAMS",
                "AUDIO_ANALYSIS_MODEL"):
        env.pop(key, None)
    out = tmp_path / "out"
    batch = run_batch([str(corpus), "--output_dir", str(out), "--model", EDGE_BUNDLE,
                       "--embeddings", "--labels_csv", str(tmp_path / "labels.csv"),
                       "--segment_seconds", "1.92"], env=env)
    assert batch.returncode == 0, batch.stderr
    assert f"files done {len(names)}, failed 0" in batch.stderr
    assert "TensorFlow" not in batch.stderr  # TFLite VGGish + TFLite bundle: none in workers
    clips = reader.load_clips(str(out / "embeddings" / "*.tfrecord"),
                              reader.ReaderConfig(on_error="raise"))
    assert clips.skipped == 0
    segments: dict[str, list[bytes]] = {}
    for video_id, frames, n, labels in zip(clips.video_ids, clips.frames, clips.num_frames,
                                           clips.labels, strict=True):
        name = Path(str(video_id)).stem
        segments.setdefault(name, []).append(frames[:n].tobytes())
        assert sorted(np.flatnonzero(labels)) == sorted({names.index(name) % 3, 5})
    assert set(segments) == set(names)
    monkeypatch.setenv("AUDIO_ANALYSIS_MODELS_DIR", str(edge_models_dir))
    with WavProcessor(Settings(model=EDGE_BUNDLE)) as processor:
        for name in names:  # the records hold the pipeline's own embeddings, 2 per record
            stream = FrameStream(processor.backend)
            with open_audio(corpus / f"{name}.wav") as source:
                whole = concat_frames([stream.push(b) for b in mono_blocks(source, 16000)]
                                      + [stream.finish()]).features
            assert whole.dtype == np.uint8
            assert sorted(segments[name]) == sorted(whole[i:i + 2].tobytes()
                                                    for i in range(0, len(whole), 2))
    run_dir = tmp_path / "train"
    assert train.main([f"--train_data_pattern={out / 'embeddings' / '*.tfrecord'}",
                       "--num_epochs=1", "--feature_names=audio_embedding",
                       "--feature_sizes=128", "--frame_features", "--batch_size=8",
                       "--num_classes=527", f"--train_dir={run_dir}", "--model=Logistic",
                       "--data_cache_dir=", "--validation_fraction=0.2"]) == 0
    assert (run_dir / "provenance.json").is_file()


def test_models_dir_stages_once_per_worker_and_equals_yamnet_model(
        acceptance_folder: Path, yamnet_flags, tmp_path: Path) -> None:
    """``--models_dir`` (a local folder through Beam's file systems) gives the same
    predictions as ``--yamnet_model``; each worker process stages once."""
    source = tmp_path / "models"
    source.mkdir()
    yamnet = Path(yamnet_flags[-1]).parent
    for name in ("yamnet.tflite", "yamnet_class_map.csv"):
        (source / name).write_bytes((yamnet / name).read_bytes())
    cache = tmp_path / "cache"
    flags = ["--backend", "yamnet", "--models_dir", str(source), "--models_cache", str(cache)]
    staged = run_batch([str(acceptance_folder), "--output_dir", str(tmp_path / "a"), *flags])
    assert staged.returncode == 0, staged.stderr
    direct = run_batch([str(acceptance_folder), "--output_dir", str(tmp_path / "b"),
                        *yamnet_flags])
    assert direct.returncode == 0, direct.stderr
    got = {o["file"]: o for o in json_lines(tmp_path / "a", "predictions-*.jsonl")}
    want = {o["file"]: o for o in json_lines(tmp_path / "b", "predictions-*.jsonl")}
    assert got.keys() == want.keys() and len(got) == 6
    for path, obj in want.items():
        assert_same_result(got[path], obj)
    logs = list(cache.glob("*/staging.log"))
    assert len(logs) == 1
    pids = [line.split()[0] for line in logs[0].read_text().splitlines()]
    # The launcher (its checks) and each of the 2 worker processes: once each.
    assert len(pids) == len(set(pids)) and 2 <= len(pids) <= 1 + 2, pids
    copies = [int(line.split()[1]) for line in logs[0].read_text().splitlines()]
    assert copies[0] == 2 and sum(copies) == 2  # the launcher copied; workers reuse
    assert (logs[0].parent / "yamnet.tflite").read_bytes() == (yamnet / "yamnet.tflite").read_bytes()


def test_models_dir_missing_file_and_uri_flags_fail_in_one_line(
        acceptance_folder: Path, yamnet_flags, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yamnet.tflite").write_bytes(b"not needed: the map is missing")
    missing = run_batch([str(acceptance_folder), "--output_dir", str(tmp_path / "out"),
                         "--backend", "yamnet", "--models_dir", str(tmp_path / "models")])
    assert missing.returncode == 2, missing.stderr
    lines = [x for x in missing.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "yamnet_class_map.csv is missing" in lines[0], missing.stderr
    assert not (tmp_path / "out").exists()
    uri = run_batch([str(acceptance_folder), "--output_dir", str(tmp_path / "out"),
                     "--backend", "yamnet", "--yamnet_model", "gs://bucket/yamnet.tflite"])
    assert uri.returncode == 2 and "--models_dir URI" in uri.stderr, uri.stderr


@contextlib.contextmanager
def beam_service(module: str, args: list[str], log: Path,
                 address: Callable[[], str | None]) -> Iterator[str]:
    """``python -m MODULE ARGS`` until the block ends; yields ``address()`` once it has
    one (the service picked a free port). The venv's ``python`` first on ``PATH`` and the
    project on ``PYTHONPATH``: the worker pool starts its SDK workers as ``python``."""
    env = script_env({"PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                               os.environ.get("PATH", "")])})
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while (found := address()) is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"{module} did not start:\n{log.read_text()}"
            time.sleep(0.2)
        yield found
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_portable_runner_equals_direct_runner(acceptance_folder: Path, yamnet_flags,
                                              tmp_path: Path) -> None:
    """Beam's local job server (Job API; runs the job with the FnApiRunner over the Fn
    API, as Flink's and Spark's job servers take it) and workers in LOOPBACK (in this
    process) and EXTERNAL (SDK worker processes of a worker pool, as in a container)."""
    port_file = tmp_path / "job.port"
    pool_log = tmp_path / "pool.log"

    def pool_address() -> str | None:
        found = re.search(r"worker pool servicer at port: (\S+)", pool_log.read_text())
        return found[1] if found else None

    direct = run_batch([str(acceptance_folder), "--output_dir", str(tmp_path / "direct"),
                        *yamnet_flags])
    assert direct.returncode == 0, direct.stderr
    want = {o["file"]: o for o in json_lines(tmp_path / "direct", "predictions-*.jsonl")}
    want_errors = json_lines(tmp_path / "direct", "errors-*.jsonl")
    assert len(want) == 6 and len(want_errors) == 1
    with beam_service("apache_beam.runners.portability.local_job_service_main",
                      ["--port", "0", "--port_file", str(port_file)], tmp_path / "job.log",
                      lambda: port_file.read_text() if port_file.is_file() else None) as port, \
            beam_service("apache_beam.runners.worker.worker_pool_main",
                         ["--service_port", "0"], pool_log, pool_address) as pool:
        for environment in ("--environment_type=LOOPBACK",
                            f"--environment_type=EXTERNAL --environment_config={pool}"):
            out = tmp_path / environment.split()[0].split("=")[1]
            batch = subprocess.run(
                [sys.executable, "-m", "audio.batch", str(acceptance_folder), "--output_dir",
                 str(out), *yamnet_flags, "--runner=PortableRunner",
                 f"--job_endpoint=localhost:{port}", *environment.split()],
                cwd=PROJECT_ROOT, env=script_env(), capture_output=True, text=True,
                timeout=600, check=False)
            assert batch.returncode == 0, batch.stderr
            assert "files done 6, failed 1" in batch.stderr
            assert "TensorFlow" not in batch.stderr
            assert "progress:" not in batch.stderr  # the DirectRunner's line only
            got = {o["file"]: o for o in json_lines(out, "predictions-*.jsonl")}
            assert got.keys() == want.keys()
            for path, obj in want.items():
                assert_same_result(got[path], obj)
            assert json_lines(out, "errors-*.jsonl") == want_errors
            assert len((out / "summary.csv").read_text().splitlines()) == 1 + 7
    assert "Completed job" in (tmp_path / "job.log").read_text()  # ran on the job server
    assert "Starting worker" in pool_log.read_text()  # EXTERNAL: a pool's worker process

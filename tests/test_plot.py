"""parse_file.py --plot: spectrogram + class scores over time, as a PNG."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from audio.events import Prediction
from audio.plot import log_mel_of_file, pool_columns, top_class_indices
from tests.conftest import require_shared

PROJECT = Path(__file__).resolve().parent.parent


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_pool_columns_keeps_peaks() -> None:
    spec = np.zeros((4001, 3), dtype=np.float32)
    spec[1234, 1] = 9.0  # a one-frame event
    pooled, factor = pool_columns(spec, 2000)
    assert factor == 3 and pooled.shape == (1334, 3)
    assert pooled.max() == 9.0 and pooled[1234 // 3, 1] == 9.0
    same, one = pool_columns(spec[:10], 2000)
    assert one == 1 and same.shape == (10, 3)


def test_top_classes_from_predictions_then_peaks() -> None:
    labels = ["a", "b", "c", "d"]
    windows = (SimpleNamespace(scores=np.array([0.1, 0.0, 0.9, 0.2])),
               SimpleNamespace(scores=np.array([0.0, 0.3, 0.1, 0.0])))
    result = SimpleNamespace(predictions=(Prediction("b", 0.5),), timeline=windows)
    # "b" from the predictions, then the highest window peaks: c (0.9), d (0.2).
    assert top_class_indices(result, labels, 3) == [1, 2, 3]


def test_log_mel_of_file(tmp_path: Path) -> None:
    from audio.io import write_wav

    t = np.arange(16000 * 2) / 16000
    path = write_wav(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32),
                     16000)
    spec, rate = log_mel_of_file(path)
    assert rate == 100 and spec.shape == (1 + (32000 - 400) // 160, 64)
    band = int(np.argmax(spec.mean(axis=0)))
    # Band i is centred on mel edge i+1: 185.6 + 40.83·(i+1) mel; mel(1 kHz) = 1000 → i = 19.
    assert band == 19


@pytest.mark.shared
@pytest.mark.e2e
def test_parse_file_plot(tmp_path: Path) -> None:
    model = require_shared("models", "yamnet", "yamnet.tflite")
    clips = [require_shared("audio", "urbansound_samples", n) for n in ("siren.wav", "dogbark.wav")]
    out = tmp_path / "plot.png"
    one = subprocess.run([sys.executable, str(PROJECT / "parse_file.py"), "--backend", "yamnet",
                          "--yamnet_model", str(model), "--plot", str(out), str(clips[0])],
                         capture_output=True, text=True, cwd=tmp_path, timeout=180)
    assert one.returncode == 0, one.stderr
    assert "Siren" in one.stdout
    width, height = _png_size(out)
    assert width >= 1000 and height >= 600
    several = subprocess.run([sys.executable, str(PROJECT / "parse_file.py"), "--backend",
                              "yamnet", "--yamnet_model", str(model), "--plot", str(out),
                              *map(str, clips)], capture_output=True, text=True, cwd=tmp_path,
                             timeout=180)
    assert several.returncode == 0, several.stderr
    assert (tmp_path / "plot-siren.png").is_file() and (tmp_path / "plot-dogbark.png").is_file()
    bad = subprocess.run([sys.executable, str(PROJECT / "parse_file.py"), "--backend", "yamnet",
                          "--yamnet_model", str(model), "--plot",
                          str(tmp_path / "no" / "dir" / "p.png"), str(clips[0])],
                         capture_output=True, text=True, cwd=tmp_path, timeout=180)
    assert bad.returncode == 2 and "Siren" in bad.stdout  # classified, plot refused
    assert "cannot write plot" in bad.stderr and "Traceback" not in bad.stderr


def test_matplotlib_not_imported_without_plot() -> None:
    code = ("import sys; sys.argv=['parse_file.py','--help']\n"
            "import parse_file\n"
            "try:\n    parse_file.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PROJECT, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.shared
@pytest.mark.e2e
def test_listened_sound_is_drawn_and_its_events_shaded(tmp_path: Path) -> None:
    """``--listen dog`` on sirens with a bark in the middle: the dog is far from the five
    best file-level classes, yet it is drawn (first, with its threshold) and its event is
    shaded; a plot without listened sounds draws the five best classes as before."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle

    import parse_file
    from audio.io import StreamResampler, read_audio, write_wav
    from audio.pipeline import WavProcessor
    from audio.plot import curves_to_draw, figure_for
    from audio.settings import Settings
    from audio.sounds import configured_sounds

    model = require_shared("models", "yamnet", "yamnet.tflite")
    folder = require_shared("audio", "urbansound_samples")
    parts = []
    for name in ("siren", "siren", "siren", "dogbark", "siren"):
        data, rate = read_audio(folder / f"{name}.wav")
        mono = data.mean(axis=1) if data.ndim == 2 else data
        parts.append(StreamResampler(rate, 16000).process(mono.astype(np.float32), final=True))
    clip = write_wav(tmp_path / "sirens-and-a-bark.wav", np.concatenate(parts), 16000)
    args = parse_file.build_parser().parse_args(
        ["--backend", "yamnet", "--yamnet_model", str(model), "--listen", "dog", str(clip)])
    settings = Settings.from_args(args)
    with WavProcessor(settings) as processor:
        sounds = configured_sounds(settings, processor.labels,
                                   processor.backend.class_thresholds)
        result = processor.analyze_file(clip, timeline_window=settings.window, sounds=sounds)
        labels = processor.labels
    [dog] = sounds
    best = [p.label for p in result.predictions[:5]]
    assert not set(dog.classes) & set(best), best  # the defect: the dog was never drawn
    [event] = [e for e in result.events if e.sound == "dog"]
    assert 11.0 < event.start < 13.0 and 14.5 < event.end < 17.0, event
    curves = curves_to_draw(result, labels, sounds)
    assert [c.sound for c in curves] == ["dog", None, None, None, None]
    assert curves[0].values.max() > 0.5 and curves[0].threshold == dog.thresholds.on
    fig = figure_for(clip, result, labels, settings.threshold, sounds=sounds,
                     events=result.events)
    try:
        ax_spec, ax_scores = fig.axes[:2]
        legend = [t.get_text() for t in ax_scores.get_legend().get_texts()]
        assert legend[0].startswith("dog (listened)"), legend
        assert f"dog threshold {dog.thresholds.on:g}" in legend
        for ax in (ax_spec, ax_scores):
            spans = [p.get_extents() for p in ax.patches if isinstance(p, (Polygon, Rectangle))
                     and p.get_label() == "_dog event"]
            assert len(spans) == 1, ax.patches
        shaded = next(p for p in ax_scores.patches if p.get_label() == "_dog event")
        xs = shaded.get_xy()[:, 0] if isinstance(shaded, Polygon) else [shaded.get_x()]
        assert min(xs) == pytest.approx(event.start)
    finally:
        plt.close(fig)
    plain = curves_to_draw(result, labels)
    assert [c.label for c in plain] == best

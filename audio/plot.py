"""``parse_file.py --plot out.png``: the log-mel spectrogram, and beneath it the scores of
the listened sounds and the top classes over time, for people who would rather look than
read.

The spectrogram is VGGish's own front end (64 mel bands, 125 Hz to 7.5 kHz, 10 ms hop,
``ln(mel + 0.01)``), computed block by block from the file so that long recordings stay in
bounded memory; for display it is max-pooled in time to at most ``MAX_COLUMNS`` columns
(a brief event stays visible instead of being averaged away). The lower panel draws each
timeline window's score as a step over the window's span (windows overlap for YAMNet:
the step is drawn at the window's centre hop), with the decision threshold dashed.

The sounds asked for (``--listen``, ``--events``, ``--count``) are always drawn, first,
each as the max of its classes' scores (what the detector follows) with its own effective
threshold dotted, and each of its events shaded in its colour on both panels; the best
file-level classes fill the remaining places. A listened sound that scored low in the
file as a whole is exactly the one the user wants to see, so ranking alone cannot choose.

matplotlib is imported inside :func:`plot_file`, with the non-interactive Agg backend, so
neither ``parse_file.py --help`` nor a run without ``--plot`` pays for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_COLUMNS = 2000
TOP_CLASSES = 5
BLOCK_SECONDS = 60.0


def log_mel_of_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """(frames, 64) log-mel spectrogram of a file and its frame rate (frames per second)."""
    from audio.io import mono_blocks, open_audio
    from vggish.mel_features import log_mel_spectrogram
    from vggish.params import PARAMS

    parts: list[np.ndarray] = []
    hop = PARAMS.stft_hop_length_samples
    win = PARAMS.stft_window_length_samples
    carry = np.zeros(0, dtype=np.float64)
    with open_audio(Path(path)) as reader:
        for block in mono_blocks(reader, PARAMS.sample_rate, BLOCK_SECONDS):
            signal = np.concatenate([carry, np.asarray(block, np.float64)])
            if signal.shape[0] < win:
                carry = signal
                continue
            n = 1 + (signal.shape[0] - win) // hop
            spec = log_mel_spectrogram(
                signal[: (n - 1) * hop + win], audio_sample_rate=PARAMS.sample_rate,
                log_offset=PARAMS.log_offset, window_length_secs=PARAMS.stft_window_seconds,
                hop_length_secs=PARAMS.stft_hop_seconds, num_mel_bins=PARAMS.num_mel_bins,
                lower_edge_hertz=PARAMS.mel_min_hz, upper_edge_hertz=PARAMS.mel_max_hz)
            carry = signal[n * hop:]
            parts.append(np.asarray(spec, np.float32))  # 256 bytes per 10 ms: ~92 MB/hour
    spec = np.concatenate(parts) if parts else np.zeros((0, PARAMS.num_mel_bins), np.float32)
    return spec, PARAMS.features_sample_rate


def pool_columns(spec: np.ndarray, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, int]:
    """Max-pool frames so that at most ``max_columns`` remain; returns (pooled, factor)."""
    factor = max(1, -(-spec.shape[0] // max_columns))
    if factor == 1:
        return spec, 1
    n = spec.shape[0] // factor * factor
    head = spec[:n].reshape(-1, factor, spec.shape[1]).max(axis=1)
    if n < spec.shape[0]:
        head = np.concatenate([head, spec[n:].max(axis=0, keepdims=True)])
    return head, factor


def top_class_indices(result: Any, labels: Sequence[str], k: int = TOP_CLASSES) -> list[int]:
    """The classes to draw: the clip's ranked predictions, else the highest window peaks."""
    index = {name: i for i, name in enumerate(labels)}
    chosen = [index[p.label] for p in result.predictions if p.label in index][:k]
    if len(chosen) < k and result.timeline:
        peaks = np.max([w.scores for w in result.timeline], axis=0)
        for i in np.argsort(-peaks, kind="stable"):
            if int(i) not in chosen:
                chosen.append(int(i))
            if len(chosen) == k:
                break
    return chosen


@dataclass(frozen=True)
class Curve:
    """One line of the scores panel: a listened sound (``sound`` its name, ``threshold``
    its effective on threshold) or a class."""

    label: str
    values: np.ndarray
    sound: str | None = None
    threshold: float | None = None


def curves_to_draw(result: Any, labels: Sequence[str], sounds: Sequence[Any] = (),
                   top: int = TOP_CLASSES) -> list[Curve]:
    """Every listened sound (``audio.sounds.Sound``: the max of its classes' scores), then
    the best classes not part of one, up to ``top`` lines in all (more if more sounds)."""
    scores = np.array([w.scores for w in result.timeline], dtype=np.float64)
    out = [Curve(f"{s.name} (listened)", scores[:, list(s.indices)].max(axis=1),
                 s.name, float(s.thresholds.on)) for s in sounds if s.indices]
    taken = {i for s in sounds for i in s.indices}
    others = [i for i in top_class_indices(result, labels, top + len(taken)) if i not in taken]
    out += [Curve(labels[i], scores[:, i]) for i in others[:max(0, top - len(out))]]
    return out


def plot_file(out: str | os.PathLike[str], audio_path: str | os.PathLike[str], result: Any,
              labels: Sequence[str], threshold: float, title: str | None = None,
              top: int = TOP_CLASSES, sounds: Sequence[Any] = (),
              events: Sequence[Any] = ()) -> Path:
    """Write the figure for one analysed file (``result`` must carry a timeline);
    ``sounds`` are the listened ones and ``events`` their sound events."""
    import matplotlib.pyplot as plt

    fig = figure_for(audio_path, result, labels, threshold, title, top, sounds, events)
    out = Path(out)
    try:
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def figure_for(audio_path: str | os.PathLike[str], result: Any, labels: Sequence[str],
               threshold: float, title: str | None = None, top: int = TOP_CLASSES,
               sounds: Sequence[Any] = (), events: Sequence[Any] = ()) -> Any:
    """The matplotlib figure :func:`plot_file` writes (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.timeline is None:
        raise ValueError("plot_file needs an analysis with a timeline")
    spec, rate = log_mel_of_file(audio_path)
    shown, factor = pool_columns(spec)
    duration = max(result.duration, spec.shape[0] / rate)
    curves = curves_to_draw(result, labels, sounds, top)

    fig, (ax_spec, ax_scores) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]},
        constrained_layout=True)
    image = ax_spec.imshow(shown.T, origin="lower", aspect="auto", cmap="magma",
                           extent=(0.0, shown.shape[0] * factor / rate, 0, spec.shape[1]),
                           interpolation="nearest")
    ax_spec.set_ylabel("mel band (125 Hz – 7.5 kHz)")
    ax_spec.set_title(title or Path(audio_path).name)
    fig.colorbar(image, ax=ax_spec, label="ln(mel + 0.01)", pad=0.01)

    starts = np.array([w.start for w in result.timeline])
    ends = np.array([w.end for w in result.timeline])
    # Step edges: each window spans from its start to the next window's start (the last
    # to its end), so overlapping YAMNet windows do not draw on top of each other.
    edges = np.append(starts, ends[-1])
    colours = plt.get_cmap("tab10")
    for rank, curve in enumerate(curves):
        colour = colours(rank % 10)
        ax_scores.stairs(curve.values, edges, baseline=None, color=colour,
                         linewidth=2.4 if curve.sound else 1.8,
                         label=f"{curve.label} ({curve.values.max():.2f} max)")
        if curve.sound is None:
            continue
        ax_scores.axhline(curve.threshold, color=colour, linestyle=":", linewidth=1.2,
                          label=f"{curve.sound} threshold {curve.threshold:g}")
        for event in (e for e in events if e.sound == curve.sound):
            ax_scores.axvspan(event.start, event.end, color=colour, alpha=0.15, linewidth=0,
                              label=f"_{curve.sound} event")
            ax_spec.axvspan(event.start, event.end, fill=False, edgecolor=colour,
                            linewidth=1.5, linestyle="--", label=f"_{curve.sound} event")
    ax_scores.axhline(threshold, color="0.4", linestyle="--", linewidth=1,
                      label=f"threshold {threshold:g}")
    ax_scores.set_ylim(0, 1.02)
    ax_scores.set_xlim(0, duration)
    ax_scores.set_xlabel("time (s)")
    ax_scores.set_ylabel("score")
    ax_scores.grid(True, alpha=0.3)
    ax_scores.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8,
                     frameon=False)
    return fig

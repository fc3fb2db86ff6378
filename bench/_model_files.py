"""Model files for the benchmarks: Google's VGGish files when downloaded, otherwise
random-weight files in exactly the official formats (the cost of the arithmetic does not
depend on the weight values; the labels then mean nothing, and the output says so)."""

from __future__ import annotations

from pathlib import Path

RANDOM_NOTE = ("RANDOM-WEIGHT checkpoint in the official format (Google's is not downloaded; "
               "timing does not depend on weight values)")


def is_official_checkpoint(path: Path) -> bool:
    from audio.downloads import VGGISH_CHECKPOINT

    return path.resolve().stat().st_size == VGGISH_CHECKPOINT.size


def write_random_vggish_files(checkpoint: Path, pca: Path) -> None:
    from tests.fixtures_vggish import (
        random_vggish_variables,
        write_official_checkpoint,
        write_pca_params,
    )

    print("writing a random-weight VGGish checkpoint in the official format ...", flush=True)
    write_official_checkpoint(checkpoint, random_vggish_variables(), write_index=False)
    write_pca_params(pca)


def model_files(workdir: Path) -> tuple[Path, Path, str]:
    """(checkpoint, PCA file, a note saying which) — downloaded files, else random ones."""
    from audio.downloads import resolve_pca_params, resolve_vggish_checkpoint

    checkpoint, pca = resolve_vggish_checkpoint(None), resolve_pca_params(None)
    if checkpoint.is_file() and pca.is_file():
        kind = ("the size of Google's checkpoint" if is_official_checkpoint(checkpoint)
                else "NOT Google's checkpoint")
        return checkpoint, pca, f"{checkpoint} ({kind})"
    checkpoint, pca = workdir / "vggish_model.ckpt", workdir / "vggish_pca_params.npz"
    write_random_vggish_files(checkpoint, pca)
    return checkpoint, pca, RANDOM_NOTE

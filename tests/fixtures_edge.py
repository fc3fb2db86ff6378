"""Fixtures for the edge features (TFLite exports, custom heads).

``edge_models_dir`` is a complete models directory in the official layout, built from
H2's random-weight official-format checkpoint and PCA file, plus a random-weight
YouTube-8M Logistic bundle over 527 classes (AudioSet's count, so that top-5 agreement
means something), and the TFLite exports of both made by the real export code. Random
weights make int8-vs-float32 agreement a weak check of quantisation (real VGGish weights
are smoother); the tests say so and also measure on the real shared clips.

Converting a 290 MB checkpoint takes about a minute, once per session.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

EDGE_BUNDLE = "edge-logistic"
EDGE_NUM_CLASSES = 527


def write_random_bundle(path: Path, num_classes: int = EDGE_NUM_CLASSES, seed: int = 7) -> Path:
    """A YouTube-8M FrameLevelLogisticModel bundle with random weights (tests only)."""
    import keras

    from yt8m.models import build_model

    keras.utils.set_random_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    model = build_model("FrameLevelLogisticModel", num_classes)
    model.save_weights(str(path / "member_0.weights.h5"))
    (path / "config.json").write_text(json.dumps({
        "name": path.name, "num_classes": num_classes,
        "members": [{"model": "FrameLevelLogisticModel", "hparams": {},
                     "weights": "member_0.weights.h5"}],
        "input": {"dequantize": True, "l2_normalize": True, "max_frames": 300,
                  "feature_size": 128}}))
    with (path / "labels.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for i in range(num_classes):
            w.writerow([i, f"/m/edge{i}", f"class {i}"])
    return path


@pytest.fixture(scope="session")
def edge_models_dir(tmp_path_factory: pytest.TempPathFactory, vggish_checkpoint: Path,
                    pca_params_file: Path) -> Path:
    """models/ with checkpoint, PCA, a 527-class bundle, and their TFLite exports."""
    from vggish.export import export_vggish
    from yt8m.bundle import export_bundle

    models = tmp_path_factory.mktemp("edge_models")
    checkpoint = models / "vggish_model.ckpt"
    try:
        os.link(vggish_checkpoint, checkpoint)  # same inode: same size and mtime
    except OSError:
        shutil.copy2(vggish_checkpoint, checkpoint)
    shutil.copyfile(pca_params_file, models / "vggish_pca_params.npz")
    bundle = write_random_bundle(models / EDGE_BUNDLE)
    export_vggish(checkpoint, models / "exported")
    export_bundle(bundle, out_dir=models / "exported" / EDGE_BUNDLE)
    return models

"""The files of a training directory: checkpoints, resuming, and atomic writes.

Every file is written to a temporary name and renamed, so a run killed mid-write leaves
the previous epoch's checkpoint intact and rerunning the command resumes from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.training import TrainError

CHECKPOINT_WEIGHTS = "last.weights.h5"
CHECKPOINT_OPTIMIZER = "last.optimizer.npz"
CHECKPOINT_STATE = "last.state.json"
BEST_WEIGHTS = "best.weights.h5"
SWA_WEIGHTS = "swa.weights.h5"
FLAGS_FILE = "model_flags.json"
PROVENANCE_FILE = "provenance.json"
LOG_DIR = "logs"


def save_weights_atomic(model, path: Path) -> None:
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def clear_checkpoints(train_dir: Path) -> None:
    """``--start_new_model``: remove what a previous run left in ``train_dir``."""
    for name in (CHECKPOINT_WEIGHTS, CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE, BEST_WEIGHTS,
                 SWA_WEIGHTS, FLAGS_FILE, PROVENANCE_FILE):
        (train_dir / name).unlink(missing_ok=True)
    shutil.rmtree(train_dir / LOG_DIR, ignore_errors=True)


def start_state(train_dir: Path, config: dict[str, Any], metric: str,
                command: list[str]) -> tuple[dict[str, Any], bool]:
    """The early-stopping/progress state to start from, and whether it is a resumption
    (refused when ``train_dir`` holds a checkpoint of another model configuration)."""
    state: dict[str, Any] = {"epoch": 0, "steps": 0, "best": None, "best_epoch": 0, "wait": 0,
                             "train_seconds": 0.0, "stopped_early": False}
    resuming = (train_dir / CHECKPOINT_STATE).is_file()
    if resuming:
        saved = json.loads((train_dir / FLAGS_FILE).read_text(encoding="utf-8"))
        if saved.get("config") != json.loads(json.dumps(config)):  # tuples → lists
            raise TrainError(f"{train_dir} holds a checkpoint of a different model "
                             f"({saved.get('config', {}).get('members')}); use "
                             f"--start_new_model or another --train_dir")
        state.update(json.loads((train_dir / CHECKPOINT_STATE).read_text(encoding="utf-8")))
    if state["best"] is None:
        state["best"] = math.inf if metric == "loss" else -math.inf
    state["train_seconds_before"] = state["train_seconds"]
    state["commands"] = [*state.get("commands", []), command]  # one per (resumed) invocation
    return state, resuming


def save_checkpoint(model, optimizer, out_dir: Path, state: dict[str, Any]) -> None:
    """The end-of-epoch checkpoint: weights, optimizer variables, then the state."""
    save_weights_atomic(model, out_dir / CHECKPOINT_WEIGHTS)
    tmp = out_dir / "last.optimizer.tmp.npz"
    np.savez(tmp, *[np.asarray(v.numpy()) for v in optimizer.variables])
    os.replace(tmp, out_dir / CHECKPOINT_OPTIMIZER)
    write_json(out_dir / CHECKPOINT_STATE, state)


def restore_checkpoint(model, optimizer, train_dir: Path) -> None:
    """Load the last checkpoint's weights and optimizer variables (the optimizer built)."""
    model.load_weights(str(train_dir / CHECKPOINT_WEIGHTS))
    with np.load(train_dir / CHECKPOINT_OPTIMIZER) as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(arrays) != len(optimizer.variables):
        raise TrainError(f"{train_dir}: optimizer checkpoint does not match the model")
    for v, a in zip(optimizer.variables, arrays, strict=True):
        v.assign(a)

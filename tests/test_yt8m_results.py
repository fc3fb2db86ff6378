"""yt8m.results: the docs/results.md table is generated from bundle files only."""

from __future__ import annotations

import json

from yt8m import results

METRICS = {"hit_at_one": 0.5, "perr": 0.4, "gap": 0.3, "map": 0.25, "auc": 0.95,
           "d_prime": 2.3, "num_clips": 7}


def _bundle(root, name, members):
    """members: (model, train seconds, epochs, best epoch, validation clips)."""
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(
        {"name": name, "members": [{"model": m[0]} for m in members]}))
    (d / "metrics.json").write_text(json.dumps(METRICS))
    (d / "provenance.json").write_text(json.dumps({"members": [
        {"train_wall_seconds": s, "epochs": e, "best_epoch": b, "num_params": 10,
         "num_validation_clips": v, "load_average_at_start": [1.0, 1.0, 1.0]}
        for _, s, e, b, v in members]}))
    (d / "member_0.weights.h5").write_bytes(b"x" * 1000)
    return d


def test_rows_name_members_and_quote_the_seed_only_for_single_models(tmp_path):
    single = _bundle(tmp_path, "logistic", [("FrameLevelLogisticModel", 61, 23, 15, 1108)])
    refit = _bundle(tmp_path, "logistic_refit", [("FrameLevelLogisticModel", 20, 15, 15, 0)])
    ens = _bundle(tmp_path, "ens", [("AttentionModel", 600, 30, 24, 2216),
                                    ("AttentionModel", 540, 28, 22, 2216),
                                    ("DbofModel", 125, 4, 4, 0)])
    table = results.render([results.bundle_row(p) for p in (single, refit, ens)])
    lines = table.splitlines()
    assert lines[2].startswith("| FrameLevelLogisticModel (`logistic`) | 0.5000 | 0.5560 |")
    assert lines[3].startswith("| FrameLevelLogisticModel (refit) (`logistic_refit`) | 0.5000 "
                               "| 0.5560 |")
    assert lines[4].startswith("| AttentionModel ×2 + DbofModel (`ens`) | 0.5000 | — |")
    assert "21:05 (10:00 + 9:00 + 2:05)" in lines[4] and "30 (24), 28 (22), 4 (4)" in lines[4]
    assert "Eval split: 7 clips." in table


def test_update_doc_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text(f"intro\n{results.START}\nold\n{results.END}\noutro\n")
    b = _bundle(tmp_path, "lstm", [("LstmModel", 278, 21, 16, 2216)])
    assert results.main([str(b), f"--doc={doc}"]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| LstmModel (`lstm`) | 0.5000 | 0.4581 |" in text
    doc.write_text("no markers")
    assert results.main([str(b), f"--doc={doc}"]) == 2

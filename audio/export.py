"""``python -m audio.export``: VGGish and a classifier bundle to TFLite, for TensorFlow-free runs.

    python -m audio.export                        # VGGish and the edge classifier bundle
    python -m audio.export --model NAME           # VGGish and bundle NAME → models/exported/NAME/
    python -m audio.export --skip_vggish --model NAME

The flags are ``python -m vggish.export``'s (``--vggish_checkpoint``, ``--out``,
``--variants``, ``--legacy_fc2_relu``, ``--model``, ``--skip_vggish``). VGGish is converted
by ``vggish.export`` and the bundle by ``yt8m.bundle.export_bundle``; this command is where
the two meet, because only the application layer may know both. Without ``--model`` the
classifier exported is the edge bundle (``yt8m.bundle.edge``): the distilled student while
its published eval mAP is within 0.01 of the ensemble's, else the ensemble (int8 weights
kept int8); a run without ``--model`` then needs no TensorFlow. The checkpoint is found as
the entry scripts find it (``audio.downloads``), a missing one reported with how to fetch it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def _checkpoint(flag: str | None) -> Path:
    from audio.downloads import require_files, resolve_vggish_checkpoint

    checkpoint = resolve_vggish_checkpoint(flag)
    require_files([checkpoint])
    return checkpoint


def _export_bundle(name_or_path: str) -> Path:
    from yt8m.bundle import export_bundle

    return export_bundle(name_or_path)


def _edge_model() -> str | None:
    """The edge bundle to export by default (None when there is no bundle at all)."""
    from yt8m.bundle import CONFIG_FILE
    from yt8m.bundle.edge import edge_bundle

    choice = edge_bundle()
    if not (choice.path / CONFIG_FILE).is_file():
        return None
    print(f"classifier: {choice.path.name} ({choice.reason})")
    return str(choice.path)


def main(argv: Sequence[str] | None = None) -> int:
    from vggish.export import main as export_main

    return export_main(argv, prog="python -m audio.export", resolve_checkpoint=_checkpoint,
                       export_bundle=_export_bundle, default_model=_edge_model)


if __name__ == "__main__":
    sys.exit(main())

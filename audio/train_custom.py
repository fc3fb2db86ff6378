"""``python -m audio.train_custom``: the documented command that trains your own classes.

The work lives in the package :mod:`audio.custom` (its command line in
:mod:`audio.custom.train`); this module stays only so the command in the README, and
scripts written against it, keep their name.
"""

from __future__ import annotations

import sys

from audio.custom.train import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

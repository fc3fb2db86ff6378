"""``python -m audio.batch``: see ``audio.batch.cli``."""

from audio.batch.cli import main
from audio.cli import run_script

if __name__ == "__main__":
    run_script(main)

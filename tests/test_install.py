"""The install room: the locks the setup installs, and the check that the venv is the lock.

Why: a fresh `pip install` picks the newest releases, and apache-beam 2.78 broke
`audio.batch` on a clean setup that way. The setup installs requirements-dev.lock (the
tests) or requirements.lock (the application); these tests hold the venv to it.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import check_lock  # noqa: E402


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(check_lock.canonical(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


@pytest.mark.skipif(os.environ.get("AUDIO_ANALYSIS_TEST_LATEST") == "1",
                    reason="make test-latest runs on the newest releases, not the lock")
def test_the_venv_is_exactly_the_dev_lock():
    result = subprocess.run([sys.executable, str(ROOT / "scripts/check_lock.py"),
                             str(ROOT / "requirements-dev.lock")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_each_lock_pins_every_requirement_with_hashes():
    dev = check_lock.locked_versions(ROOT / "requirements-dev.lock")
    runtime = check_lock.locked_versions(ROOT / "requirements.lock")
    for name in _requirement_names(ROOT / "requirements.txt"):
        assert name in runtime and name in dev, name
    for extra in ("requirements-test.txt", "requirements-batch.txt"):
        for name in _requirement_names(ROOT / extra):
            assert name in dev, (extra, name)
    # The runtime lock is constrained by the dev lock: one version of everything.
    assert {n: v for n, v in runtime.items() if dev.get(n) != v} == {}
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text(encoding="utf-8")
        for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_markers_choose_the_pin_for_this_python(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(
        "numpy==1.0 ; python_full_version < '3.0' \\\n    --hash=sha256:00\n"
        "numpy==2.0 ; python_full_version >= '3.0' \\\n    --hash=sha256:11\n"
        "Typing_Extensions==4.0 \\\n    --hash=sha256:22\n"
        "    # via numpy==3.0\n", encoding="utf-8")
    assert check_lock.locked_versions(lock) == {"numpy": "2.0", "typing-extensions": "4.0"}


def test_differences_name_each_kind_of_drift():
    found = check_lock.differences({"a": "1", "b": "2", "c": "3"},
                                   {"a": "1", "b": "2.1", "d": "4", "audio-analysis": "0.1"})
    assert found == ["b is 2.1, the lock pins 2",
                     "c 3 is locked but not installed",
                     "d 4 is installed but not in the lock"]

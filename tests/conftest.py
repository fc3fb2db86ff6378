"""Fixtures shared by the whole suite.

Area-specific fixtures live in ``tests/fixtures_*.py`` modules, registered as plugins
below, so that each part of the project owns its own fixtures.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = [
    # (added by each area as it lands)
    "tests.fixtures_vggish",
    "tests.fixtures_daemon",
    "tests.fixtures_yt8m",
    "tests.fixtures_frontend",
    "tests.fixtures_audio",
    "tests.fixtures_edge",
    "tests.fixtures_mqtt",
]


def shared_root() -> Path:
    """Where ``shared/`` lives: ``$AUDIO_ANALYSIS_SHARED`` or ``../shared`` beside the project."""
    env = os.environ.get("AUDIO_ANALYSIS_SHARED")
    return Path(env) if env else PROJECT_ROOT.parent / "shared"


def require_shared(*relative: str) -> Path:
    """Return ``shared/<relative>``; skip when absent, fail when CI demands it.

    ``AUDIO_ANALYSIS_REQUIRE_SHARED=1`` (set by ``.ci/run``) turns the skip into a
    failure, so CI can never pass by silently skipping the tests on real data.
    """
    path = shared_root().joinpath(*relative)
    if not path.exists():
        message = f"shared data not found: {path}"
        if os.environ.get("AUDIO_ANALYSIS_REQUIRE_SHARED") == "1":
            pytest.fail(message + " (AUDIO_ANALYSIS_REQUIRE_SHARED=1)", pytrace=False)
        pytest.skip(message)
    return path


def require_tool(*names: str) -> None:
    """Skip unless every program in ``names`` is on PATH (or is an existing absolute path).

    Under ``AUDIO_ANALYSIS_REQUIRE_SHARED=1`` (CI, where ``.ci/run`` installs them) a
    missing tool fails the test instead: the real-parts tests may never pass by skipping.
    """
    missing = [n for n in names
               if not (Path(n).exists() if os.path.isabs(n) else shutil.which(n))]
    if missing:
        message = f"not installed: {', '.join(missing)} (scripts/setup.sh --with-test-tools)"
        if os.environ.get("AUDIO_ANALYSIS_REQUIRE_SHARED") == "1":
            pytest.fail(message + " (AUDIO_ANALYSIS_REQUIRE_SHARED=1)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _own_event_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's daemon.py gets an event store of its own (``AUDIO_ANALYSIS_DB``, which
    subprocesses inherit): never the user's, never another test's (one daemon per file,
    and ids must start at 1). Only a path: nothing is created unless a daemon opens it."""
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    monkeypatch.setenv("AUDIO_ANALYSIS_DB",
                       str(tmp_path_factory.getbasetemp() / "event-stores" / f"{digest}.db"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test that draws random numbers is reproducible."""
    return np.random.default_rng(20171122)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT

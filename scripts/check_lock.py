"""Check that this environment is exactly what a lock file pins.

    python scripts/check_lock.py requirements-dev.lock            exit 1 on any difference
    python scripts/check_lock.py requirements-dev.lock --strays   print installed names the
                                                                  lock does not pin

Why: a lock only protects a fresh install if the venv really holds what it pins; an
environment set up before the lock existed, or touched by a `pip install` by hand, can hold
other versions or extra distributions that the tests then silently run against. The setup
(scripts/setup.sh) removes the strays and runs this check last; a test runs it too.

Standard library plus `packaging` (every venv with pip has it, vendored or installed).
"""
from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.markers import Marker
except ImportError:  # pragma: no cover - a venv before the lock's packaging is installed
    from pip._vendor.packaging.markers import Marker

#: The project itself (installed editable, not from the lock) and pip's build helpers.
NOT_LOCKED = frozenset({"audio-analysis"})
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def canonical(name: str) -> str:
    """PEP 503 name: `Typing_Extensions` and `typing-extensions` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """The pins of `lock` whose environment marker holds here (a universal lock pins
    numpy 2.4 for Python 3.11 and 2.5 for 3.12, say)."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker).evaluate():
            continue
        pins[canonical(name)] = version
    if not pins:
        raise SystemExit(f"check_lock: {lock}: no pinned requirement found")
    return pins


def installed_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonical(name)] = dist.version
    return found


def differences(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(set(pins) | set(installed)):
        if name in NOT_LOCKED:
            continue
        want, have = pins.get(name), installed.get(name)
        if want is None:
            lines.append(f"{name} {have} is installed but not in the lock")
        elif have is None:
            lines.append(f"{name} {want} is locked but not installed")
        elif want != have:
            lines.append(f"{name} is {have}, the lock pins {want}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--strays", action="store_true",
                        help="print the installed distributions the lock does not pin")
    args = parser.parse_args(argv)
    pins, installed = locked_versions(args.lock), installed_versions()
    if args.strays:
        print(" ".join(sorted(n for n in installed if n not in pins and n not in NOT_LOCKED)))
        return 0
    problems = differences(pins, installed)
    for line in problems:
        print(f"check_lock: {args.lock}: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The lock files that bin/setup-env installs: every package pinned with its hashes, every
dependency of pyproject.toml in them, and the test tools tested against the runtime's versions.
(`bin/lock --check`, run by CI, proves they are what pyproject.toml's ranges resolve to.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pins(lock: str) -> dict[str, str]:
    """name -> version of every requirement in a lock file; asserts each has a hash."""
    text = (ROOT / lock).read_text()
    found = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if not block[:1].isalnum():
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", block)
        assert match, f"{lock}: not pinned to one version: {block.splitlines()[0]}"
        assert "--hash=sha256:" in block, f"{lock}: {match[1]} has no hash"
        found[canonical(match[1])] = match[2]
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {canonical(re.match(r"[A-Za-z0-9_.\-]+", spec)[0]) for spec in specs}


@pytest.mark.parametrize(
    "lock, wanted",
    [
        ("requirements.txt", declared()),
        ("requirements-dev.txt", declared() | declared("dev")),
    ],
)
def test_every_declared_dependency_is_pinned_with_hashes(lock, wanted):
    missing = wanted - set(pins(lock))
    assert not missing, f"{lock} lacks {sorted(missing)}: run bin/lock"


def test_the_tests_run_on_the_versions_bin_run_installs():
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    differ = {name: (version, dev.get(name)) for name, version in runtime.items()}
    assert {n: v for n, v in differ.items() if v[0] != v[1]} == {}

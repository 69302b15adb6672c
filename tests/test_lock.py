"""The committed locks agree with pyproject.toml: a dependency changed without `make lock` fails here.

requirements/lock.txt pins every package (torch excepted) at a version inside the declared range;
requirements/lowest.txt holds each direct dependency at a version inside its range, too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra != "deepspeed":  # CUDA-only, not installed by make test, so not locked
            specs += reqs
    return [Requirement(s) for s in specs]


def _pins(name: str) -> dict[str, list[tuple[str, str]]]:
    pins: dict[str, list[tuple[str, str]]] = {}
    for raw in (ROOT / "requirements" / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req, _, marker = line.partition(";")
        pkg, version = req.strip().split("==")
        pins.setdefault(canonicalize_name(pkg), []).append((version, marker.strip()))
    return pins


@pytest.mark.parametrize("lock", ["lock.txt", "lowest.txt"])
def test_every_declared_dependency_is_locked_inside_its_range(lock):
    pins = _pins(lock)
    for req in _declared():
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{req.name} is declared but not in requirements/{lock}: run make lock"
        for version, _marker in pins[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements/{lock} pins {req.name}=={version} outside {req}: run make lock"
            )


def test_the_lock_keeps_torch_and_cuda_packages_out():
    pins = _pins("lock.txt")
    assert "torch" not in pins
    assert not [p for p in pins if p.startswith(("nvidia-", "triton"))]
    # torch's own dependencies are locked (installed with the pin, they would otherwise drift)
    for dep in ("filelock", "sympy", "networkx", "jinja2", "fsspec", "typing-extensions"):
        assert dep in pins, dep


def test_the_lock_applies_to_this_interpreter():
    # Every package has at most one pin whose marker holds here.
    for name, entries in _pins("lock.txt").items():
        live = [v for v, m in entries if not m or Marker(m).evaluate()]
        assert len(live) <= 1, (name, live)

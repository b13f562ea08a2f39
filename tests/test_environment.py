"""The environment is pinned: one lock, the same pins in environment.yml, and installed as locked."""

import re
from importlib.metadata import distributions

import yaml

from conftest import ROOT

REQUIRED = {"tensorflow": "2.15.1", "tensorflow-privacy": "0.9.0", "tensorflow-probability": "0.22.1",
            "dp-accounting": "0.4.3", "numpy": "1.26.4", "tensorboard": "2.15.2"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[canonical(name)] = version
    return pins


def test_lock_has_the_required_exact_pins():
    pins = lock_pins()
    for name, version in REQUIRED.items():
        assert pins[name] == version, name
    assert "tensorflow-cpu" not in pins
    for name in ("pyyaml", "pytest", "matplotlib"):
        assert name in pins


def test_environment_yml_installs_exactly_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    (pip_section,) = [d["pip"] for d in deps if isinstance(d, dict)]
    pinned = [p for p in pip_section if "==" in p]
    assert {canonical(p.split("==")[0]): p.split("==")[1] for p in pinned} == lock_pins()
    assert sorted(set(pip_section) - set(pinned)) == ["-e ."]


def test_installed_packages_are_the_locked_versions():
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
    wrong = {n: (v, installed.get(n)) for n, v in lock_pins().items() if installed.get(n) != v}
    assert not wrong, f"installed versions differ from requirements.lock (locked, installed): {wrong}"

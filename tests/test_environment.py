"""The environment is pinned: one lock, the same pins in environment.yml, and installed as locked."""

import re
import subprocess
import sys
from importlib.metadata import distributions

import pytest
import yaml

from conftest import ROOT

REQUIRED = {"tensorflow": "2.15.1", "tensorflow-privacy": "0.9.0", "tensorflow-probability": "0.22.1",
            "dp-accounting": "0.4.3", "numpy": "1.26.4", "tensorboard": "2.15.2"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries() -> dict:
    """{canonical name: (version, [sha256, ...])} from requirements.lock (continuation lines joined)."""
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    entries = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            pin, *options = line.split()
            name, _, version = pin.partition("==")
            assert version, f"requirements.lock: {pin!r} is not an exact pin"
            assert all(o.startswith("--hash=sha256:") for o in options), f"requirements.lock: {line!r}"
            entries[canonical(name)] = (version, [o.split(":", 1)[1] for o in options])
    return entries


def lock_pins() -> dict:
    return {name: version for name, (version, _) in lock_entries().items()}


def test_every_locked_package_carries_hashes():
    for name, (version, hashes) in lock_entries().items():
        assert hashes, f"requirements.lock: {name}=={version} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    assert len(lock_entries()) > 60


def test_installs_require_the_hashes():
    """make install and the image install with --require-hashes; make lock writes hashes."""
    makefile, dockerfile = (ROOT / "Makefile").read_text(), (ROOT / "Dockerfile").read_text()
    assert "pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock" in makefile
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in dockerfile
    assert "scripts/lock.py" in makefile and "--hash=sha256:" in (ROOT / "scripts" / "lock.py").read_text()


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


@pytest.mark.full
def test_a_wheel_with_another_hash_stops_the_install(tmp_path):
    """pip, given the lock's entry for absl-py, downloads it; given the same entry with one hash
    digit changed, refuses the same file (what a substituted or corrupted wheel meets). It needs the
    package index: full tier (so not in the image's own run)."""
    version, hashes = lock_entries()["absl-py"]
    good = f"absl-py=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes)
    bad = f"absl-py=={version} " + " ".join(f"--hash=sha256:{'0' if h[0] != '0' else '1'}{h[1:]}" for h in hashes)

    def download(entry, name):
        (tmp_path / name).write_text(entry + "\n")
        return subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
                               "-r", str(tmp_path / name), "-d", str(tmp_path / f"{name}.d")],
                              capture_output=True, text=True, timeout=300)

    ok = download(good, "good.txt")
    assert ok.returncode == 0, ok.stderr[-2000:]
    refused = download(bad, "bad.txt")
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr


def test_every_dependency_of_a_locked_package_is_locked():
    """pip --require-hashes installs nothing unpinned: each requirement of each installed locked
    package (markers evaluated here) must be in the lock too (pip freeze leaves out setuptools and
    wheel unless told otherwise; astunparse needs wheel, TensorFlow setuptools)."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    pins = lock_pins()
    missing = set()
    for name in pins:
        for line in distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                if canonical(req.name) not in pins:
                    missing.add(f"{canonical(req.name)} (needed by {name})")
    assert not missing, sorted(missing)

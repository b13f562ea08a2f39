"""Result files: what was run, where, with what, and what came out; written atomically."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path

RESULT_SCHEMA = 1
PACKAGES = ("tensorflow", "tensorflow-privacy", "tensorflow-probability", "dp-accounting",
            "numpy", "keras", "tensorboard")


def result_path(out_dir, name: str, spec_version: int, engine_override: str | None = None) -> Path:
    """OUT/<name>/v<version>/result.json; result-<engine>.json when the run overrode the engine."""
    filename = f"result-{engine_override}.json" if engine_override else "result.json"
    return Path(out_dir) / name / f"v{spec_version}" / filename


def write_json_atomic(path: Path, obj) -> None:
    """Write through a temporary file in the same folder and rename: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(finite_json(obj), f, indent=2, allow_nan=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def git_state() -> dict:
    """Commit of the working tree, whether it had uncommitted changes and which (None outside git).

    Outputs do not count: untracked files, and results/ (a `make pin` rewrites the pinned files
    of the specs it has finished while it runs the next)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
    try:
        changed = git("status", "--porcelain", "--untracked-files=no", "--",
                      ":(top)", ":(top,exclude)results").splitlines()
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(changed),
                "changed": [line[3:] for line in changed[:20]]}
    except (OSError, subprocess.CalledProcessError):
        # No git checkout (e.g. in the Docker image): the commit the image was built from, if known.
        commit = os.environ.get("DPREPRO_GIT_COMMIT")
        return {"commit": commit if commit and commit != "unknown" else None, "dirty": None, "changed": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(devices: dict) -> dict:
    """Python, package versions, platform, CPU and the accelerators TensorFlow saw."""
    return {
        "python": platform.python_version(),
        "packages": {p: version(p) for p in PACKAGES},
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
    }


def summary(values: list) -> dict:
    """Mean, sample standard deviation (0 for one value), min, max and count."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values), "max": max(values), "n": len(values),
    }


def finite_json(obj):
    """JSON has no infinity: an infinite value (epsilon without noise) is written as "inf"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj

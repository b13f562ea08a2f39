"""Shared helpers: the repository root, the installed CLI, spec files written for a test."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
DATA = ROOT / "data" / "mnist"
CLI = Path(sys.executable).with_name("dprepro")


def run_cli(*args, cwd=ROOT, env=None, unset=(), timeout=600):
    """Run the installed `dprepro` console script (with `env` added, `unset` removed); return the
    CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run([str(CLI), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def raw_spec(name="smoke") -> dict:
    return yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())


def typed(raw: dict, path: str = "test"):
    """A raw spec mapping validated and typed (a dprepro Spec), as the library takes it."""
    from dprepro.spec import Spec

    return Spec.from_raw(path, raw)


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(raw_dict, filename) -> path of a YAML file in tmp_path."""
    def write(raw, filename="spec.yaml"):
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(copy.deepcopy(raw), sort_keys=False))
        return path
    return write


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """The smoke spec run twice with the same seed, each into its own folder: [(out, proc, result)]."""
    runs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"smoke-run{i}")
        proc = run_cli("run", EXPERIMENTS / "smoke.yaml", "--out", out, "--logdir", out / "logs")
        assert proc.returncode == 0, proc.stderr
        runs.append((out, proc, json.loads((out / "smoke" / "v1" / "result.json").read_text())))
    return runs

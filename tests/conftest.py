"""Shared helpers: the repository root, the CLI (as a real process, or in this process), spec files
written for a test, one trained smoke model, the test tiers.

Tiers (docs/testing.md): a test marked `full` runs only in the full tier (`make test-full`, and CI's
second part `make test-rest`); everything else is the quick tier, `make test`.
"""

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
DATA = ROOT / "data" / "mnist"
CLI = Path(sys.executable).with_name("dprepro")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # before any test module loads TensorFlow


def run_cli(*args, cwd=ROOT, env=None, unset=(), timeout=600):
    """Run the installed `dprepro` console script as a real process (with `env` added, `unset`
    removed); return the CompletedProcess. For what only a process shows: its own arithmetic path
    (environment variables read when TensorFlow loads), kill -9, two runs at once, the console script."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run([str(CLI), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def _captured_output():
    """Everything written to file descriptors 1 and 2 inside the block, by Python or by C++ code
    (TensorFlow's own log lines included), as [stdout, stderr] once the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    got = ["", ""]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = (os.dup(1), os.dup(2))
        streams = (sys.stdout, sys.stderr)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                                   write_through=True) for fd in (1, 2))
        try:
            yield got
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy_of in zip((1, 2), saved):
                os.dup2(copy_of, fd)
                os.close(copy_of)
            for i, f in enumerate((out, err)):
                f.seek(0)
                got[i] = f.read().decode("utf-8", errors="replace")


def run_cli_in_process(*args, cwd=None, env=None, unset=()):
    """`dprepro ARGS` as `dprepro.cli.main` in this process, which has TensorFlow loaded already: the
    same code, output and exit status as the console script, without the seconds a fresh process
    takes to load TensorFlow. Returns a CompletedProcess. `env` may not touch the arithmetic path
    (that takes a process: run_cli)."""
    from dprepro import cli
    from dprepro.records.environment import ARITHMETIC_ENV

    if set(env or {}) & set(ARITHMETIC_ENV) or set(unset) & set(ARITHMETIC_ENV):
        raise ValueError("the arithmetic path is fixed when TensorFlow loads: use run_cli for another path")
    argv = [str(a) for a in args]
    before = dict(os.environ)
    here, saved_argv = os.getcwd(), sys.argv
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    for name in unset:
        os.environ.pop(name, None)
    try:
        os.chdir(cwd or ROOT)
        sys.argv = ["dprepro", *argv]
        with _captured_output() as got:
            try:
                code = cli.main(argv)
            except SystemExit as e:          # argparse: --help, or a usage error (exit 2)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved_argv
        os.chdir(here)
        os.environ.clear()
        os.environ.update(before)
    return subprocess.CompletedProcess([str(CLI), *argv], code, got[0], got[1])


# Fixtures whose work several tests share (trained models, traced steps, fresh processes). Module- and
# session-scoped fixtures live in one pytest process, so under pytest-xdist (make test's WORKERS) the
# tests that share one are sent to one worker: the work is done once, as in a serial run.
SHARED_FIXTURES = ("smoke_runs", "op_types", "default_path_weights")


@pytest.hookimpl(tryfirst=True)     # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        shared = [name for name in SHARED_FIXTURES if name in item.fixturenames]
        if shared and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


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
def mnist():
    """All of MNIST, read and checked once per session (tests of the loader itself read their own)."""
    from dprepro.data import load_mnist

    return load_mnist(DATA)


def first_examples(full, train_examples: int, test_examples: int):
    """The first examples of `full`, as load_mnist(DATA, train_examples, test_examples) gives them
    (the same values: the normalisation is per pixel)."""
    import dataclasses

    return dataclasses.replace(full, x_train=full.x_train[:train_examples], y_train=full.y_train[:train_examples],
                               x_test=full.x_test[:test_examples], y_test=full.y_test[:test_examples])


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """The smoke spec run twice with the same seed, each by the console script in a fresh process
    and into its own folder, once per session: [(out, proc, result)]. Tests that need a trained
    smoke model or a real result file read these instead of training their own."""
    runs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"smoke-run{i}")
        proc = run_cli("run", EXPERIMENTS / "smoke.yaml", "--out", out, "--logdir", out / "logs")
        assert proc.returncode == 0, proc.stderr
        runs.append((out, proc, json.loads((out / "smoke" / "v1" / "result.json").read_text())))
    return runs

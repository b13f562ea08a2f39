"""CI's regression check on real data: the 3-epoch tutorial spec, seed 0, against its pinned result,
on the default arithmetic path and on two simulated other machines.

The pins were made on one CPU; a user's CPU runs other kernels and rounds differently. CI stands in
for such a machine by changing TensorFlow's kernels in the same process environment:
- `onednn-off`: TF_ENABLE_ONEDNN_OPTS=0, Eigen's kernels instead of oneDNN's (any x86 CPU);
- `onednn-avx2`: ONEDNN_MAX_CPU_ISA=AVX2, oneDNN held to AVX2 (differs only on an AVX-512 CPU).
Every path must PASS against the same pins by the same rules as `dprepro compare`; on the pin's own
arithmetic path the fresh seed's history is also the pinned one's, bit for bit (the promise `make
reproduce` makes). Nothing here compares a float for exact equality with a committed file on another
path. 25 to 55 s per path on 2 cores: the full tier.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, EXPERIMENTS, ROOT, run_cli
from dprepro.records.environment import ARITHMETIC_ENV, SIMULATED_PATHS, cpu_flags, path_environ


def changes_the_arithmetic_here(name: str) -> bool:
    """Whether a path can differ from the default on this CPU (the AVX2 limit needs AVX-512 to bite)."""
    return name == "onednn-off" or (name == "onednn-avx2" and "avx512f" in cpu_flags())


PINNED = ROOT / "results" / "tutorial-3ep" / "v1" / "result.json"


@pytest.mark.full
@pytest.mark.parametrize("path_name", list(SIMULATED_PATHS))
def test_tutorial_3ep_seed_0_reproduces_the_pinned_result(tmp_path, path_name):
    env = SIMULATED_PATHS[path_name]
    proc = run_cli("run", EXPERIMENTS / "tutorial-3ep.yaml", "--seeds", "0", "--out", tmp_path,
                   "--logdir", tmp_path / "logs", "--compare", ROOT / "results", env=env,
                   unset=[k for k in ARITHMETIC_ENV if k not in env])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reproduction PASSED" in proc.stdout
    fresh = json.loads((tmp_path / "tutorial-3ep" / "v1" / "result.json").read_text())
    arithmetic = fresh["environment"]["arithmetic"]
    if path_name == "onednn-off":
        assert arithmetic["onednn"] is False
    assert arithmetic["onednn_max_cpu_isa"] == env.get("ONEDNN_MAX_CPU_ISA")
    pinned = json.loads(PINNED.read_text())
    if arithmetic["id"] == pinned["environment"]["arithmetic"]["id"]:        # the pin's own path
        pinned_seed = next(s for s in pinned["seeds"] if s["seed"] == 0)
        assert fresh["seeds"][0]["history"] == pinned_seed["history"]     # bit for bit
    print(f"{path_name}: seed 0 test accuracy {fresh['test_accuracy']['mean']:.4f}, "
          f"arithmetic path {arithmetic['id']}")


# Trains ten smoke steps (2,500 examples, batch 250) with one engine in a fresh process, whose
# environment selects the kernels, and saves the final weights.
TEN_STEPS = """
import sys
from pathlib import Path
import numpy as np
from dprepro import sampling
from dprepro.training import engines as engine
from dprepro.data import load_mnist
from dprepro.spec import load_spec
spec = load_spec(sys.argv[1])
data = load_mnist(Path(sys.argv[2]), train_examples=2500, test_examples=1)
engine.seed_everything(0)
model = engine.build_model(spec, sys.argv[3])
model.fit(sampling.shuffled_batches(data.x_train, data.y_train, 250, 0), epochs=1, verbose=0)
np.savez(sys.argv[4], *model.get_weights())
"""


def weights_after_ten_steps(engine_name: str, path_name: str, out: Path) -> list:
    """The weights after ten smoke steps in a fresh process on `path_name`."""
    proc = subprocess.run([sys.executable, "-c", TEN_STEPS, str(EXPERIMENTS / "smoke.yaml"), str(DATA),
                           engine_name, str(out)], env={**path_environ(path_name), "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture(scope="module")
def default_path_weights(tmp_path_factory):
    """Per engine, the default path's weights after ten steps, from two fresh processes, computed
    once for both other paths: {engine: (first, again)}."""
    folder = tmp_path_factory.mktemp("default-path")
    return {engine_name: tuple(weights_after_ten_steps(engine_name, "default", folder / f"{engine_name}-{i}.npz")
                               for i in range(2)) for engine_name in ("none", "fast")}


@pytest.mark.full
@pytest.mark.parametrize("engine_name", ["none", "fast"])
@pytest.mark.parametrize("path_name", ["onednn-off", "onednn-avx2"])
def test_each_simulated_machine_really_changes_the_arithmetic(tmp_path, path_name, engine_name, default_path_weights):
    """Ten smoke steps on the other path must not give the default path's weights bit for bit;
    otherwise CI's second and third paths would check nothing."""
    if not changes_the_arithmetic_here(path_name):
        pytest.skip(f"{path_name}: this CPU has no AVX-512, so the limit to AVX2 changes no kernel")
    default, again = default_path_weights[engine_name]
    other = weights_after_ten_steps(engine_name, path_name, tmp_path / "other.npz")
    assert all(np.array_equal(a, b) for a, b in zip(default, again)), "the default path is not deterministic"
    largest = max(float(np.max(np.abs(a - b))) for a, b in zip(default, other))
    print(f"{path_name}, {engine_name}: largest weight difference after 10 steps {largest:.3g}")
    assert largest > 0

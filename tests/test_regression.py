"""CI's regression check on real data: the 3-epoch tutorial spec, seed 0, against its pinned result.

About a minute on 2 cores (3 epochs of 240 DP-SGD steps on all 60,000 examples).
"""

import json

import pytest

from conftest import EXPERIMENTS, ROOT, run_cli
from dprepro.compare import accuracy_tolerance


@pytest.mark.long
def test_tutorial_3ep_seed_0_reproduces_the_pinned_result(tmp_path):
    proc = run_cli("run", EXPERIMENTS / "tutorial-3ep.yaml", "--seeds", "0", "--out", tmp_path,
                   "--logdir", tmp_path / "logs", "--compare", ROOT / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reproduction PASSED" in proc.stdout
    fresh = json.loads((tmp_path / "tutorial-3ep" / "v1" / "result.json").read_text())
    pinned = json.loads((ROOT / "results" / "tutorial-3ep" / "v1" / "result.json").read_text())
    assert fresh["epsilon"] == pinned["epsilon"]
    band = accuracy_tolerance(pinned["test_accuracy"]["std"], pinned["test_accuracy"]["n"], 1)
    assert abs(fresh["seeds"][0]["test_accuracy"] - pinned["test_accuracy"]["mean"]) <= band

"""`dprepro bench` runs and writes a valid record (speed itself is never asserted in a test)."""

import json

import pytest

from conftest import run_cli


@pytest.mark.long
def test_bench_runs_and_writes_json(tmp_path):
    proc = run_cli("bench", "experiments/smoke.yaml", "--steps", "3", "--repeats", "2",
                   "--tutorial-steps", "1", "--no-epoch", "--label", "ci", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "ci.json").read_text())
    assert set(record["engines"]) == {"none", "fast", "vectorized", "tutorial"}
    for name, row in record["engines"].items():
        assert row["ms_per_step_median"] > 0 and len(row["ms_per_step_each_repeat"]) == 2, name
    assert record["engines"]["none"]["ratio_to_none"] == 1.0
    assert record["environment"]["packages"]["tensorflow"] == "2.15.1"
    assert "ratio" in proc.stdout and "fast" in proc.stdout


def test_bench_bad_steps_is_exit_2():
    proc = run_cli("bench", "--steps", "0")
    assert proc.returncode == 2 and proc.stderr.strip() == "--steps: must be >= 1, got 0"

"""`dprepro bench` runs and writes a valid record (speed itself is never asserted in a test)."""

import json

import pytest

from conftest import run_cli_in_process

FAST_PHASES = ("forward+backward", "per-layer norms", "clip factors", "clipped sum", "noise",
               "optimizer", "full step", "sum of phases")


@pytest.mark.full
def test_bench_runs_and_writes_json(tmp_path):
    proc = run_cli_in_process("bench", "experiments/smoke.yaml", "--steps", "3", "--repeats", "2",
                   "--tutorial-steps", "1", "--no-epoch", "--label", "ci", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "ci.json").read_text())
    assert set(record["engines"]) == {"anchor", "none", "fast", "fast-poisson", "vectorized", "tutorial"}
    for name, row in record["engines"].items():
        assert row["ms_per_step_median"] > 0 and len(row["ms_per_step_each_repeat"]) == 2, name
    base = record["baseline"]
    assert base in ("none", "anchor") and record["engines"][base]["ratio_to_baseline"] == 1.0
    other = {"none": "anchor", "anchor": "none"}[base]
    assert record["engines"][other]["ratio_to_baseline"] >= 1.0   # the baseline is the faster one
    assert record["environment"]["packages"]["tensorflow"] == "2.15.1"
    assert record["environment"]["arithmetic"]["id"] and "onednn" in record["environment"]["arithmetic"]
    assert record["engine_versions"]["fast"] >= 3 and "anchor" not in record["engine_versions"]
    assert record["engine_versions"]["fast-poisson"] == record["engine_versions"]["fast"]
    breakdown = record["fast_breakdown"]
    assert set(FAST_PHASES) <= set(breakdown) and breakdown["full step"] > 0
    assert len(breakdown["norms by layer"]) == len(breakdown["clipped sum by layer"]) == 4  # 2 Conv2D, 2 Dense
    assert all(v >= 0 for k, v in breakdown.items() if isinstance(v, float)), breakdown
    assert "ratio" in proc.stdout and "fast step, ms:" in proc.stdout


@pytest.mark.full
def test_bench_paths_writes_one_record_per_path(tmp_path):
    proc = run_cli_in_process("bench", "experiments/smoke.yaml", "--paths", "--engines", "none", "fast",
                   "--steps", "2", "--repeats", "1", "--no-epoch", "--no-breakdown",
                   "--label", "ci", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    combined = json.loads((tmp_path / "ci-paths.json").read_text())
    assert list(combined["paths"]) == ["default", "onednn-avx2", "onednn-off"]
    arithmetic = {p: v["record"]["environment"]["arithmetic"] for p, v in combined["paths"].items()}
    assert arithmetic["onednn-off"]["onednn"] is False
    assert arithmetic["onednn-avx2"]["onednn_max_cpu_isa"] == "AVX2"
    assert len({a["id"] for a in arithmetic.values()}) == 3
    for p, v in combined["paths"].items():
        assert set(v["record"]["engines"]) == {"none", "fast"}, p
    assert "onednn-avx2" in proc.stdout and "ratio to the faster of none and anchor" in proc.stdout


def test_bench_bad_steps_is_exit_2():
    proc = run_cli_in_process("bench", "--steps", "0")
    assert proc.returncode == 2 and proc.stderr.strip() == "--steps: must be >= 1, got 0"


def test_bench_unknown_row_is_exit_2():
    proc = run_cli_in_process("bench", "--engines", "none", "turbo")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("--engines: each of anchor none fast fast-ledger fast-secret fast-poisson vectorized "
                                   "vectorized-poisson tutorial at most once, got none turbo")


def test_bench_batch_size_out_of_range_is_exit_2():
    proc = run_cli_in_process("bench", "experiments/smoke.yaml", "--batch-size", "2501")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "--batch-size: must be from 1 to 2500 (the training set), got 2501"


def test_bench_at_another_batch_size_keeps_one_example_per_microbatch():
    """`--batch-size` times the spec at that batch (Poisson rows need one example per microbatch)."""
    from conftest import EXPERIMENTS
    from dprepro.bench import with_batch_size
    from dprepro.spec import load_spec

    spec = with_batch_size(load_spec(EXPERIMENTS / "tutorial-3ep.yaml"), 4096)
    assert spec.training.batch_size == spec.privacy.num_microbatches == 4096 and spec.poisson_bucket is None
    assert with_batch_size(load_spec(EXPERIMENTS / "nonprivate-3ep.yaml"), 512).training.batch_size == 512

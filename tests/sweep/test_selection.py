"""Choosing from a tuning sweep (`dprepro select`, sweep/selection.py): on validation examples only,
one choice per target epsilon, the search's privacy cost composed, the choice written as a spec."""

import json

import pytest
import yaml

from conftest import EXPERIMENTS, raw_spec, run_cli, run_cli_in_process, typed
from dprepro import mechanisms
from dprepro.errors import InputError
from dprepro.spec import load_spec
from dprepro.sweep import selection

QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}


def tuning_files(tmp_path, validation=True):
    base = raw_spec()
    base["name"] = "tiny-base"
    base["data"].update(sampling="poisson", train_examples=2000)
    if validation:
        base["data"]["validation_examples"] = 1000
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    path = tmp_path / "tiny-tune.yaml"
    path.write_text(yaml.safe_dump({
        "schema": 1, "name": "tiny-tune", "version": 1, "base": "base.yaml", "seeds": [0],
        "grid": {"target_epsilon": {"accountant": "rdp", "values": [2, 8]},
                 "training.learning_rate": [0.01, 0.5]}}))
    return path


def test_the_search_epsilon_of_one_configuration_is_that_of_twice_its_steps():
    """Composing k runs of one Poisson schedule is one run of k times its steps: an independent check."""
    spec = load_spec(EXPERIMENTS / "tutorial-3ep-poisson.yaml")
    got = selection.search_epsilon([spec], 2, spec, 1e-5)
    want = mechanisms.poisson_epsilon("rdp", spec.q, spec.privacy.noise_multiplier, 3 * spec.steps_trained, 1e-5)[0]
    assert got["runs_composed"] == 3 and got["holds"]
    assert got["epsilon"] == pytest.approx(want, rel=1e-9)       # the same RDP sums: float rounding only
    shuffled = load_spec(EXPERIMENTS / "tutorial-3ep.yaml")
    assert not selection.search_epsilon([shuffled], 1, shuffled, 1e-5)["holds"]


def held_out_tutorial(train_examples=55000, validation_examples=5000):
    raw = raw_spec("tutorial-15ep-poisson")
    raw["data"].update(train_examples=train_examples, validation_examples=validation_examples)
    return typed(raw, "held-out.yaml")


def test_a_refit_trains_every_example_at_the_target_and_composes_with_its_trials():
    """The refit puts the 5,000 validation examples back and calibrates again at the larger set's
    rate; the trials, on the first 55,000, are a part of its examples, so the composition holds."""
    trial = held_out_tutorial()
    choice = {"target": {"accountant": "rdp", "epsilon": 3.0}}
    refitted = selection.refit(choice, trial)
    assert refitted.train_examples == 60000 and refitted.data.validation_examples is None
    assert refitted.q == pytest.approx(250 / 60000)
    eps = mechanisms.poisson_epsilon("rdp", refitted.q, refitted.privacy.noise_multiplier, refitted.steps_trained, 1e-5)[0]
    # The noise is rounded up at the 4th decimal: epsilon at most the target, and within 0.01 of it
    # (d eps / d sigma is about -5 here, so 1e-4 of noise moves epsilon by about 5e-4).
    assert 2.99 < eps <= 3.0
    assert selection.refit(choice, trial, refitted.privacy.noise_multiplier) == refitted     # no calibration
    search = selection.search_epsilon([trial], 3, refitted, 1e-5)
    assert search["holds"] and "not the 5000 validation examples that chose without noise" in search["label"]
    # The other way round (trials on examples the chosen run does not train) the composition is not claimed.
    assert not selection.search_epsilon([refitted], 1, trial, 1e-5)["holds"]


def test_a_refit_refuses_a_split_that_is_not_the_whole_file():
    with pytest.raises(InputError, match=r"held-out.yaml: data.train_examples: --refit needs .* \(60000\), got 20000 \+ 5000"):
        selection.refit({"target": None}, held_out_tutorial(train_examples=20000))


def test_select_refuses_a_sweep_without_validation_examples(tmp_path):
    proc = run_cli_in_process("select", tuning_files(tmp_path, validation=False), "--out", tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "has no data.validation_examples: a sweep chooses on validation examples, never on the test set")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "sweeps").exists()


def test_select_before_the_sweep_ran_names_the_missing_result(tmp_path):
    proc = run_cli_in_process("select", tuning_files(tmp_path), "--out", tmp_path)
    assert proc.returncode == 2 and "no result of cell tiny-tune-eps2-learning_rate0.01" in proc.stderr
    assert not (tmp_path / "sweeps" / "tiny-tune" / "v1" / "selection.json").exists()


@pytest.mark.full
@pytest.mark.xdist_group("ray")       # one pytest worker starts every Ray cluster: `ray stop` ends them all
def test_a_tuning_sweep_chooses_on_validation_and_writes_pinnable_specs(tmp_path):
    path = tuning_files(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("sweep", path, "--out", out, "--logdir", out, "--cpus-per-run", "1", env=QUIET, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli_in_process("select", path, "--out", out, "--write-specs", tmp_path / "tuned", "--record", tmp_path / "record")
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = json.loads((out / "sweeps" / "tiny-tune" / "v1" / "selection.json").read_text())["choices"]
    assert json.loads((tmp_path / "record" / "sweeps" / "tiny-tune" / "v1" / "selection.json").read_text())["choices"] == chosen
    for name in ("frontier.json", "frontier.md"):      # the grid's record beside the choice (`dprepro frontier` reads it)
        assert (tmp_path / "record" / "sweeps" / "tiny-tune" / "v1" / name).read_bytes() == \
            (out / "sweeps" / "tiny-tune" / "v1" / name).read_bytes()
    assert [c["target"]["epsilon"] for c in chosen] == [2.0, 8.0]
    for choice in chosen:
        target = f"eps{choice['target']['epsilon']:g}"
        scores = {}
        for lr in (0.01, 0.5):
            cell = f"tiny-tune-{target}-learning_rate{lr}"
            result = json.loads((out / "sweeps" / "tiny-tune" / "v1" / cell / "v1" / "result.json").read_text())
            scores[cell] = result["validation_accuracy"]["mean"]
        assert choice["chosen"] == max(scores, key=scores.get) and choice["configurations"] == 2
        # One epoch at learning rate 0.01 barely moves the model; 0.5 does: the search can tell them apart.
        assert abs(scores[f"tiny-tune-{target}-learning_rate0.5"] - scores[f"tiny-tune-{target}-learning_rate0.01"]) > 0.05
        record, search = choice["epsilon_of_record"], choice["epsilon_with_search"]
        assert "excludes the search over 2 configurations" in record["label"]
        assert search["holds"] and search["runs_composed"] == 3 and search["epsilon"] > record["epsilon"]
        spec = load_spec(tmp_path / "tuned" / f"tiny-tune-{target}.yaml")      # an ordinary spec, valid
        cell = load_spec(out / "sweeps" / "tiny-tune" / "v1" / "specs" / f"{choice['chosen']}.yaml")
        assert list(spec.seeds) == [0, 1, 2] and spec.training == cell.training and spec.privacy == cell.privacy
        assert spec.data == cell.data and f"{search['epsilon']:.3f}" in spec.description
    assert "eps with search" in proc.stdout

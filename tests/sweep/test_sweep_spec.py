"""Sweep files: strict validation (one line naming the file and the field, exit 2, nothing written)
and expansion into ordinary cell specs (sweep/sweep_spec.py)."""

import pytest
import yaml

from conftest import EXPERIMENTS, ROOT, run_cli
from dprepro import accounting, calibration
from dprepro.errors import InputError
from dprepro.spec import load_spec
from dprepro.sweep.sweep_spec import cell_yaml, load_sweep

FRONTIER = EXPERIMENTS / "sweeps" / "frontier.yaml"


def sweep_file(tmp_path, **changes):
    raw = {"schema": 1, "name": "t", "version": 1, "base": str(EXPERIMENTS / "smoke.yaml"),
           "grid": {"privacy.noise_multiplier": [1.3, 2.0]}, "seeds": [0]}
    raw.update(changes)
    raw = {k: v for k, v in raw.items() if v is not None}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cell_problems(spec) -> list:
    """What is wrong with a frontier cell's seeds, version and published values (none: [])."""
    return [what for what, wrong in (("seeds", list(spec.seeds) != [0, 1, 2]), ("version", spec.version != 1),
                                     ("expected kept from the base", bool(spec.expected))) if wrong]


def test_the_cell_check_can_fail():
    """The check above once read `A and B and C or not expected`, true whatever the cell. Now a
    cell that kept its base's published values, or other seeds or version, is caught."""
    base = load_sweep(FRONTIER).base
    assert base.expected, "the base must have published values for this check to mean anything"
    assert cell_problems(base.replace({"seeds": [0, 1, 2]})) == ["version", "expected kept from the base"] \
        if base.version != 1 else ["expected kept from the base"]
    assert cell_problems(base.replace({"seeds": [0], "expected": {}})) == ["seeds"] + (
        ["version"] if base.version != 1 else [])


def test_frontier_expands_into_calibrated_cells():
    sweep = load_sweep(FRONTIER)
    assert [c.name for c in sweep.cells] == ["frontier-eps0.5", "frontier-eps1", "frontier-eps2", "frontier-eps4",
                                             "frontier-eps8", "frontier-nonprivate"]
    for cell, target in zip(sweep.cells, (0.5, 1, 2, 4, 8)):
        spec = cell.spec
        assert spec.training.epochs == 15 and spec.sampling == "poisson"
        assert cell_problems(spec) == []
        eps = accounting.epsilon_block(spec)["accountants"]["rdp"]
        # noise rounded up to 4 decimals: epsilon at most the target, within 0.5 % of it (rdp's slope here)
        assert eps["holds_for_this_run"] and target * 0.995 <= eps["epsilon"] <= target
    nonprivate = sweep.cells[-1].spec
    assert not nonprivate.private and nonprivate.engine.name == "none" and cell_problems(nonprivate) == []
    assert len({c.spec.sha256 for c in sweep.cells}) == 6


def test_cell_file_is_an_ordinary_spec_with_the_same_hash(tmp_path):
    for cell in load_sweep(FRONTIER).cells:
        path = tmp_path / f"{cell.name}.yaml"
        path.write_text(cell_yaml(cell))
        assert load_spec(path).sha256 == cell.spec.sha256



def test_a_written_cells_noise_is_reused_only_when_it_checks(tmp_path, monkeypatch):
    """`load_sweep(..., written=OUT)` takes a cell's noise from the cell spec an earlier sweep wrote
    there, after two epsilon evaluations (calibration.is_calibration) instead of a search. A written
    noise one step (1e-4) too high, whose epsilon is still within the target, fails the check and is
    calibrated again; so is an unreadable file. The cells come out the same either way, and each
    calibration, and only a calibration, is announced through `progress` (a PLD search takes minutes)."""
    fresh = load_sweep(FRONTIER)
    out = tmp_path / "out"
    specs = out / "sweeps" / "frontier" / "v1" / "specs"
    specs.mkdir(parents=True)
    for cell in fresh.cells:
        (specs / f"{cell.name}.yaml").write_text(cell_yaml(cell))
    raw = yaml.safe_load((specs / "frontier-eps2.yaml").read_text())
    raw["privacy"]["noise_multiplier"] = round(raw["privacy"]["noise_multiplier"] + 1e-4, 4)
    (specs / "frontier-eps2.yaml").write_text(yaml.safe_dump(raw))
    (specs / "frontier-eps1.yaml").write_text("privacy: [not a spec")
    calibrated, real = [], calibration.calibrate
    monkeypatch.setattr(calibration, "calibrate", lambda spec, *a: calibrated.append(spec.name) or real(spec, *a))
    said = []                                   # the progress lines the CLI prints: one per real calibration
    again = load_sweep(FRONTIER, written=out, progress=said.append)
    assert [c.spec.sha256 for c in again.cells] == [c.spec.sha256 for c in fresh.cells]
    assert calibrated == ["frontier-eps1", "frontier-eps2"]
    assert said == [f"calibrating the noise of frontier-eps{t} to rdp epsilon {t}" for t in (1, 2)]
    assert load_sweep(FRONTIER, written=tmp_path / "nothing-here").cells[3].spec.sha256 == fresh.cells[3].spec.sha256
    assert len(calibrated) == 7

@pytest.mark.parametrize("changes, field", [
    ({"colour": "red"}, "colour"),
    ({"schema": 2}, "schema"),
    ({"name": "Bad Name"}, "name"),
    ({"version": 0}, "version"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"base": "nope.yaml"}, "base"),
    ({"grid": {}}, "grid"),
    ({"grid": {"privacy.noise": [1]}}, "grid.privacy.noise"),
    ({"grid": {"training.epochs": []}}, "grid.training.epochs"),
    ({"grid": {"training.epochs": [0]}}, "training.epochs"),            # the cell's own validation
    ({"grid": {"target_epsilon": {"accountant": "gdp", "values": [1]}}}, "grid.target_epsilon.accountant"),
    ({"grid": {"target_epsilon": {"accountant": "rdp", "values": [-1]}}}, "grid.target_epsilon.values"),
])
def test_bad_sweeps_are_refused_naming_the_field(tmp_path, changes, field):
    path = sweep_file(tmp_path, **changes)
    with pytest.raises(InputError) as e:
        load_sweep(path)
    message = str(e.value)
    assert message.startswith(str(path)) and f" {field}" in message and "\n" not in message


def test_cli_refuses_a_bad_sweep_before_anything(tmp_path):
    path = sweep_file(tmp_path, grid={"privacy.noise": [1]})
    proc = run_cli("sweep", path, "--out", tmp_path / "out", "--logdir", tmp_path / "logs", cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "grid.privacy.noise" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("text, says", [
    ("schema: 1\nschema: 1\n", "duplicate key"),
    ("grid: [unclosed\n", "not valid YAML"),
    ("- a list\n", "(top level)"),
])
def test_sweep_files_are_read_as_strictly_as_specs(tmp_path, text, says):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        load_sweep(path)
    assert str(e.value).startswith(str(path)) and says in str(e.value) and "\n" not in str(e.value)


def test_a_batch_size_axis_keeps_the_bases_examples_per_microbatch(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, grid={"training.batch_size": [125, 250]}))
    assert [(c.spec.training.batch_size, c.spec.privacy.num_microbatches) for c in sweep.cells] == [(125, 125), (250, 250)]
    both = load_sweep(sweep_file(tmp_path, grid={"training.batch_size": [250], "privacy.num_microbatches": [125]}))
    assert both.cells[0].spec.microbatch_size == 2          # named on the grid: as written


@pytest.mark.full
def test_the_tuned_frontier_search_expands_and_holds_validation_examples_out():
    """54 cells, each calibrated (14 s): full tier; the frontier's expansion is in the quick one."""
    sweep = load_sweep(EXPERIMENTS / "sweeps" / "tuned-scatternet-linear.yaml")
    assert len(sweep.cells) == 54 and sweep.base.data.validation_examples == 5000
    assert {c.spec.train_examples for c in sweep.cells} == {55000} and all(c.spec.poisson for c in sweep.cells)


def test_cells_that_differ_only_outside_the_accounting_share_one_calibration(tmp_path, monkeypatch):
    """A learning-rate axis does not change the schedule the accountant composes: its cells get one
    search and the same noise, the one each would get alone. An epochs axis does change it: one search
    per cell, and different noises."""
    calibrated, real = [], calibration.calibrate
    monkeypatch.setattr(calibration, "calibrate", lambda spec, *a: calibrated.append(spec.name) or real(spec, *a))
    target = {"target_epsilon": {"accountant": "rdp", "values": [2]}}
    said = []
    by_lr = load_sweep(sweep_file(tmp_path, grid={**target, "training.learning_rate": [0.1, 0.2]}), progress=said.append)
    assert len(calibrated) == len(said) == 1
    noises = {c.spec.privacy.noise_multiplier for c in by_lr.cells}
    assert noises == {calibration.calibrated_noise(by_lr.cells[1].spec, 2, "rdp")}
    calibrated.clear()
    by_epochs = load_sweep(sweep_file(tmp_path, grid={**target, "training.epochs": [1, 2]}))
    assert len(calibrated) == 2 and len({c.spec.privacy.noise_multiplier for c in by_epochs.cells}) == 2

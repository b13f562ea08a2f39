"""The self-check: a fresh result against a pinned one, the tolerance rule, the published values."""

import copy
import json

import pytest

from conftest import EXPERIMENTS, ROOT, raw_spec, run_cli
from dprepro import accounting, lower_bounds, mechanisms
from dprepro.records import compare
from dprepro.records.result import Result
from dprepro.spec import ENGINE_VERSIONS, Spec, load_spec, validate

SHIPPED = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if p.stem != "smoke")


def test_tolerance_rule():
    assert compare.accuracy_tolerance(0.004, 5, 1) == pytest.approx(3 * 0.004 * (1 / 5 + 1) ** 0.5)
    assert compare.accuracy_tolerance(0.0005, 5, 5) == 0.005  # the 0.5-point floor


@pytest.mark.parametrize("value,half_unit", [(0.942, 5e-4), (1.1799007, 5e-8), (0.95, 5e-3), (17.648, 5e-4)])
def test_published_precision(value, half_unit):
    assert compare.published_precision(value) == pytest.approx(half_unit)


def write(tmp_path, name, result):
    path = tmp_path / name
    path.write_text(json.dumps(result))
    return path


def record(raw: dict) -> Result:
    """A result file's content as the reader hands it to compare (checked and typed)."""
    return Result.from_json(copy.deepcopy(raw), "test-result.json")


def statuses(fresh, pinned):
    return {r.quantity.split(" (")[0]: r.status for r in compare.against_pinned(record(fresh), record(pinned))}


def test_result_matches_itself_and_cli_exits_0(smoke_runs, tmp_path):
    out, _, result = smoke_runs[0]
    path = out / "smoke" / "v1" / "result.json"
    proc = run_cli("compare", path, smoke_runs[1][0] / "smoke" / "v1" / "result.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # hash, engine version, 5 accountants, the lower bound, accuracy
    assert "FAIL" not in proc.stdout and proc.stdout.count("PASS") == 9
    assert "arithmetic path" in proc.stdout and "bit-identical" in proc.stdout


def test_epsilon_off_by_1e_8_fails_for_a_closed_form_accountant(smoke_runs, tmp_path):
    pinned = smoke_runs[0][2]
    fresh = copy.deepcopy(pinned)
    fresh["epsilon"]["accountants"]["rdp"]["epsilon"] *= 1 + 1e-8
    assert statuses(fresh, pinned)["epsilon rdp"] == "FAIL"
    proc = run_cli("compare", write(tmp_path, "fresh.json", fresh), write(tmp_path, "pinned.json", pinned))
    assert proc.returncode == 1 and "FAIL" in proc.stdout


PINNED_3EP = ROOT / "results" / "tutorial-3ep" / "v1" / "result.json"


def with_epsilons(pinned: dict, values: dict) -> dict:
    fresh = copy.deepcopy(pinned)
    for name, v in values.items():
        fresh["epsilon"]["accountants"][name]["epsilon"] = v["epsilon"]
    return fresh


def test_epsilons_computed_here_pass_against_the_pin():
    """The pin's ε were computed on another machine; this machine's must pass (not be equal)."""
    pinned = json.loads(PINNED_3EP.read_text())
    fresh = with_epsilons(pinned, accounting.epsilons(60000, 250, 1.3, 3, 1e-5))
    assert all(s == "PASS" for q, s in statuses(fresh, pinned).items() if q.startswith("epsilon "))


@pytest.mark.parametrize("accountant,relative", [
    ("pld", 2.7e-10), ("pld", -1.7e-9),        # what a second machine gave (issue 10)
    ("pld", 3.6e-9),                            # PLD of 20 epochs composed in two halves vs at once
    ("rdp", 1e-13), ("rdp_legacy", -1e-13), ("statement_once_per_epoch", 1e-13),  # float64 rounding
])
def test_last_digit_noise_passes(accountant, relative):
    pinned = json.loads(PINNED_3EP.read_text())
    fresh = copy.deepcopy(pinned)
    fresh["epsilon"]["accountants"][accountant]["epsilon"] *= 1 + relative
    assert statuses(fresh, pinned)[f"epsilon {accountant}"] == "PASS"


REAL_CHANGES = {
    "one more step": dict(noise_multiplier=1.3, epochs=3 + 1 / 240, steps_rule="ceil"),  # 721 steps
    "noise 1.301 (4th digit)": dict(noise_multiplier=1.301, epochs=3),
    "noise 1.3001 (5th digit)": dict(noise_multiplier=1.3001, epochs=3),
    "noise 1.299 (4th digit)": dict(noise_multiplier=1.299, epochs=3),
}


@pytest.mark.parametrize("change", list(REAL_CHANGES))
def test_a_real_change_of_the_schedule_fails_every_accountant(change):
    pinned = json.loads(PINNED_3EP.read_text())
    fresh = with_epsilons(pinned, accounting.epsilons(60000, 250, delta=1e-5, **REAL_CHANGES[change]))
    noise, epochs = REAL_CHANGES[change]["noise_multiplier"], int(REAL_CHANGES[change]["epochs"])
    fresh["epsilon"]["lower_bounds"]["shuffled_chua"]["epsilon"] = lower_bounds.shuffled_epsilon(noise, 240, epochs, 1e-5)
    rows = statuses(fresh, pinned)
    # the lower bound counts full epochs only: one step more leaves it as it was (a bound still)
    assert {q: s for q, s in rows.items() if q.startswith("epsilon ")} == {
        **{f"epsilon {name}": "FAIL" for name in accounting.ACCOUNTANTS},
        "epsilon at least": "PASS" if change == "one more step" else "FAIL"}


def test_a_finer_or_coarser_pld_discretization_fails():
    from dp_accounting.pld import PLDAccountant

    pinned = json.loads(PINNED_3EP.read_text())
    for interval in (5e-5, 2e-4):
        pld = PLDAccountant(value_discretization_interval=interval).compose(
            mechanisms.dpsgd_event(250 / 60000, 1.3, 720)).get_epsilon(1e-5)
        fresh = with_epsilons(pinned, {"pld": {"epsilon": pld}})
        assert statuses(fresh, pinned)["epsilon pld"] == "FAIL", interval


@pytest.mark.parametrize("accountant", ["rdp_legacy", "rdp", "pld", "statement_once_per_epoch"])
def test_another_accountants_value_fails(accountant):
    pinned = json.loads(PINNED_3EP.read_text())
    values = {name: v["epsilon"] for name, v in pinned["epsilon"]["accountants"].items()}
    other = next(v for name, v in values.items() if v != values[accountant])
    fresh = with_epsilons(pinned, {accountant: {"epsilon": other}})
    assert statuses(fresh, pinned)[f"epsilon {accountant}"] == "FAIL"


def test_the_tolerances_lie_between_noise_and_change():
    """Each tolerance is >= 100x the numerical noise measured and <= 1/50 of the smallest change."""
    smallest_change = 8.7e-5  # noise multiplier + 1e-4, statement_once_per_epoch, 3 epochs
    for name in accounting.ACCOUNTANTS:
        noise = 3.6e-9 if name == "pld" else 1e-13
        assert 100 * noise <= compare.epsilon_tolerance(name) <= smallest_change / 50, name


def test_arithmetic_path_row_is_information_only(smoke_runs):
    pinned = smoke_runs[0][2]
    rows = {r.quantity: r for r in compare.against_pinned(record(pinned), record(pinned))}
    assert rows["arithmetic path"].status == "INFO" and rows["arithmetic path"].tolerance == "bit-identical"
    other = copy.deepcopy(pinned)
    other["environment"]["arithmetic"]["id"] = "0" * 12
    rows = {r.quantity: r for r in compare.against_pinned(record(other), record(pinned))}
    assert rows["arithmetic path"].status == "INFO" and rows["arithmetic path"].tolerance == "statistical"


def test_accuracy_outside_the_band_fails(smoke_runs):
    pinned = smoke_runs[0][2]
    fresh = copy.deepcopy(pinned)
    fresh["test_accuracy"]["mean"] += 0.0049
    assert statuses(fresh, pinned)["test accuracy mean"] == "PASS"
    fresh["test_accuracy"]["mean"] += 0.0002
    assert statuses(fresh, pinned)["test accuracy mean"] == "FAIL"


def test_other_spec_content_fails(smoke_runs):
    pinned = smoke_runs[0][2]
    fresh = copy.deepcopy(pinned)
    fresh["spec_sha256"] = "0" * 64
    assert statuses(fresh, pinned)["spec content hash"] == "FAIL"


def test_published_values(smoke_runs):
    fresh = copy.deepcopy(smoke_runs[0][2])
    rdp = fresh["epsilon"]["accountants"]["rdp"]["epsilon"]
    fresh["spec"]["expected"] = {
        "epsilon_rdp": {"value": round(rdp, 4), "source": "test"},
        "epsilon_pld": {"value": 99.0, "source": "test"},
        "test_accuracy": {"value": 0.95, "source": "about 95%"},
    }
    fresh = record(fresh)
    rows = {r.quantity.split(" (")[0]: r.status for r in compare.against_published(
        fresh.spec, fresh.epsilon, {"test_accuracy": fresh.test_accuracy})}
    assert rows == {"published epsilon_rdp": "PASS", "published epsilon_pld": "FAIL",
                    "published test_accuracy": "INFO"}


def test_bad_result_file_is_exit_2(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    proc = run_cli("compare", tmp_path / "x.json", tmp_path / "x.json")
    assert proc.returncode == 2 and proc.stderr.strip() == f"{tmp_path / 'x.json'}: not a result file (invalid JSON at line 1)"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_spec_has_a_current_pinned_result(name):
    assert compare.pin_problem(load_spec(EXPERIMENTS / f"{name}.yaml"), ROOT / "results") is None


def test_an_edited_spec_without_a_new_version_is_caught():
    raw = raw_spec("tutorial-3ep")
    raw["training"]["learning_rate"] = 0.2
    problem = compare.pin_problem(Spec.from_resolved("experiments/tutorial-3ep.yaml", validate(raw, "x")), ROOT / "results")
    assert problem.startswith("experiments/tutorial-3ep.yaml: content changed since ")
    assert "bump `version`" in problem


def test_other_engine_version_fails(smoke_runs):
    pinned = smoke_runs[0][2]
    assert pinned["run"]["engine_version"] == ENGINE_VERSIONS["fast"] == 5
    fresh = copy.deepcopy(pinned)
    assert statuses(fresh, pinned)["fast engine version"] == "PASS"
    fresh["run"]["engine_version"] = 1
    assert statuses(fresh, pinned)["fast engine version"] == "FAIL"


def test_a_pin_made_with_an_older_engine_is_caught(tmp_path):
    spec = load_spec(EXPERIMENTS / "tutorial-3ep.yaml")
    pinned = json.loads((ROOT / "results" / "tutorial-3ep" / "v1" / "result.json").read_text())
    pinned["run"].pop("engine_version", None)   # as in results made before versions were recorded
    (tmp_path / "tutorial-3ep" / "v1").mkdir(parents=True)
    (tmp_path / "tutorial-3ep" / "v1" / "result.json").write_text(json.dumps(pinned))
    problem = compare.pin_problem(spec, tmp_path)
    assert problem == (f"{spec.path}: {tmp_path}/tutorial-3ep/v1/result.json was made with "
                       f"engine fast v1, the current one is v{ENGINE_VERSIONS['fast']}: re-pin (make pin)")


def test_the_pinned_engines_agree_on_real_data():
    """The tutorial's own engine (1 seed, full MNIST) lies in the fast engine's pinned band."""
    pinned = ROOT / "results" / "tutorial-1ep" / "v1"
    text, ok = compare.compare_files(pinned / "result-tutorial.json", pinned / "result.json")
    assert ok, text
    assert "engines differ (fresh tutorial, pinned fast)" in text

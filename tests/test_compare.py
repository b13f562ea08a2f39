"""The self-check: a fresh result against a pinned one, the tolerance rule, the published values."""

import copy
import json

import pytest

from conftest import EXPERIMENTS, ROOT, raw_spec, run_cli
from dprepro import compare
from dprepro.spec import Spec, load_spec, validate

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


def statuses(fresh, pinned):
    return {r.quantity.split(" (")[0]: r.status for r in compare.against_pinned(fresh, pinned)}


def test_result_matches_itself_and_cli_exits_0(smoke_runs, tmp_path):
    out, _, result = smoke_runs[0]
    path = out / "smoke" / "v1" / "result.json"
    proc = run_cli("compare", path, smoke_runs[1][0] / "smoke" / "v1" / "result.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout and proc.stdout.count("PASS") == 8  # hash, engine version, 5 accountants, accuracy


def test_epsilon_off_by_1e_8_fails(smoke_runs, tmp_path):
    pinned = smoke_runs[0][2]
    fresh = copy.deepcopy(pinned)
    fresh["epsilon"]["accountants"]["pld"]["epsilon"] *= 1 + 1e-8
    assert statuses(fresh, pinned)["epsilon pld"] == "FAIL"
    proc = run_cli("compare", write(tmp_path, "fresh.json", fresh), write(tmp_path, "pinned.json", pinned))
    assert proc.returncode == 1 and "FAIL" in proc.stdout


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
    rows = {r.quantity.split(" (")[0]: r.status for r in compare.against_published(fresh)}
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
    problem = compare.pin_problem(Spec("experiments/tutorial-3ep.yaml", validate(raw, "x")), ROOT / "results")
    assert problem.startswith("experiments/tutorial-3ep.yaml: content changed since ")
    assert "bump `version`" in problem


def test_other_engine_version_fails(smoke_runs):
    pinned = smoke_runs[0][2]
    assert pinned["run"]["engine_version"] == 2
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
                       "engine fast v1, the current one is v2: re-pin (make pin)")


def test_the_pinned_engines_agree_on_real_data():
    """The tutorial's own engine (1 seed, full MNIST) lies in the fast engine's pinned band."""
    pinned = ROOT / "results" / "tutorial-1ep" / "v1"
    text, ok = compare.compare_files(pinned / "result-tutorial.json", pinned / "result.json")
    assert ok, text
    assert "engines differ (fresh tutorial, pinned fast)" in text

"""Every epsilon against the published values (issue 3's table), curves, calibration, the CLI."""

import json
import math

import pytest

from conftest import EXPERIMENTS, run_cli
from dprepro import accounting
from dprepro.spec import load_spec

# (epochs, noise) -> (rdp_legacy, its order, rdp, its order, pld); n 60000, batch 250, delta 1e-5
KNOWN = {
    (3, 1.3): (0.7903529, 18, 0.5631726, 18, 0.3703),
    (5, 1.3): (0.8657676, None, 0.6353050, 17, 0.4804),
    (15, 1.3): (1.1799007, 17, 0.9422002, 17, 0.8530),
    (20, 1.1): (1.7556612, 12, 1.4427492, 12, 1.3010),
}


@pytest.mark.parametrize("epochs,noise", list(KNOWN), ids=[f"{e}ep-noise{n}" for e, n in KNOWN])
def test_known_values(epochs, noise):
    legacy, legacy_order, rdp, rdp_order, pld = KNOWN[(epochs, noise)]
    got = accounting.epsilons(60000, 250, noise, epochs, 1e-5)
    assert got["rdp_legacy"]["epsilon"] == pytest.approx(legacy, rel=1e-6)
    assert got["rdp"]["epsilon"] == pytest.approx(rdp, rel=1e-6)
    assert got["pld"]["epsilon"] == pytest.approx(pld, abs=1e-3)
    if legacy_order is not None:
        assert got["rdp_legacy"]["order"] == legacy_order
    assert got["rdp"]["order"] == rdp_order


@pytest.mark.parametrize("epochs,microbatch_size,once,poisson", [
    (5, 2, 21.254, 3.782),    # with the microbatching doubling, as a published 5-epoch notebook printed
    (15, 1, 17.648, 0.942),   # one example per microbatch: no doubling
])
def test_statement_values(epochs, microbatch_size, once, poisson):
    got = accounting.epsilons(60000, 250, 1.3, epochs, 1e-5, microbatch_size=microbatch_size)
    assert round(got["statement_once_per_epoch"]["epsilon"], 3) == once
    assert round(got["statement_poisson"]["epsilon"], 3) == poisson
    text = accounting.statement_text(60000, 250, 1.3, epochs, 1e-5, microbatch_size=microbatch_size)
    assert f"{once:.3f}" in text and f"{poisson:.3f}" in text
    assert ("with microbatching" if microbatch_size > 1 else "without microbatching") in text


def test_block_of_the_15_epoch_spec():
    block = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-15ep.yaml").data)
    assert block["steps"] == 3600 and block["q"] == 250 / 60000 and block["delta"] == 1e-5
    assert block["used_microbatching"] is False
    assert set(block["accountants"]) == set(accounting.ACCOUNTANTS)
    assert "tutorial" in block["accountants"]["rdp_legacy"]["description"]
    assert block["versions"] == {"dp-accounting": "0.4.3", "tensorflow-privacy": "0.9.0"}


def test_keras_script_spec_uses_the_doubling():
    assert accounting.epsilon_block(load_spec(EXPERIMENTS / "keras-script-20ep.yaml").data)["used_microbatching"]


def test_curve_is_increasing_and_ends_at_the_block():
    spec = load_spec(EXPERIMENTS / "tutorial-5ep.yaml").data
    curve = accounting.epsilon_curve(spec)
    block = accounting.epsilon_block(spec)
    for name, values in curve.items():
        assert len(values) == 5
        assert all(a < b for a, b in zip(values, values[1:])), name
        assert values[-1] == block["accountants"][name]["epsilon"]


def test_no_noise_is_infinite_epsilon():
    assert all(math.isinf(v["epsilon"]) for v in accounting.epsilons(60000, 250, 0.0, 3, 1e-5).values())


def test_nonprivate_spec_has_no_block():
    spec = load_spec(EXPERIMENTS / "nonprivate-3ep.yaml").data
    assert accounting.epsilon_block(spec) is None and accounting.epsilon_curve(spec) == {}


@pytest.mark.parametrize("name", ["rdp_legacy", "rdp", "pld"])
def test_calibration_round_trip(name):
    spec = load_spec(EXPERIMENTS / "tutorial-3ep.yaml").data
    sigma = accounting.calibrate(spec, 1.0, name)
    got = accounting.epsilons(60000, 250, sigma, 3, 1e-5)[name]["epsilon"]
    assert got == pytest.approx(1.0, abs=1e-3)


def test_cli_epsilon_table():
    proc = run_cli("epsilon", EXPERIMENTS / "tutorial-15ep.yaml", EXPERIMENTS / "nonprivate-3ep.yaml")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "steps 3600 (ceil(epochs * n / batch_size))" in lines[1]
    row = {line.split()[0]: line.split()[1:3] for line in lines[2:7]}
    assert row["rdp_legacy"] == ["1.1799007", "order"] and row["rdp"][0] == "0.9422002"
    assert "non-private spec: no epsilon" in proc.stdout


def test_cli_epsilon_json_and_curve():
    proc = run_cli("epsilon", "--json", "--epochs-range", EXPERIMENTS / "tutorial-3ep.yaml")
    rows = json.loads(proc.stdout)
    assert rows[0]["epsilon"]["accountants"]["rdp"]["epsilon"] == pytest.approx(0.5631726, rel=1e-6)
    assert len(rows[0]["curve"]["pld"]) == 3


def test_cli_calibrate():
    proc = run_cli("calibrate", "--target-epsilon", "1.18", "--accountant", "rdp_legacy",
                   EXPERIMENTS / "tutorial-15ep.yaml")
    assert proc.returncode == 0, proc.stderr
    sigma = float(proc.stdout.split("noise_multiplier ")[1].split()[0])
    assert sigma == pytest.approx(1.3, abs=2e-3)


def test_cli_calibrate_bad_target():
    proc = run_cli("calibrate", "--target-epsilon", "-1", EXPERIMENTS / "tutorial-3ep.yaml")
    assert proc.returncode == 2 and proc.stderr.strip() == "--target-epsilon: must be positive, got -1.0"


def test_cli_zero_noise_reports_infinity(write_spec):
    raw = __import__("conftest").raw_spec("tutorial-3ep")
    raw["privacy"]["noise_multiplier"] = 0.0
    path = write_spec(raw)
    proc = run_cli("epsilon", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" inf ") == 5
    rows = json.loads(run_cli("epsilon", "--json", path).stdout)
    assert {v["epsilon"] for v in rows[0]["epsilon"]["accountants"].values()} == {"inf"}

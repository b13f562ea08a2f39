"""Every epsilon against the published values (issue 3's table), curves, calibration, the CLI."""

import json
import math

import pytest

from conftest import EXPERIMENTS, run_cli_in_process
from dprepro import accounting, calibration, mechanisms
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
    block = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-15ep.yaml"))
    assert block["steps"] == 3600 and block["q"] == 250 / 60000 and block["delta"] == 1e-5
    assert block["used_microbatching"] is False and block["sampling"] == "shuffle"
    assert set(block["accountants"]) == set(accounting.ACCOUNTANTS)
    assert "tutorial" in block["accountants"]["rdp_legacy"]["description"]
    assert block["versions"] == {"dp-accounting": "0.4.3", "tensorflow-privacy": "0.9.0"}


def test_rdp_is_tf_privacy_compute_dp_sgd_privacy_for_the_same_steps():
    """`rdp` is computed here so that it can count the steps trained; with batch 250 those are
    tf-privacy's (ceil) steps and the value is tf-privacy's, to the last bit."""
    import logging
    from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib as tfp_lib

    logging.getLogger("absl").setLevel(logging.ERROR)
    for epochs, noise in ((3, 1.3), (15, 1.3), (20, 1.1)):
        eps, order = tfp_lib.compute_dp_sgd_privacy(60000, 250, noise, epochs, 1e-5)
        got = accounting.epsilons(60000, 250, noise, epochs, 1e-5)["rdp"]
        assert (got["epsilon"], got["order"]) == (eps, order)


def test_shuffled_run_labels_the_poisson_values_and_names_the_bound_that_holds():
    block = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-3ep.yaml"))
    for name in ("rdp_legacy", "rdp", "pld", "statement_poisson"):
        v = block["accountants"][name]
        assert v["sampling"] == "poisson" and v["holds_for_this_run"] is False
        assert v["label"] == "assumes Poisson sampling; this run used shuffling"
    once = block["accountants"]["statement_once_per_epoch"]
    assert once["holds_for_this_run"] and once["sampling"] == "once_per_epoch" and once["steps"] == 3
    assert block["of_record"] == "statement_once_per_epoch"
    assert round(once["epsilon"], 3) == 6.598


def test_every_value_names_the_adjacency_it_is_proved_for():
    """Issue 22: the once-per-epoch values treat each epoch as one Gaussian mechanism per example.
    That holds when the dataset's size is fixed (zero-out adjacency: the shuffle then never depends
    on the data and each example is in exactly one batch per epoch), not under add/remove, where an
    added example shifts every later fixed-size batch of its epoch. The Poisson values are
    dp_accounting's add/remove analysis. The label a user reads says which."""
    shuffled = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-3ep.yaml"))["accountants"]
    poisson = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-3ep-poisson.yaml"))["accountants"]
    for block in (shuffled, poisson):
        assert {n: v["adjacency"] for n, v in block.items()} == {
            "rdp_legacy": "add_remove", "rdp": "add_remove", "pld": "add_remove", "statement_poisson": "add_remove",
            "statement_once_per_epoch": "zero_out"}
    once = shuffled["statement_once_per_epoch"]["label"]
    assert once.startswith("holds for this run (shuffle sampling, sensitivity l2_norm_clip, zero-out adjacency")
    assert "not add/remove" in once
    assert poisson["pld"]["label"] == ("holds for this run (poisson sampling, sensitivity l2_norm_clip, "
                                       "add/remove adjacency)")
    with_releases = accounting.epsilon_block(load_spec(EXPERIMENTS / "tramer-boneh-scatternet-linear.yaml"))
    assert with_releases["accountants"]["rdp_once_per_epoch"]["adjacency"] == "zero_out"
    assert "zero-out adjacency" in with_releases["accountants"][with_releases["of_record"]]["label"]


def test_poisson_run_holds_the_poisson_values_and_records_the_tightest():
    """Same schedule, Poisson sampling: the tutorial's numbers now hold; the once-per-epoch bound
    does not (an example may be drawn in several steps of an epoch); of record: pld, the smallest."""
    block = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-3ep-poisson.yaml"))
    shuffled = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-3ep.yaml"))
    holds = {n: v["holds_for_this_run"] for n, v in block["accountants"].items()}
    assert holds == {"rdp_legacy": True, "rdp": True, "pld": True, "statement_poisson": True,
                     "statement_once_per_epoch": False}
    assert block["of_record"] == "pld" and block["sampling"] == "poisson"
    for name, v in block["accountants"].items():
        assert v["epsilon"] == shuffled["accountants"][name]["epsilon"]   # same numbers, other verdicts


def test_microbatches_of_several_examples_get_doubled_values_beside_the_tutorials():
    """keras-script-20ep: 50 microbatches of 5. rdp_legacy, rdp and pld keep the tutorial's
    sensitivity-1 values, labelled; `<name>_doubled` are those of noise_multiplier / 2; the
    statements already double."""
    block = accounting.epsilon_block(load_spec(EXPERIMENTS / "keras-script-20ep.yaml"))
    eps = block["accountants"]
    assert block["used_microbatching"] and block["microbatch_size"] == 5
    for name in accounting.CALIBRATABLE:
        assert eps[name]["sensitivity"] == 1 and "sensitivity l2_norm_clip" in eps[name]["label"]
        assert eps[name + "_doubled"]["sensitivity"] == 2
        assert eps[name + "_doubled"]["epsilon"] == pytest.approx(
            accounting.epsilons(60000, 250, 0.55, 20, 1e-5)[name]["epsilon"], rel=1e-12)
        assert eps[name + "_doubled"]["epsilon"] > 5 * eps[name]["epsilon"]
    assert round(eps["rdp"]["epsilon"], 7) == 1.4427492
    assert eps["statement_poisson"]["epsilon"] == pytest.approx(eps["rdp_doubled"]["epsilon"], rel=0.01)
    assert block["of_record"] == "statement_once_per_epoch"


@pytest.mark.parametrize("rule,steps", [("trained", 14040), ("ceil", 14063), ("floor", 14062)])
def test_step_rules_with_a_batch_that_does_not_divide_n(rule, steps):
    """Batch 256, 60 epochs: 234 steps per epoch are trained (the last 96 examples dropped);
    tf-privacy counts ceil(60 * 60000 / 256), the Keras script 60 * 60000 // 256."""
    assert accounting.count_steps(60000, 256, 60, rule) == steps


def test_epsilon_of_record_counts_the_steps_trained(write_spec):
    """With batch 256 the block's values count 14040 steps, as trained: below tf-privacy's own
    compute_dp_sgd_privacy (14063 steps), which remains reproducible as a published value under
    `steps: ceil`."""
    import logging
    from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib as tfp_lib

    raw = __import__("conftest").raw_spec("tutorial-3ep")
    raw["training"].update(batch_size=256, epochs=60)
    raw["privacy"]["num_microbatches"] = 256
    logging.getLogger("absl").setLevel(logging.ERROR)
    published, _ = tfp_lib.compute_dp_sgd_privacy(60000, 256, 1.3, 60, 1e-5)
    raw["expected"] = {"epsilon_rdp": {"value": round(float(published), 6), "steps": "ceil", "source": "tf-privacy"}}
    spec = load_spec(write_spec(raw))
    block = accounting.epsilon_block(spec)
    assert block["steps"] == 14040 and block["accountants"]["rdp"]["steps"] == 14040
    assert block["accountants"]["rdp"]["epsilon"] < published
    assert block["accountants"]["statement_poisson"]["steps"] == 14063        # the statement's own count
    assert "an upper bound" in accounting.verdict(block["accountants"]["statement_poisson"], "poisson", 1,
                                                  14040, 60)[1]
    again = block["under_published_conventions"]["epsilon_rdp"]
    assert again["epsilon"] == published and again["steps_rule"].startswith("ceil")
    from dprepro.records.compare import against_published
    from dprepro.records.result import EpsilonBlock
    rows = against_published(spec, EpsilonBlock.from_json(block), {})
    assert [r.status for r in rows] == ["PASS"]


def test_a_value_counting_fewer_steps_than_trained_does_not_hold():
    value = {"sampling": "poisson", "sensitivity": 1, "steps": 14039}
    holds, label = accounting.verdict(value, "poisson", 1, 14040, 60)
    assert not holds and label == "counts 14039 steps, fewer than the 14040 trained"


def test_the_published_5_epoch_notebook_statement_is_reproduced_and_explained():
    """The notebook printed 21.254 / 3.782 (used_microbatching=250, truthy: doubled) for training
    with one example per microbatch; the spec's own statement values are 8.935 / 0.635."""
    spec = load_spec(EXPERIMENTS / "tutorial-5ep.yaml")
    block = accounting.epsilon_block(spec)
    published = block["under_published_conventions"]
    assert round(published["epsilon_statement_once_per_epoch"]["epsilon"], 3) == 21.254
    assert round(published["epsilon_statement_poisson"]["epsilon"], 3) == 3.782
    assert published["epsilon_statement_poisson"]["used_microbatching"] is True
    assert round(block["accountants"]["statement_once_per_epoch"]["epsilon"], 3) == 8.935
    assert round(block["accountants"]["statement_poisson"]["epsilon"], 3) == 0.635
    assert "used_microbatching=250" in spec.expected["epsilon_statement_poisson"].note
    from dprepro.records.compare import against_published
    from dprepro.records.result import EpsilonBlock
    rows = {r.quantity: r.status for r in against_published(spec, EpsilonBlock.from_json(block), {})}
    assert rows["published epsilon_statement_poisson (as published: used_microbatching true)"] == "PASS"
    assert all(s == "PASS" for s in rows.values()), rows
    # Without the convention the published numbers do not match: the entry is what makes them pass.
    entry = spec.expected["epsilon_statement_poisson"]
    spec = spec.replace({"expected": {**{q: e.to_dict() for q, e in spec.expected.items()},
                                      "epsilon_statement_poisson": {"value": entry.value, "source": entry.source}}})
    block = accounting.epsilon_block(spec)
    rows = {r.quantity: r.status for r in against_published(spec, EpsilonBlock.from_json(block), {})}
    assert rows["published epsilon_statement_poisson"] == "FAIL"


def test_curve_is_increasing_and_ends_at_the_block():
    spec = load_spec(EXPERIMENTS / "tutorial-5ep.yaml")
    curve = accounting.epsilon_curve(spec)
    block = accounting.epsilon_block(spec)
    for name, values in curve.items():
        assert len(values) == 5
        assert all(a < b for a, b in zip(values, values[1:])), name
        assert values[-1] == block["accountants"][name]["epsilon"]


def test_no_noise_is_infinite_epsilon():
    assert all(math.isinf(v["epsilon"]) for v in accounting.epsilons(60000, 250, 0.0, 3, 1e-5).values())


def test_nonprivate_spec_has_no_block():
    spec = load_spec(EXPERIMENTS / "nonprivate-3ep.yaml")
    assert accounting.epsilon_block(spec) is None and accounting.epsilon_curve(spec) == {}


@pytest.mark.parametrize("name", ["rdp_legacy", "rdp", pytest.param("pld", marks=pytest.mark.full)])
def test_calibration_round_trip(name):
    """pld's search takes 40 s (a PLD per step of the bisection): full tier; the quick tier calibrates
    with pld in test_calibrate_a_small_reachable_target."""
    spec = load_spec(EXPERIMENTS / "tutorial-3ep.yaml")
    sigma = calibration.calibrate(spec, 1.0, name)
    got = accounting.epsilons(60000, 250, sigma, 3, 1e-5)[name]["epsilon"]
    assert got == pytest.approx(1.0, abs=1e-3)


def test_cli_epsilon_table():
    proc = run_cli_in_process("epsilon", EXPERIMENTS / "tutorial-15ep.yaml", EXPERIMENTS / "nonprivate-3ep.yaml",
                   EXPERIMENTS / "tutorial-5ep.yaml")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "shuffle sampling" in lines[1] and "3600 steps trained (epochs * floor(n / batch_size))" in lines[1]
    row = {line.split()[0]: line.split()[1:5] for line in lines[3:8]}
    assert row["rdp_legacy"] == ["1.1799007", "17", "3600", "no"] and row["rdp"][0] == "0.9422002"
    assert row["statement_once_per_epoch"] == ["17.6482721", "-", "15", "yes"]
    assert "assumes Poisson sampling; this run used shuffling" in lines[3]
    assert "of record (smallest that holds): statement_once_per_epoch 17.6482721" in proc.stdout
    assert "non-private spec: no epsilon" in proc.stdout
    assert "published epsilon_statement_once_per_epoch 21.254, computed as published (used_microbatching true" \
        in proc.stdout and ": 21.2543198; the notebook called" in proc.stdout


def test_cli_epsilon_json_and_curve():
    proc = run_cli_in_process("epsilon", "--json", "--epochs-range", EXPERIMENTS / "tutorial-3ep.yaml")
    rows = json.loads(proc.stdout)
    assert rows[0]["epsilon"]["accountants"]["rdp"]["epsilon"] == pytest.approx(0.5631726, rel=1e-6)
    assert len(rows[0]["curve"]["pld"]) == 3


def test_cli_calibrate():
    proc = run_cli_in_process("calibrate", "--target-epsilon", "1.18", "--accountant", "rdp_legacy",
                   EXPERIMENTS / "tutorial-15ep.yaml")
    assert proc.returncode == 0, proc.stderr
    sigma = float(proc.stdout.split("noise_multiplier ")[1].split()[0])
    assert sigma == pytest.approx(1.3, abs=2e-3)


def test_cli_calibrate_bad_target():
    proc = run_cli_in_process("calibrate", "--target-epsilon", "-1", EXPERIMENTS / "tutorial-3ep.yaml")
    assert proc.returncode == 2 and proc.stderr.strip() == "--target-epsilon: must be positive, got -1.0"


def test_cli_zero_noise_reports_infinity(write_spec):
    raw = __import__("conftest").raw_spec("tutorial-3ep")
    raw["privacy"]["noise_multiplier"] = 0.0
    path = write_spec(raw)
    proc = run_cli_in_process("epsilon", path)
    assert proc.returncode == 0, proc.stderr
    # five accountants and the shuffled lower bound: no noise, no privacy
    assert proc.stdout.split("  interval:")[0].count(" inf ") == 6 and "of record (smallest that holds): statement_once_per_epoch inf" \
        in proc.stdout
    rows = json.loads(run_cli_in_process("epsilon", "--json", path).stdout)
    assert {v["epsilon"] for v in rows[0]["epsilon"]["accountants"].values()} == {"inf"}


# Review of 0.5.0, defect 1: the noise search was bracketed at 0.1..100, so a small target ended in a
# traceback. A target any accountant can reach gets its answer; one it cannot is one line, exit 2.
def test_calibrate_a_small_reachable_target():
    """epsilon 0.005 over the 15-epoch Poisson schedule needs noise ~239 (PLD), beyond the old bracket."""
    proc = run_cli_in_process("calibrate", "--target-epsilon", "0.005", "--accountant", "pld",
                   EXPERIMENTS / "tutorial-15ep-poisson.yaml")
    assert proc.returncode == 0, proc.stderr
    sigma = float(proc.stdout.split("noise_multiplier ")[1].split()[0])
    assert sigma > 100
    spec = load_spec(EXPERIMENTS / "tutorial-15ep-poisson.yaml")
    got = mechanisms.poisson_epsilon("pld", spec.q, sigma, spec.steps_trained, 1e-5)[0]
    assert got == pytest.approx(0.005, rel=1e-3)    # the bisection's tolerance 1e-6 on sigma, ~1e-6 relative


def test_calibrate_an_unreachable_target_is_one_line():
    """RDP over tf-privacy's orders (largest 512) cannot go below ~0.008 at any noise: the target
    0.005 is refused in one line naming the flag, and the line points to the accountant that can."""
    proc = run_cli_in_process("calibrate", "--target-epsilon", "0.005", EXPERIMENTS / "tutorial-15ep-poisson.yaml")
    assert proc.returncode == 2 and proc.stdout == ""
    line, = proc.stderr.strip().splitlines()
    assert line.startswith("--target-epsilon: epsilon 0.005 is out of reach") and "pld" in line
    proc = run_cli_in_process("calibrate", "--target-epsilon", "1e9", EXPERIMENTS / "tutorial-15ep-poisson.yaml")
    assert proc.returncode == 2 and "below 0.01" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# Defect 2: calibrate ignored the doubled sensitivity of microbatches holding several examples.
def test_calibrate_doubles_the_noise_when_microbatches_hold_several_examples():
    one = load_spec(EXPERIMENTS / "tutorial-3ep.yaml")               # 250 microbatches of 1 example
    two = one.replace({"privacy.num_microbatches": 125})              # 125 microbatches of 2
    sigma_one, sigma_two = calibration.calibrate(one, 1.0), calibration.calibrate(two, 1.0)
    assert sigma_two == pytest.approx(2 * sigma_one, rel=1e-9)
    block = accounting.epsilon_block(two.replace({"privacy.noise_multiplier": sigma_two}))
    doubled = block["accountants"]["rdp_doubled"]
    assert doubled["sensitivity"] == 2 and doubled["epsilon"] == pytest.approx(1.0, abs=1e-3)


def test_a_shuffled_run_with_releases_has_a_holding_value_that_composes_them():
    """The once-per-epoch statement cannot count what was released before training; its composed twin
    can, and it is then the value of record of a shuffled run with private feature statistics."""
    block = accounting.epsilon_block(load_spec(EXPERIMENTS / "tramer-boneh-scatternet-linear.yaml"))
    composed, statement = block["accountants"]["rdp_once_per_epoch"], block["accountants"]["statement_once_per_epoch"]
    assert composed["holds_for_this_run"] and not statement["holds_for_this_run"]
    assert block["of_record"] == "rdp_once_per_epoch" and composed["steps"] == 40
    # Without releases it is the statement's mechanism over another grid of RDP orders (tf-privacy's
    # statement searches its own; 11.294 vs 11.255 here): within 0.5 %.
    alone = mechanisms.once_per_epoch_epsilon(3.04, 40, 1e-5, [])
    assert alone == pytest.approx(statement["epsilon"], rel=5e-3)
    # The two statistics' releases at noise 8 cost something, if little beside 40 epochs at noise 3.04.
    assert composed["epsilon"] > alone + 0.01
    # Gaussian mechanisms compose exactly in RDP: 40 of noise 3.04 and two of noise 8 are one of noise
    # (40 / 3.04^2 + 2 / 8^2)^(-1/2); the same conversion, so equal to float rounding.
    single = (40 / 3.04 ** 2 + 2 / 8.0 ** 2) ** -0.5
    assert composed["epsilon"] == pytest.approx(mechanisms.once_per_epoch_epsilon(single, 1, 1e-5, []), rel=1e-9)
    # Shuffled specs without releases keep their blocks as they were (no new value).
    assert "rdp_once_per_epoch" not in accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-3ep.yaml"))["accountants"]


@pytest.mark.parametrize("setting, target", [("large", 0.5), ("medium", 2.0), ("small", 8.0)])
def test_abadi_specs_train_the_most_epochs_their_epsilon_allows(setting, target):
    """Abadi et al.'s epsilon (moments accountant ~ rdp_legacy, Poisson-sampled lots, the DP-PCA
    release composed) stays at or below the published value after the spec's epochs and passes it one
    epoch later: the reproduction trains as long as the paper's budget lets it."""
    spec = load_spec(EXPERIMENTS / f"abadi-pca-mlp-{setting}-noise.yaml")
    before = accounting.releases(spec)
    assert len(before) == 1 and before[0]["noise_multiplier"] == {"large": 16, "medium": 7, "small": 4}[setting]

    def legacy(epochs):
        return mechanisms.poisson_epsilon("rdp_legacy", spec.q, spec.privacy.noise_multiplier,
                                          epochs * spec.steps_per_epoch, spec.privacy.delta, before)[0]
    assert legacy(spec.training.epochs) <= target < legacy(spec.training.epochs + 1)

"""The other end of the epsilon interval (lower_bounds.py, issue 33): the shuffled lower bound of Chua et
al. 2024 checked against what must hold of it, the Poisson PLD's two roundings, the interval in the
epsilon block and in every pinned result, and `dprepro calibrate --below-lower-bound`.

Not here: values printed in the papers. Their tables and figures could not be read on this machine (the
stored copies of arXiv 2403.17673 and 2411.04205 answer with their opening only); the closing note of
issue 33 says so. What stands in: the limits the construction must meet (one batch per epoch is the
Gaussian mechanism, to dp_accounting's own value), an independent closed form of the papers' one-epoch
cube-set bound, and a Monte Carlo run of the several-epoch mechanism with a fixed order.
"""

import dataclasses
import json
import math

import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution as pld

from conftest import EXPERIMENTS, ROOT, run_cli_in_process
from dprepro import accounting, calibration, lower_bounds, mechanisms
from dprepro.records.read import load_result
from dprepro.spec import load_spec

DELTA = 1e-5


@pytest.mark.parametrize("sigma", [0.8, 1.3, 2.0])
def test_one_batch_per_epoch_is_the_gaussian_mechanism(sigma):
    """With T = 1 the pair is N(1, sigma^2) against N(0, sigma^2) and the largest coordinate is the
    output itself: the bound must be the Gaussian mechanism's epsilon, from below. Tolerance 2e-4
    absolute: the optimistic rounding of the privacy loss (discretization 1e-4) loses at most one
    interval per direction; the 4000 buckets lose less (measured 5e-5 at each sigma here)."""
    gaussian = pld.from_gaussian_mechanism(sigma).get_epsilon_for_delta(DELTA)
    lower = lower_bounds.shuffled_epsilon(sigma, 1, 1, DELTA)
    assert gaussian - 2e-4 <= lower <= gaussian


def test_grows_with_epochs_and_falls_with_noise():
    """Strictly: each epoch adds a mechanism that is not the identity, each increase of sigma mixes
    the pair more. The tutorial's shape (T 240, sigma 1.3)."""
    by_epochs = [lower_bounds.shuffled_epsilon(1.3, 240, e, DELTA) for e in (1, 2, 5, 15)]
    assert all(a < b for a, b in zip(by_epochs, by_epochs[1:])), by_epochs
    by_noise = [lower_bounds.shuffled_epsilon(s, 240, 15, DELTA) for s in (0.8, 1.0, 1.3, 2.0)]
    assert all(a > b for a, b in zip(by_noise, by_noise[1:])), by_noise


def test_one_epoch_bound_agrees_with_the_closed_form_cube_sets():
    """The papers' single-epoch bound is a hockey-stick divergence on a cube set {max_t x_t <= C} (or its
    complement), written here in closed form without privacy loss distributions (cube_delta); its epsilon
    is found by bisection. The PLD of the bucketed pair takes the best union of buckets, so it can only be
    larger, less its optimistic rounding (at most 1e-4, one discretization interval): cube <= PLD + 1e-4.
    And the best union is a cube set here (measured: the PLD is 2e-5 to 6e-5 below the cube value at
    these three points), so the two agree to 1e-4 from the other side too, or the computations differ."""
    for sigma, t in ((0.6, 240), (1.3, 240), (1.0, 14)):
        eps = lower_bounds.shuffled_epsilon(sigma, t, 1, DELTA)
        low, high = 0.0, 2 * eps
        for _ in range(50):
            middle = (low + high) / 2
            low, high = (middle, high) if lower_bounds.cube_delta(middle, sigma, t) > DELTA else (low, middle)
        assert eps - 1e-4 <= high <= eps + 1e-4, (sigma, t, eps, high)


def test_fixed_order_is_one_epoch_at_sigma_over_root_epochs_by_simulation():
    """With one order for every epoch the example sits in the same batch each epoch. Simulated as it
    runs: E epochs of T Gaussian batch sums (shift 1 in one batch, the same in each epoch), summed over
    epochs per batch, the largest taken; its probability of staying below C under P and Q must be the
    closed form at sigma / sqrt(E) (lower_bounds.epoch_pair's CDFs). 200 000 draws: 4 standard errors
    (<= 0.0045) is the tolerance."""
    rng = np.random.default_rng(0)
    t, epochs, sigma, draws = 10, 4, 1.0, 200_000
    noise = rng.normal(0.0, sigma, size=(draws, epochs, t)).sum(axis=1)
    batch = rng.integers(0, t, size=draws)
    shifted = noise.copy()
    shifted[np.arange(draws), batch] += epochs          # the shift of every epoch, in the same batch
    for c in (2.0, 4.0, 6.0):
        below_p, below_q = (shifted.max(axis=1) <= c).mean(), (noise.max(axis=1) <= c).mean()
        # the per-epoch mean is N(shift, sigma^2 / E): the sums are the means times E
        log_p, log_q = lower_bounds._log_cdfs(np.array([c / epochs]), sigma / math.sqrt(epochs), t, 0.0, 1.0)
        assert below_p == pytest.approx(math.exp(log_p[0]), abs=0.0045)
        assert below_q == pytest.approx(math.exp(log_q[0]), abs=0.0045)
    assert lower_bounds.shuffled_epsilon(sigma, t, epochs, DELTA, fixed_order=True) == \
        lower_bounds.shuffled_epsilon(sigma / 2, t, 1, DELTA)


def test_left_over_examples_weaken_the_bound():
    """An example left out of every batch of an epoch (n not a multiple of the batch size) makes P
    partly Q: the bound must fall, and stay a bound (>= 0)."""
    full = lower_bounds.shuffled_epsilon(1.0, 100, 5, DELTA)
    some_left = lower_bounds.shuffled_epsilon(1.0, 100, 5, DELTA, left_over=0.05)
    assert 0 < some_left < full


def test_poisson_roundings_bracket_the_pld_accountant():
    """The pessimistic rounding is exactly what the `pld` accountant reports (1e-9: the same
    distribution composed in another order); the optimistic one is below it."""
    q, steps = 250 / 60000, 720
    low = lower_bounds.poisson_epsilon(q, 1.3, steps, DELTA)
    high = lower_bounds.poisson_epsilon(q, 1.3, steps, DELTA, pessimistic=True)
    assert high == pytest.approx(mechanisms.poisson_epsilon("pld", q, 1.3, steps, DELTA)[0], rel=1e-9)
    assert 0 < low < high


def test_the_tutorial_block_carries_its_interval():
    """tutorial-15ep: 15 epochs of 240 shuffled batches at noise 1.3; the interval is the shuffled
    lower bound to the once-per-epoch value of record, both zero-out adjacency."""
    block = accounting.epsilon_block(load_spec(EXPERIMENTS / "tutorial-15ep.yaml"))
    entry, interval = block["lower_bounds"]["shuffled_chua"], block["interval"]
    assert (entry["steps_per_epoch"], entry["epochs"], entry["sensitivity"]) == (240, 15, 1)
    assert interval["lower"] == entry["epsilon"] and interval["upper_from"] == "statement_once_per_epoch"
    assert interval["same_adjacency"] and 0 < interval["lower"] < 1.18 < interval["upper"]
    assert "inside" in lower_bounds.where(1.1799007, interval)


def test_every_shuffled_pin_shows_its_interval():
    """Every pinned result of a shuffled spec holds its interval, ordered, with the shuffled bound at
    its lower end (written by scripts/add_lower_bounds.py, which recomputed every number)."""
    paths = [p for p in sorted((ROOT / "results").glob("*/v*/result*.json"))
             if json.loads(p.read_text())["epsilon"]]
    assert len(paths) >= 30
    for path in paths:
        result = load_result(path)
        block = result.epsilon
        assert block.interval, path
        assert block.interval["lower_from"] == ("shuffled_chua" if result.spec.sampling == "shuffle"
                                                else "pld_optimistic"), path
        assert 0 < block.at_least <= float(block.interval["upper"]), path


@pytest.mark.full
def test_lower_bound_is_below_the_upper_bound_at_every_shipped_shuffled_spec():
    """The interval is never empty: at every shuffled spec under experiments/ the lower bound is below
    the once-per-epoch value (~10 s for the 13 specs: full tier)."""
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        spec = load_spec(path)
        if not spec.private or spec.sampling != "shuffle":
            continue
        s = accounting.Schedule.planned(spec)
        upper = mechanisms.once_per_epoch_epsilon(s.noise_multiplier / s.sensitivity, int(s.epochs), s.delta, ())
        assert lower_bounds.shuffled_entry(s)["epsilon"] < upper, path


def test_calibrate_below_the_lower_bound():
    """The smoke spec (10 batches, 1 epoch): the noise printed is rounded down, so at it the bound is
    above the target and one step (1e-4) higher it is not above by more than the bisection's slack."""
    spec = load_spec(EXPERIMENTS / "smoke.yaml")
    sigma = calibration.lower_bound_noise(spec, 1.0)
    s = accounting.Schedule.planned(spec)

    def at_least(noise):
        return lower_bounds.shuffled_entry(dataclasses.replace(s, noise_multiplier=noise))["epsilon"]

    assert at_least(sigma) > 1.0 >= at_least(sigma + 2e-4)
    proc = run_cli_in_process("calibrate", "--below-lower-bound", "--target-epsilon", "1", EXPERIMENTS / "smoke.yaml")
    assert proc.returncode == 0 and f"below noise_multiplier {sigma:.4f}" in proc.stdout


def test_calibrate_below_the_lower_bound_refuses_a_poisson_spec():
    proc = run_cli_in_process("calibrate", "--below-lower-bound", "--target-epsilon", "1",
                              EXPERIMENTS / "tutorial-15ep-poisson.yaml")
    assert proc.returncode == 2 and proc.stdout == ""
    line, = proc.stderr.strip().splitlines()
    assert line.startswith(f"{EXPERIMENTS / 'tutorial-15ep-poisson.yaml'}: data.sampling: poisson")


def test_a_result_whose_interval_is_inverted_is_refused(tmp_path):
    """A lower end above the upper one cannot come from the accountants (read.py): one line naming the
    file and the field."""
    from dprepro.errors import InputError

    raw = json.loads((ROOT / "results" / "tutorial-3ep" / "v1" / "result.json").read_text())
    raw["epsilon"]["interval"]["lower"] = 7.0
    path = tmp_path / "result.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"epsilon\.interval.*above its upper end"):
        load_result(path)

"""Privacy accounting: every epsilon a paper might cite for one DP-SGD schedule, labelled.

All values are for add-or-remove-one adjacency. The mathematics is dp_accounting's and
tf-privacy's; only the legacy RDP -> (eps, delta) conversion is written here, because no
installed library offers it any more.
"""

from __future__ import annotations

import logging
import math
from importlib.metadata import version

import dp_accounting
import numpy as np
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

PLD_DISCRETIZATION = 1e-4
LEGACY_ORDERS = [1 + x / 10 for x in range(1, 100)] + list(range(12, 64))
# The orders tf-privacy 0.9.0's compute_dp_sgd_privacy uses (for calibrating `rdp` alike).
RDP_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5] + list(range(5, 64)) + [128, 256, 512]
DESCRIPTIONS = {
    "rdp_legacy": "RDP, legacy conversion eps = min_a RDP(a) + log(1/delta)/(a-1) "
                  "(TF Privacy <= 0.5.1; the tutorial's printed value)",
    "rdp": "RDP, dp_accounting's improved conversion "
           "(tf-privacy 0.9.0 compute_dp_sgd_privacy)",
    "pld": f"Privacy loss distribution (dp_accounting PLDAccountant, "
           f"discretization {PLD_DISCRETIZATION:g}); the tightest Poisson-sampled bound",
    "statement_once_per_epoch": "tf-privacy 0.9.0 compute_dp_sgd_privacy_statement, each example "
                                "once per epoch (no amplification by sampling)",
    "statement_poisson": "tf-privacy 0.9.0 compute_dp_sgd_privacy_statement, assuming Poisson sampling",
}
ACCOUNTANTS = tuple(DESCRIPTIONS)
CALIBRATABLE = ("rdp_legacy", "rdp", "pld")


class LegacyRdpAccountant(RdpAccountant):
    """dp_accounting's RDP values over TF Privacy's old orders, with the old conversion."""

    def __init__(self):
        super().__init__(LEGACY_ORDERS)

    def get_epsilon_and_optimal_order(self, target_delta: float):
        eps = self.rdp - math.log(target_delta) / (np.array(LEGACY_ORDERS) - 1)
        best = int(np.nanargmin(eps))
        return float(eps[best]), LEGACY_ORDERS[best]

    def get_epsilon(self, target_delta: float) -> float:
        return self.get_epsilon_and_optimal_order(target_delta)[0]


def dpsgd_event(q: float, noise_multiplier: float, steps: int):
    """`steps` Poisson-subsampled Gaussian mechanisms with sampling probability `q`."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier)),
        steps)


def tutorial_steps(n: int, batch_size: int, epochs: float) -> int:
    """Steps as the tutorial's tools count them: ceil(epochs * n / batch_size)."""
    return int(math.ceil(epochs * n / batch_size))


def epsilons(n: int, batch_size: int, noise_multiplier: float, epochs: float, delta: float,
             microbatch_size: int = 1) -> dict:
    """{accountant: {"epsilon", "order" (None without one)}} for one schedule.

    `microbatch_size` > 1 sets the statement's `used_microbatching` (sensitivity doubling).
    A noise multiplier <= 0 gives eps = inf for every accountant.
    """
    if noise_multiplier <= 0:
        return {name: {"epsilon": math.inf, "order": None} for name in ACCOUNTANTS}
    from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib as tfp_lib

    q, steps = batch_size / n, tutorial_steps(n, batch_size, epochs)
    legacy = LegacyRdpAccountant().compose(dpsgd_event(q, noise_multiplier, steps))
    legacy_eps, legacy_order = legacy.get_epsilon_and_optimal_order(delta)
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # compute_dp_sgd_privacy warns that it is deprecated
    try:
        rdp_eps, rdp_order = tfp_lib.compute_dp_sgd_privacy(n, batch_size, noise_multiplier, epochs, delta)
    finally:
        absl_logger.setLevel(level)
    pld = PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    pld_eps = pld.compose(dpsgd_event(q, noise_multiplier, steps)).get_epsilon(delta)
    # The two numbers compute_dp_sgd_privacy_statement prints, at full precision.
    doubled = microbatch_size > 1
    once = tfp_lib._compute_dp_sgd_example_privacy(epochs, noise_multiplier, delta, doubled, None)
    poisson = tfp_lib._compute_dp_sgd_example_privacy(epochs, noise_multiplier, delta, doubled, q)
    return {
        "rdp_legacy": {"epsilon": legacy_eps, "order": float(legacy_order)},
        "rdp": {"epsilon": float(rdp_eps), "order": float(rdp_order)},
        "pld": {"epsilon": float(pld_eps), "order": None},
        "statement_once_per_epoch": {"epsilon": float(once), "order": None},
        "statement_poisson": {"epsilon": float(poisson), "order": None},
    }


def statement_text(n: int, batch_size: int, noise_multiplier: float, epochs: float, delta: float,
                   microbatch_size: int = 1) -> str:
    """tf-privacy's own privacy statement for the schedule, verbatim."""
    from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib as tfp_lib

    return tfp_lib.compute_dp_sgd_privacy_statement(
        n, batch_size, epochs, noise_multiplier, delta, used_microbatching=microbatch_size > 1)


def schedule(spec: dict) -> dict | None:
    """The accounting inputs of a resolved spec dict; None for a non-private spec."""
    privacy, training = spec["privacy"], spec["training"]
    if not privacy["enabled"]:
        return None
    return {
        "n": spec["data"]["train_examples"],
        "batch_size": training["batch_size"],
        "noise_multiplier": privacy["noise_multiplier"],
        "epochs": training["epochs"],
        "delta": privacy["delta"],
        "microbatch_size": training["batch_size"] // privacy["num_microbatches"],
    }


def epsilon_block(spec: dict) -> dict | None:
    """The `epsilon` block of a result: values, orders, inputs, versions and descriptions."""
    s = schedule(spec)
    if s is None:
        return None
    values = epsilons(**s)
    return {
        "delta": s["delta"],
        "q": s["batch_size"] / s["n"],
        "steps": tutorial_steps(s["n"], s["batch_size"], s["epochs"]),
        "steps_rounding": "ceil(epochs * n / batch_size)",
        "noise_multiplier": s["noise_multiplier"],
        "n": s["n"],
        "used_microbatching": s["microbatch_size"] > 1,
        "pld_discretization": PLD_DISCRETIZATION,
        "versions": {p: version(p) for p in ("dp-accounting", "tensorflow-privacy")},
        "accountants": {name: {**values[name], "description": DESCRIPTIONS[name]}
                        for name in ACCOUNTANTS},
    }


def epsilon_curve(spec: dict) -> dict:
    """{accountant: [eps after epoch 1, 2, ...]}; empty for a non-private spec."""
    s = schedule(spec)
    if s is None:
        return {}
    per_epoch = [epsilons(**{**s, "epochs": e}) for e in range(1, s["epochs"] + 1)]
    return {name: [v[name]["epsilon"] for v in per_epoch] for name in ACCOUNTANTS}


def calibrate(spec: dict, target_epsilon: float, accountant: str = "rdp") -> float:
    """The noise multiplier at which the spec's schedule reaches `target_epsilon`."""
    s = schedule(spec)
    fresh = {"rdp_legacy": LegacyRdpAccountant,
             "rdp": lambda: RdpAccountant(RDP_ORDERS),
             "pld": lambda: PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)}[accountant]
    q, steps = s["batch_size"] / s["n"], tutorial_steps(s["n"], s["batch_size"], s["epochs"])
    return dp_accounting.calibrate_dp_mechanism(
        fresh, lambda sigma: dpsgd_event(q, sigma, steps), target_epsilon, s["delta"],
        bracket_interval=dp_accounting.ExplicitBracketInterval(0.1, 100.0), tol=1e-6)

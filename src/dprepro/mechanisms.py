"""The mechanisms the accountants compose, as dp_accounting events, and the per-accountant epsilon of a
Poisson-sampled DP-SGD schedule; tf-privacy's statement values; the legacy RDP conversion (written here
because no installed library offers it any more). accounting.py labels what each value assumes."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

PLD_DISCRETIZATION = 1e-4
LEGACY_ORDERS = [1 + x / 10 for x in range(1, 100)] + list(range(12, 64))
# The orders tf-privacy 0.9.0's compute_dp_sgd_privacy uses (for `rdp` and for calibrating alike).
RDP_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5] + list(range(5, 64)) + [128, 256, 512]


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


FRESH = {"rdp_legacy": LegacyRdpAccountant,
         "rdp": lambda: RdpAccountant(RDP_ORDERS),
         "pld": lambda: PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)}


def dpsgd_event(q: float, noise_multiplier: float, steps: int):
    """`steps` Poisson-subsampled Gaussian mechanisms with sampling probability `q`."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier)),
        steps)


def composed_event(q: float, noise_multiplier: float, steps: int, before=(), tests=()):
    """The releases `before` (Gaussian mechanisms), then `steps` Poisson-sampled Gaussian steps, each
    with the `tests` that go with every step (DPSUR's: Poisson-sampled Gaussian mechanisms too)."""
    events = [dp_accounting.GaussianDpEvent(r["noise_multiplier"]) for r in before]
    events += [dpsgd_event(t["sampling_rate"], t["noise_multiplier"], steps) for t in tests]
    return dp_accounting.ComposedDpEvent([*events, dpsgd_event(q, noise_multiplier, steps)]) if events \
        else dpsgd_event(q, noise_multiplier, steps)


def poisson_epsilon(accountant: str, q: float, noise_multiplier: float, steps: int, delta: float, before=(),
                    tests=()):
    """(epsilon, order or None) of the releases `before`, then `steps` Poisson-sampled Gaussian steps
    (with their `tests`), under one accountant."""
    composed = FRESH[accountant]().compose(composed_event(q, noise_multiplier, steps, before, tests))
    if accountant == "pld":
        return float(composed.get_epsilon(delta)), None
    eps, order = composed.get_epsilon_and_optimal_order(delta)
    return float(eps), float(order)


def statement_epsilon(poisson: bool, q: float, noise_multiplier: float, epochs: float, delta: float,
                      used_microbatching: bool) -> float:
    """One of the two numbers compute_dp_sgd_privacy_statement prints, at full precision."""
    from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib as tfp_lib

    return float(tfp_lib._compute_dp_sgd_example_privacy(epochs, noise_multiplier, delta, used_microbatching,
                                                          q if poisson else None))


def once_per_epoch_epsilon(noise_multiplier: float, epochs: int, delta: float, before) -> float:
    """RDP epsilon of the releases `before`, then `epochs` Gaussian mechanisms of noise `noise_multiplier`
    (each example in one step per epoch: one un-amplified Gaussian mechanism per epoch)."""
    events = [dp_accounting.GaussianDpEvent(r["noise_multiplier"]) for r in before]
    event = dp_accounting.ComposedDpEvent(
        [*events, dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier), epochs)])
    return float(RdpAccountant(RDP_ORDERS).compose(event).get_epsilon(delta))




# DPSUR (Fu et al. 2024): the RDP orders of its published accounting (its code's), and its one test per step.
DPSUR_ORDERS = [1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512]


def selection_test(clip: float, noise_multiplier: float, sampling_rate: float) -> dict:
    """DPSUR's test of one step as the accountants and the ledger record it (training/selective.py)."""
    return {"mechanism": f"DPSUR's test: the validation-loss difference on a Poisson sample of the training "
                         f"examples, clipped to +-{clip:g} (one example moves it by at most {2 * clip:g}), plus "
                         f"Gaussian noise of std {noise_multiplier:g} x {2 * clip:g}; with every step",
            "noise_multiplier": noise_multiplier, "sampling_rate": sampling_rate}


def dpsur_published_epsilon(q: float, noise_multiplier: float, kept: int, delta: float, before=(), tests=()) -> float:
    """Fu et al.'s epsilon: RDP over their orders (with the conversion of Balle et al. 2020, as
    dp_accounting's), composing the releases and only the `kept` steps with their tests."""
    return float(RdpAccountant(DPSUR_ORDERS).compose(
        composed_event(q, noise_multiplier, kept, before, tests)).get_epsilon(delta))


def dpsur_published_kept_steps(schedule, target: float) -> int:
    """The most kept steps whose Fu et al. epsilon stays below `target`: where their run stops
    (`schedule`: an accounting.Schedule, for its rate, noise, sensitivity, delta, releases and tests)."""
    def theirs(kept: int) -> float:
        return dpsur_published_epsilon(schedule.q, schedule.noise_multiplier / schedule.sensitivity, kept,
                                       schedule.delta, schedule.releases, schedule.tests)
    low, high = 0, 1
    while theirs(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if theirs(middle) < target else (low, middle)
    return low

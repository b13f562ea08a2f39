"""Calibration: the noise multiplier at which a spec's schedule reaches a target epsilon (Poisson
sampling, the steps as trained, the spec's sensitivity and releases), as `dprepro calibrate` prints
it, and as sweeps and refits write it: rounded up at NOISE_DECIMALS, so that the epsilon of the
noise written is at most the target."""

from __future__ import annotations

import dataclasses
import json
import math

import dp_accounting

from dprepro.accounting import Schedule
from dprepro.mechanisms import FRESH
from dprepro.spec import Spec

BRACKET = (0.1, 100.0)                  # where calibrate looks first (the frontier's cells were made with it)
MIN_NOISE, MAX_NOISE = 1e-2, 1e4   # how far it widens the search when the target lies outside (beyond 1e4
#                                    the RDP numerics of dp_accounting fail; epsilon there is below 1e-3 already)
NOISE_DECIMALS = 4     # written noise multipliers are rounded up to this: epsilon at most the target


def calibrated_noise(spec: Spec, target_epsilon: float, accountant: str) -> float:
    """`calibrate`'s noise multiplier rounded up at NOISE_DECIMALS: the value a sweep's cell or a
    refit writes into its spec."""
    sigma = calibrate(spec, target_epsilon, accountant)
    return math.ceil(sigma * 10 ** NOISE_DECIMALS) / 10 ** NOISE_DECIMALS


def schedule_key(spec: Spec) -> str:
    """What calibration depends on, as text: the spec's planned schedule (examples, batch, steps,
    sampling, sensitivity, releases, tests, delta) without its noise. Two specs with the same key get the
    same calibrated noise for the same target and accountant."""
    schedule = dataclasses.replace(Schedule.planned(spec), noise_multiplier=0.0)
    return json.dumps(dataclasses.asdict(schedule), sort_keys=True)


def is_calibration(spec: Spec, noise: float, target_epsilon: float, accountant: str) -> bool:
    """Whether `noise` is what `calibrated_noise` gives for the spec's schedule: the accountant's
    epsilon at it is within the target, and one step (10^-NOISE_DECIMALS) lower it is above. Two
    epsilon evaluations instead of a search: a sweep reuses a cell's noise written by an earlier run
    of it only after this check."""
    schedule, step = Schedule.planned(spec), 10 ** -NOISE_DECIMALS
    return noise > step and schedule.poisson_epsilon(accountant, noise) <= target_epsilon \
        < schedule.poisson_epsilon(accountant, noise - step)


def calibrate(spec: Spec, target_epsilon: float, accountant: str = "rdp") -> float:
    """The noise multiplier at which the spec's schedule (steps as trained, Poisson sampling) reaches
    `target_epsilon`, with the spec's sensitivity: when a microbatch holds several examples, adding or
    removing one moves its clipped gradient by up to 2 x l2_norm_clip, so the noise needed is twice
    that of one example per microbatch. ValueError, in one line, when no noise multiplier from
    MIN_NOISE to MAX_NOISE (the spec's limit) reaches it."""
    if not spec.private:
        raise ValueError("a non-private spec has no noise to calibrate")
    # The search runs over sigma = noise multiplier / sensitivity (the noise in units of the
    # sensitivity), and its answer is scaled back: the numbers calibrate has always given.
    schedule = Schedule.planned(spec)
    q, steps, delta, before, sensitivity = schedule.q, schedule.steps, schedule.delta, schedule.releases, \
        schedule.sensitivity

    def eps(sigma):
        return schedule.poisson_epsilon(accountant, sigma * sensitivity)

    def search(low, high):
        return dp_accounting.calibrate_dp_mechanism(
            FRESH[accountant], lambda sigma: schedule.poisson_event(sigma * sensitivity), target_epsilon, delta,
            bracket_interval=dp_accounting.ExplicitBracketInterval(low, high), tol=1e-6)

    # Only the high end is checked first: epsilon at large noise is cheap (PLD at noise 0.1 costs ~15 s,
    # and the search evaluates its ends itself).
    low, high = BRACKET
    if (at_high := eps(high)) > target_epsilon:
        low, high = BRACKET[1], MAX_NOISE / sensitivity
        if (at_high := eps(high)) > target_epsilon:
            raise ValueError(f"epsilon {target_epsilon:g} is out of reach: noise multiplier {MAX_NOISE:g} still gives "
                             f"{accountant} epsilon {at_high:.3g} ({steps} steps, q {q:.4g}, delta {delta:g})"
                             + (f"; the {len(before)} release(s) before training alone spend most of it: lower "
                                f"their cost (more noise on them) or raise the target" if before else
                                "; the RDP conversion bottoms out over its orders: try the pld accountant"
                                if accountant != "pld" else ""))
        return sensitivity * search(low, high)
    try:
        return sensitivity * search(low, high)
    except ValueError:              # not bracketed at the low end: the target needs less noise than 0.1
        if (at_low := eps(MIN_NOISE)) < target_epsilon:
            raise ValueError(f"epsilon {target_epsilon:g} needs a noise multiplier below {MIN_NOISE:g} "
                             f"({accountant} epsilon there: {at_low:.3g}); train without privacy instead") from None
        return sensitivity * search(MIN_NOISE, BRACKET[0])


def lower_bound_noise(spec: Spec, target_epsilon: float, rel_tol: float = 1e-5) -> float:
    """The noise multiplier at which the spec's shuffled lower bound (lower_bounds.py: its epochs of
    floor(n / batch_size) batches, its sensitivity, at its delta) equals `target_epsilon`, rounded down at
    NOISE_DECIMALS: with less noise the run provably spends more than the target, whatever accountant
    prints. ValueError, in one line, for a spec that does not shuffle or a target out of reach."""
    from dprepro.lower_bounds import shuffled_entry

    if not spec.private:
        raise ValueError("a non-private spec has no noise to calibrate")
    if spec.sampling != "shuffle":
        raise ValueError(f"the shuffled lower bound is for shuffled batches; this spec samples {spec.sampling} "
                         f"(its interval's lower end is the PLD rounded down: `dprepro epsilon`)")
    planned = Schedule.planned(spec)

    def at_least(noise):
        return shuffled_entry(dataclasses.replace(planned, noise_multiplier=noise))["epsilon"]

    low, high = BRACKET[0], MAX_NOISE           # below 0.1 the bound runs into float64's range
    if at_least(low) <= target_epsilon:
        raise ValueError(f"epsilon {target_epsilon:g} is above the lower bound even at noise multiplier {low:g} "
                         f"({at_least(low):.3g}): no noise in range provably misses it")
    if at_least(high) > target_epsilon:
        raise ValueError(f"epsilon {target_epsilon:g} is below the lower bound even at noise multiplier {high:g}")
    while high / low > 1 + rel_tol:                 # geometric bisection: the bound falls as the noise grows
        middle = math.sqrt(low * high)
        low, high = (middle, high) if at_least(middle) > target_epsilon else (low, middle)
    return math.floor(low * 10 ** NOISE_DECIMALS) / 10 ** NOISE_DECIMALS

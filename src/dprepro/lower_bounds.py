"""The other end of each epsilon interval: how small the privacy loss of the training that ran can be.

Shuffled runs (`shuffle`: a fresh permutation each epoch, cut into T = floor(n / batch_size) batches,
the n - T*batch_size left over dropped). The lower bound of Chua, Ghazi, Kamath, Kumar, Manurangsi,
Sinha and Zhang ("How Private are DP-SGD Implementations?", ICML 2024, arXiv 2403.17673, one epoch;
"Scalable DP-SGD: Shuffling vs. Poisson Subsampling", NeurIPS 2024, arXiv 2411.04205, several),
computed here from their construction:

- the neighbouring datasets (zero-out adjacency, as the papers state it: one example replaced by one
  whose clipped gradient is zero, n and every batch size kept): every other example's gradient is the
  same constant, the differing one's is `sensitivity` x l2_norm_clip along one axis. One epoch then
  releases T Gaussian sums of noise sigma x l2_norm_clip whose means are all equal, except that the
  batch holding the example is shifted by the sensitivity: P = the mixture over that batch (each of
  the T with probability batch_size / n, none with the probability of being left over) of
  N(shift e_t, sigma^2 I); Q = N(0, sigma^2 I).
- any function of the output is post-processing, so the pair of distributions of the largest of the
  T coordinates, bucketed into intervals ("cube" sets {x : max_t x_t <= C}), has a privacy loss at
  most the mechanism's: P(max <= C) = (b/n) T Phi((C - shift)/sigma) Phi(C/sigma)^(T-1)
  + (left over / n) Phi(C/sigma)^T, Q(max <= C) = Phi(C/sigma)^T.
- E epochs re-shuffled independently compose that pair E times (dp_accounting's privacy loss
  distributions, rounded optimistically: every rounding and truncation lowers the value, so the result
  stays a lower bound); with one order kept for every epoch the example sits in the same batch each
  epoch, which is one epoch at noise sigma / sqrt(E).
- both directions (P against Q and Q against P); the bound is the larger epsilon.

It bounds the mechanism with gradients an adversary chooses, not this model's data: it is the least
any accountant that treats gradients as arbitrary can prove for the run (a printed epsilon below it is
wrong for the run), never the epsilon of record. It counts the training only: the releases before it
can only add to the privacy loss.

Poisson runs: dp_accounting's PLD of the same schedule rounded optimistically (a lower bound on the
Poisson-sampled Gaussian's epsilon, add/remove adjacency) beside the pessimistic one the `pld`
accountant reports. At discretization 1e-4 the two drift apart by about half an interval per step:
the interval says how tight the PLD's numerics are, not the analysis.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from dp_accounting.pld import privacy_loss_distribution as pld
from scipy.special import log_ndtr, ndtri

from dprepro.mechanisms import PLD_DISCRETIZATION

BUCKETS = 4000            # intervals of max_t x_t per epoch (fewer only loosen the bound)
TAIL = 1e-16              # the grid spans the max's quantiles TAIL .. 1 - TAIL under both P and Q
ADJACENCY = "zero_out"
PAPERS = "Chua et al. 2024 (ICML, arXiv 2403.17673; NeurIPS, arXiv 2411.04205)"


def _log_cdfs(c: np.ndarray, sigma: float, steps_per_epoch: int, left_over: float, shift: float):
    """log P(max <= c), log Q(max <= c) for the pair of one epoch (module docstring)."""
    log_q = steps_per_epoch * log_ndtr(c / sigma)
    in_batch = np.log1p(-left_over) + log_ndtr((c - shift) / sigma) + (steps_per_epoch - 1) * log_ndtr(c / sigma)
    log_p = in_batch if left_over == 0 else np.logaddexp(in_batch, math.log(left_over) + log_q)
    return log_p, log_q


def _bucket_masses(log_cdf: np.ndarray) -> np.ndarray:
    """The mass of (-inf, c_0], (c_0, c_1], ..., (c_K, inf) from log CDF values at c_0 < ... < c_K,
    each from the CDF where it is below 1/2 and from the survival function above (no cancellation)."""
    cdf, survival = np.exp(log_cdf), -np.expm1(log_cdf)
    inner = np.where(cdf[1:] < 0.5, cdf[1:] - cdf[:-1], survival[:-1] - survival[1:])
    return np.concatenate([[cdf[0]], np.maximum(inner, 0.0), [survival[-1]]])


def epoch_pair(sigma: float, steps_per_epoch: int, left_over: float = 0.0, shift: float = 1.0):
    """(masses under P, masses under Q) of the buckets of max_t x_t for one epoch."""
    t = steps_per_epoch
    low = sigma * float(ndtri(TAIL ** (1 / t)))          # Q(max <= low) = TAIL, and P's is smaller
    high = shift - sigma * float(ndtri(TAIL / t))        # P(max > high) <= TAIL, and Q's is smaller
    grid = np.linspace(low, high, BUCKETS + 1)
    log_p, log_q = _log_cdfs(grid, sigma, t, left_over, shift)
    return _merge_underflow(_bucket_masses(log_p), _bucket_masses(log_q))


def _merge_underflow(p: np.ndarray, q: np.ndarray, floor: float = 1e-280):
    """Each bucket whose mass under P or Q is below `floor` (where float64 loses it) merged into the
    next one that has both (the last such one for the trailing buckets): merging buckets is
    post-processing, so the bound stays a lower bound; a mass lost to underflow would read as an
    infinite privacy loss."""
    keep = (p > floor) & (q > floor)
    if keep.sum() < 2:
        raise ValueError("noise too small for the lower bound: P and Q do not overlap in float64")
    owner = np.minimum(np.searchsorted(np.flatnonzero(keep), np.arange(len(p))), keep.sum() - 1)
    return np.bincount(owner, weights=p), np.bincount(owner, weights=q)


def _log_pmf(masses: np.ndarray) -> dict:
    return {i: math.log(m) for i, m in enumerate(masses) if m > 0}


@functools.lru_cache(maxsize=512)
def shuffled_epsilon(sigma: float, steps_per_epoch: int, epochs: int, delta: float, left_over: float = 0.0,
                     fixed_order: bool = False) -> float:
    """The lower bound on epsilon at `delta` of `epochs` epochs of T = `steps_per_epoch` shuffled
    batches, noise `sigma` in units of the sensitivity (noise multiplier / sensitivity), a fraction
    `left_over` of the examples dropped each epoch; re-shuffled each epoch, or one `fixed_order`."""
    if fixed_order:
        return shuffled_epsilon(sigma / math.sqrt(epochs), steps_per_epoch, 1, delta, left_over)
    p, q = epoch_pair(sigma, steps_per_epoch, left_over)
    out = 0.0
    for upper, lower in ((p, q), (q, p)):
        one = pld.from_two_probability_mass_functions(_log_pmf(lower), _log_pmf(upper), pessimistic_estimate=False,
                                                      value_discretization_interval=PLD_DISCRETIZATION)
        composed = one.self_compose(epochs) if epochs > 1 else one
        out = max(out, float(composed.get_epsilon_for_delta(delta)))
    return out


def cube_delta(epsilon: float, sigma: float, steps_per_epoch: int, left_over: float = 0.0) -> float:
    """One epoch's hockey-stick divergence at e^epsilon on the best cube set {max_t x_t <= C} or its
    complement, in closed form over the grid of `epoch_pair`: the papers' single-epoch bound, without
    privacy loss distributions (the check of `shuffled_epsilon` at one epoch)."""
    p, q = epoch_pair(sigma, steps_per_epoch, left_over)
    below_p, below_q = np.cumsum(p)[:-1], np.cumsum(q)[:-1]
    above_p, above_q = 1 - below_p, 1 - below_q
    e = math.exp(epsilon)
    return float(max(np.max(below_q - e * below_p), np.max(above_p - e * above_q), 0.0))


@functools.lru_cache(maxsize=512)
def poisson_epsilon(q: float, sigma: float, steps: int, delta: float, release_noise: tuple = (),
                    pessimistic: bool = False, tests: tuple = ()) -> float:
    """The PLD epsilon of the releases (Gaussian, their noise multipliers `release_noise`) then `steps`
    Poisson-sampled Gaussian steps (noise `sigma` in units of the sensitivity), rounded down (optimistic: a lower bound) or up (pessimistic: the `pld` accountant's
    value). The optimistic rounding uses dp_accounting's privacy buckets, which it falls back to anyway."""
    steps_pld = pld.from_gaussian_mechanism(sigma, pessimistic_estimate=pessimistic, sampling_prob=q,
                                            use_connect_dots=pessimistic,
                                            value_discretization_interval=PLD_DISCRETIZATION).self_compose(steps)
    for noise in release_noise:
        steps_pld = steps_pld.compose(pld.from_gaussian_mechanism(
            noise, pessimistic_estimate=pessimistic, use_connect_dots=pessimistic,
            value_discretization_interval=PLD_DISCRETIZATION))
    for rate, noise in tests:        # DPSUR's test with every step: (its sampling rate, its noise multiplier)
        steps_pld = steps_pld.compose(pld.from_gaussian_mechanism(
            noise, pessimistic_estimate=pessimistic, sampling_prob=rate, use_connect_dots=pessimistic,
            value_discretization_interval=PLD_DISCRETIZATION).self_compose(steps))
    return float(steps_pld.get_epsilon_for_delta(delta))


def shuffled_entry(schedule) -> dict:
    """The shuffled lower bound of a schedule that ran (accounting.Schedule, `shuffle` sampling): full
    epochs only (a lower bound counting fewer steps than ran is still one), the training only."""
    t = schedule.n // schedule.batch_size
    epochs = schedule.steps // t
    left_over = (schedule.n - t * schedule.batch_size) / schedule.n
    sigma = schedule.noise_multiplier / schedule.sensitivity
    eps = math.inf if sigma <= 0 else shuffled_epsilon(sigma, t, epochs, schedule.delta, left_over)
    return {"epsilon": eps, "sampling": "shuffle", "adjacency": ADJACENCY, "sensitivity": schedule.sensitivity,
            "noise_multiplier": schedule.noise_multiplier, "steps_per_epoch": t, "epochs": epochs,
            "left_over": left_over, "order": "re-shuffled each epoch", "counts_releases": False,
            "buckets": BUCKETS, "pld_discretization": PLD_DISCRETIZATION, "rounding": "optimistic",
            "description": f"lower bound for shuffled batches ({PAPERS}): {epochs} epoch(s) of {t} batches, the pair of "
                           f"the largest batch sum's distributions composed per epoch; it bounds the mechanism with "
                           f"adversarial gradients, counts the training only, and is never the epsilon of record"}


def poisson_entry(schedule) -> dict:
    """The optimistic PLD epsilon of a Poisson schedule (the pessimistic one is `pld`'s)."""
    sigma = schedule.noise_multiplier / schedule.sensitivity
    low = math.inf if sigma <= 0 else poisson_epsilon(
        schedule.q, sigma, schedule.steps, schedule.delta, tuple(r["noise_multiplier"] for r in schedule.releases),
        tests=tuple((t["sampling_rate"], t["noise_multiplier"]) for t in schedule.tests))
    return {"epsilon": low, "sampling": "poisson", "adjacency": "add_remove",
            "sensitivity": schedule.sensitivity, "noise_multiplier": schedule.noise_multiplier,
            "steps": schedule.steps, "counts_releases": True, "pld_discretization": PLD_DISCRETIZATION,
            "rounding": "optimistic",
            "description": f"dp_accounting's PLD of the same Poisson schedule rounded down (discretization "
                           f"{PLD_DISCRETIZATION:g}): the Poisson-sampled Gaussian's epsilon is at least this; "
                           f"the rounded-up value is `pld`'s"}


ENTRIES = {"shuffle": ("shuffled_chua", shuffled_entry), "poisson": ("pld_optimistic", poisson_entry)}


def block(schedule, of_record: str | None, record: dict | None) -> tuple[dict, dict | None]:
    """(the `lower_bounds` part of an epsilon block, its `interval`): the lower bound for the schedule's
    sampling, and the interval [lower bound, value of record] with the adjacency of each end."""
    name, entry_of = ENTRIES[schedule.sampling]
    entries = {name: entry_of(schedule)}
    if record is None:
        return entries, None
    low, high = entries[name], record
    same = low["adjacency"] == high["adjacency"]
    return entries, {
        "lower": low["epsilon"], "lower_from": name, "upper": high["epsilon"], "upper_from": of_record,
        "adjacency": {"lower": low["adjacency"], "upper": high["adjacency"]}, "same_adjacency": same,
        "text": f"this run's epsilon is at least {low['epsilon']:.4f} ({name}) and at most {high['epsilon']:.4f} "
                f"({of_record}), at delta {schedule.delta:g}" + (
                    f", both for {ADJACENCY_TEXT[low['adjacency']]}" if same else
                    f"; the lower end is for {ADJACENCY_TEXT[low['adjacency']]}, the upper for "
                    f"{ADJACENCY_TEXT[high['adjacency']]}")}


ADJACENCY_TEXT = {"zero_out": "zero-out adjacency (one example's gradient replaced by zero)",
                  "add_remove": "add/remove adjacency"}


def published_against(expected: dict, block) -> list[tuple[str, float, str]]:
    """(quantity, published value, where it lies) for each published epsilon (`expected`: {quantity:
    value}) whose accountant does not hold for a shuffled run, against the run's interval (`block`:
    the epsilon block as written); empty without an interval or for a Poisson run."""
    if not block.get("interval") or block.get("sampling") != "shuffle":
        return []
    accountants = block["accountants"]
    return [(quantity, value, where(value, block["interval"])) for quantity, value in expected.items()
            if quantity.startswith("epsilon_") and quantity[len("epsilon_"):] in accountants
            and not accountants[quantity[len("epsilon_"):]]["holds_for_this_run"]]


def where(value: float, interval: dict) -> str:
    """Where a printed or published epsilon lies against a run's interval, in one clause."""
    if value < interval["lower"]:
        return (f"below the lower bound {interval['lower']:.4f}: wrong for this run (its epsilon is at least "
                f"{interval['lower'] / value:.2g} x this)")
    if value <= interval["upper"]:
        return (f"inside [{interval['lower']:.4f}, {interval['upper']:.4f}]: not disproved by the lower bound, "
                f"not proved by any bound that holds")
    return f"above the epsilon of record {interval['upper']:.4f}: it holds, loosely"

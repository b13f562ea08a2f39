"""The f-DP one-run lower bound (Mahloujifar, Melis, Chaudhuri, "Auditing f-Differential Privacy in
One Run", ICML 2025), read from the same guesses as Steinke et al.'s bound (bounds.py).

The game is the same: m canaries, each in on a fair coin; r guesses (IN or OUT), v of them right.
The hypothesis tested is a trade-off curve instead of one (eps, delta) pair: here the Gaussian one,
"training is mu-GDP", whose type II error at type I error x is Phi(Phi^-1(1 - x) - mu). Their bound
tracks two probability masses on the event "v or more guesses right": `right` (alpha * v / m) and
`wrong` (alpha * (r - v) / m). Stepping the count of right guesses down from v, the curve forces the
wrong mass up to at least wrong_floor(right) = Phi(Phi^-1(right) - mu), and every unit the wrong mass
grows moves i / (r - i) of a unit into the right mass (capped at 1). If the two masses together
then exceed r / m, what r guesses can hold, the event cannot have probability alpha: mu-GDP is
refuted at confidence 1 - alpha.

`epsilon_lower_bound` reports the largest refuted mu as an epsilon at the audit's delta (the
(eps, delta) point of the mu-GDP curve), so it reads beside Steinke's. Its assumption: it refutes
Gaussian curves. DP-SGD's curve over many steps is close to Gaussian (the central limit theorem of
Dong, Roth and Su), but not equal to it; Steinke's bound assumes nothing about the curve's shape, so
the audit's verdict stays on Steinke's and this bound is reported beside it.
"""

from __future__ import annotations

import math

from scipy import optimize, special

MU_CEILING = 60.0      # the search stops there: mu-GDP at mu 60 is epsilon > 1000 at any delta used here


def gdp_delta(mu: float, eps: float) -> float:
    """delta(eps) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Dong, Roth, Su, Cor. 2.13)."""
    if mu <= 0:
        return 0.0
    first = special.ndtr(-eps / mu + mu / 2)
    second = math.exp(eps + special.log_ndtr(-eps / mu - mu / 2))
    return max(0.0, float(first - second))


def gdp_mu(eps: float, delta: float) -> float:
    """The mu whose GDP curve passes through (eps, delta): delta(eps) grows with mu."""
    return float(optimize.brentq(lambda mu: gdp_delta(mu, eps) - delta, 1e-12, MU_CEILING, xtol=1e-12))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The eps of mu-GDP at delta (0 when mu-GDP already has delta(0) <= delta)."""
    if gdp_delta(mu, 0.0) <= delta:
        return 0.0
    high = 1.0
    while gdp_delta(mu, high) > delta:
        high *= 2
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, high, xtol=1e-10))


def excess_mass(mu: float, m: int, r: int, v: int, alpha: float) -> float:
    """What the recursion needs beyond the r / m that r guesses can hold; > 0 refutes mu-GDP."""
    right, wrong = alpha * v / m, alpha * (r - v) / m
    for i in range(v - 1, -1, -1):
        floor = float(special.ndtr(special.ndtri(right) - mu)) if right > 0 else 0.0
        if floor <= wrong:           # the wrong mass no longer grows: neither mass changes again
            break
        right = min(1.0, right + i / (r - i) * (floor - wrong))
        wrong = floor
    return right + wrong - r / m


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float = 0.95) -> float:
    """The epsilon at `delta` of the largest mu-GDP refuted at `confidence` by v right of r guesses
    on m canaries (0 if none). A larger mu is harder to refute, so the refuted mus are an interval."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    alpha = 1.0 - confidence
    low = gdp_mu(0.0, delta)                   # the mu of (0, delta): refuting less says nothing
    if excess_mass(low, m, r, v, alpha) <= 0:
        return 0.0
    if excess_mass(MU_CEILING, m, r, v, alpha) > 0:
        return gdp_epsilon(MU_CEILING, delta)
    return gdp_epsilon(optimize.brentq(lambda u: excess_mass(u, m, r, v, alpha), low, MU_CEILING, xtol=1e-9), delta)

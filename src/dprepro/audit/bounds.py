"""The one-run epsilon lower bound (Steinke, Nasr, Jagielski, "Privacy Auditing with One (1)
Training Run", NeurIPS 2023, Theorem 3.1 / their Appendix D's p-value).

Setting: m canaries, each in the training set with probability 1/2, independently. The auditor
guesses IN for some canaries and OUT for others (r guesses in all, abstaining on the rest) and gets
v right. If training is (eps, delta)-DP, then with X ~ Binomial(r, q), q = e^eps / (1 + e^eps),

    P[v correct or more] <= P[X >= v] + 2 m delta max_{1<=i<=v} P[v - i <= X < v] / i.

The right-hand side is the p-value of "training is (eps, delta)-DP"; it grows with eps. The lower
bound at confidence c is the largest eps whose p-value is below 1 - c: every smaller eps is refuted.
Searching over several guess counts k spends the confidence: each is tested at (1 - c) / tries
(Bonferroni), so the largest bound found still holds at confidence c.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from dprepro.audit import fdp

EPSILON_CEILING = 50.0   # beyond this no finite number of canaries could tell; the search stops there


def correct_guess_rate(eps: float) -> float:
    """q = e^eps / (1 + e^eps): the accuracy of eps-DP randomized response on one fair coin."""
    return 1.0 / (1.0 + math.exp(-eps))


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Upper bound on P[at least v of r guesses correct] for an (eps, delta)-DP training with m canaries."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = correct_guess_rate(eps)
    tail = stats.binom.sf(v - 1, r, q)                  # P[X >= v]
    if delta == 0 or v == 0:
        return min(1.0, float(tail))
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)   # P[X = v-1], P[X = v-2], ..., P[X = 0]
    worst = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))  # max_i P[v-i <= X < v] / i
    return min(1.0, float(tail) + 2 * m * delta * worst)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float = 0.95) -> float:
    """The largest eps refuted at `confidence` by v correct of r guesses on m canaries (0 if none)."""
    alpha = 1.0 - confidence
    if p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    if p_value(m, r, v, EPSILON_CEILING, delta) < alpha:
        return EPSILON_CEILING
    return float(optimize.brentq(lambda e: p_value(m, r, v, e, delta) - alpha, 0.0, EPSILON_CEILING,
                                 xtol=1e-9, rtol=1e-12))


def guess_counts(m: int) -> list[int]:
    """The k tried (k IN guesses for the highest scores, k OUT for the lowest), fixed before scoring."""
    return [k for k in (5, 10, 20, 50, 100, 200, 300, 400, 500, 1000, 2000) if 2 * k <= m] or [m // 2]


def audit_canaries(scores: np.ndarray, included: np.ndarray, delta: float, confidence: float = 0.95,
                   tries_elsewhere: int = 1) -> dict:
    """Guess IN for the k highest and OUT for the k lowest scores, for each k of `guess_counts`;
    the bound of each k is taken at confidence 1 - (1 - confidence) / (len(ks) * tries_elsewhere)
    (`tries_elsewhere`: further tests the caller maximises over, e.g. seeds). Returns the best, and
    beside it the best f-DP (Gaussian) bound of the same guesses (audit/fdp.py), equally corrected."""
    scores, included = np.asarray(scores, dtype=float), np.asarray(included, dtype=bool)
    m = len(scores)
    order = np.argsort(-scores, kind="stable")          # highest score first
    ks = guess_counts(m)
    per_test = 1.0 - (1.0 - confidence) / (len(ks) * tries_elsewhere)
    rows = []
    for k in ks:
        correct = int(included[order[:k]].sum() + (~included[order[m - k:]]).sum())
        rows.append({"k": k, "guesses": 2 * k, "correct": correct,
                     "epsilon_lower_bound": epsilon_lower_bound(m, 2 * k, correct, delta, per_test),
                     "fdp_epsilon_lower_bound": fdp.epsilon_lower_bound(m, 2 * k, correct, delta, per_test)})
    best = max(rows, key=lambda row: row["epsilon_lower_bound"])
    best_fdp = max(rows, key=lambda row: row["fdp_epsilon_lower_bound"])     # its own k
    return {"epsilon_lower_bound": best["epsilon_lower_bound"], "k": best["k"], "guesses": best["guesses"],
            "correct": best["correct"], "fdp_epsilon_lower_bound": best_fdp["fdp_epsilon_lower_bound"],
            "fdp_k": best_fdp["k"], "canaries": m, "included": int(included.sum()),
            "delta": delta, "confidence": confidence, "confidence_per_test": per_test, "tries": rows}


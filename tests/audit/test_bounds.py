"""The one-run lower bound against values computed by hand (audit/bounds.py)."""

import math

import numpy as np
import pytest
from scipy import stats

from dprepro.audit import bounds


def test_correct_guess_rate_is_randomized_response():
    assert bounds.correct_guess_rate(0.0) == 0.5
    assert bounds.correct_guess_rate(math.log(3)) == pytest.approx(0.75, abs=1e-15)


def test_p_value_without_delta_is_the_binomial_tail():
    # P[Binomial(4, 1/2) >= 3] = (4 + 1) / 16, by counting.
    assert bounds.p_value(m=4, r=4, v=3, eps=0.0, delta=0.0) == pytest.approx(5 / 16, abs=1e-15)
    # q = 3/4 at eps = ln 3: P[X >= 2] for X ~ Binomial(2, 3/4) = 9/16.
    assert bounds.p_value(m=2, r=2, v=2, eps=math.log(3), delta=0.0) == pytest.approx(9 / 16, abs=1e-15)


def test_p_value_delta_term_by_hand():
    # r = v = 2, q = 1/2: P[X>=2] = 1/4; max over i of P[2-i <= X < 2] / i = max(1/2, (1/2 + 1/4) / 2) = 1/2;
    # p = 1/4 + 2 m delta / 2 with m = 2.
    assert bounds.p_value(m=2, r=2, v=2, eps=0.0, delta=1e-3) == pytest.approx(0.25 + 2 * 2 * 1e-3 * 0.5, abs=1e-15)
    # the delta term can dominate and is capped at 1
    assert bounds.p_value(m=10_000, r=2, v=2, eps=0.0, delta=0.1) == 1.0


def test_lower_bound_for_all_correct_guesses_by_hand():
    # 10 of 10 right, delta 0: p = q^10; at 95 %: q = 0.05 ** 0.1, eps = log(q / (1 - q)).
    q = 0.05 ** 0.1
    assert bounds.epsilon_lower_bound(10, 10, 10, 0.0, 0.95) == pytest.approx(math.log(q / (1 - q)), abs=1e-8)


def test_no_bound_at_chance_and_none_from_too_few_guesses():
    assert bounds.epsilon_lower_bound(1000, 200, 100, 1e-5) == 0.0   # half right: chance
    assert bounds.epsilon_lower_bound(1000, 4, 4, 1e-5) == 0.0        # 1/16 > 5 %: nothing refuted


def test_bound_is_monotone_in_correct_guesses():
    values = [bounds.epsilon_lower_bound(1000, 200, v, 1e-5) for v in range(100, 201, 5)]
    assert values == sorted(values) and values[-1] > values[0]
    assert values[-1] > 3   # 200 of 200 right (Bonferroni-free) refutes eps > 3


def test_bound_is_the_eps_where_the_p_value_reaches_one_minus_confidence():
    eps = bounds.epsilon_lower_bound(1000, 200, 170, 1e-5, 0.95)
    assert bounds.p_value(1000, 200, 170, eps, 1e-5) == pytest.approx(0.05, abs=1e-9)
    assert bounds.p_value(1000, 200, 170, eps * 0.99, 1e-5) < 0.05 < bounds.p_value(1000, 200, 170, eps * 1.01, 1e-5)


def test_delta_and_confidence_weaken_the_bound():
    base = bounds.epsilon_lower_bound(1000, 200, 170, 0.0, 0.95)
    assert bounds.epsilon_lower_bound(1000, 200, 170, 1e-3, 0.95) < base
    assert bounds.epsilon_lower_bound(1000, 200, 170, 0.0, 0.99) < base


def test_bound_holds_for_randomized_response_at_its_eps():
    # eps-DP randomized response on 1,000 fair coins: the audit must not refute eps itself more
    # often than 5 % of the time (here: in none of 40 draws; the bound is conservative).
    rng = np.random.default_rng(0)
    eps = 1.0
    refuted = 0
    for _ in range(40):
        included = rng.random(1000) < 0.5
        truthful = rng.random(1000) < bounds.correct_guess_rate(eps)
        scores = np.where(included == truthful, 1.0, -1.0) + rng.normal(0, 1e-3, 1000)
        refuted += bounds.audit_canaries(scores, included, 1e-5)["epsilon_lower_bound"] > eps
    assert refuted <= 2


def test_audit_canaries_guesses_and_bonferroni():
    m = 100
    included = np.arange(m) < 50
    scores = included.astype(float) + np.linspace(0, 0.1, m)     # perfect separation
    audit = bounds.audit_canaries(scores, included, 1e-5, 0.95)
    ks = bounds.guess_counts(m)
    assert ks == [5, 10, 20, 50]
    assert audit["k"] == 50 and audit["correct"] == 100 and audit["guesses"] == 100
    assert audit["confidence_per_test"] == pytest.approx(1 - 0.05 / len(ks))
    assert audit["epsilon_lower_bound"] == pytest.approx(bounds.epsilon_lower_bound(m, 100, 100, 1e-5, 1 - 0.05 / 4))
    reversed_audit = bounds.audit_canaries(-scores, included, 1e-5, 0.95)   # a score pointing the wrong way
    assert reversed_audit["epsilon_lower_bound"] == 0.0
    two_seeds = bounds.audit_canaries(scores, included, 1e-5, 0.95, tries_elsewhere=2)
    assert two_seeds["epsilon_lower_bound"] < audit["epsilon_lower_bound"]


def test_binomial_tail_matches_scipy_for_large_r():
    r, v, q = 1000, 620, bounds.correct_guess_rate(0.4)
    assert bounds.p_value(1000, r, v, 0.4, 0.0) == pytest.approx(stats.binom.sf(v - 1, r, q), rel=1e-12)


def test_null_check_scores_blind_to_membership_refute_nothing_beyond_the_confidence():
    """Issue 22, item 5: scores independent of membership (here: pure noise, and noise that ignores a
    membership pattern it was never shown) must give a bound above 0 in at most 5 % of audits at 95 %
    confidence. 600 audits of 1,000 canaries: the count of false positives is at most Binomial(600,
    0.05)'s 99.9 % quantile (46); dropping the Bonferroni split over the 9 guess counts alone makes
    each audit a best-of-9 test, which crosses it. The f-DP bound of the same guesses is held to
    the same count."""
    from scipy import stats

    rng = np.random.default_rng(22)
    false_positives = fdp_false_positives = 0
    for _ in range(600):
        included = rng.random(1000) < 0.5
        scores = rng.normal(size=1000)
        audit = bounds.audit_canaries(scores, included, 1e-5, 0.95)
        false_positives += audit["epsilon_lower_bound"] > 0
        fdp_false_positives += audit["fdp_epsilon_lower_bound"] > 0
    assert max(false_positives, fdp_false_positives) <= stats.binom.ppf(0.999, 600, 0.05)

"""Membership-inference statistics against values computed by hand (audit/membership.py)."""

import math

import numpy as np
import pytest

from dprepro.audit import membership as mia


def test_roc_by_hand():
    fpr, tpr = mia.roc(np.array([3.0, 4.0]), np.array([1.0, 2.0]))
    assert fpr.tolist() == [0, 0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1, 1]
    fpr, tpr = mia.roc(np.array([1.0, 3.0]), np.array([1.0, 2.0]))   # a tie at 1: one threshold for both
    assert fpr.tolist() == [0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 0.5, 1]


def test_auc_by_hand():
    assert mia.auc([3, 4], [1, 2]) == 1.0
    assert mia.auc([1, 2], [3, 4]) == 0.0
    assert mia.auc([1, 1], [1, 1]) == 0.5
    # pairs (m, n): (1,1) tie 1/2, (1,2) loss, (3,1) win, (3,2) win -> 2.5 / 4
    assert mia.auc([1, 3], [1, 2]) == 0.625


def test_auc_equals_the_area_under_the_roc():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.normal(0.3, 1, 500).round(1), rng.normal(0, 1, 400).round(1)   # with ties
    fpr, tpr = mia.roc(members, nonmembers)
    assert mia.auc(members, nonmembers) == pytest.approx(np.trapz(tpr, fpr), abs=1e-12)


def test_tpr_at_fpr_and_advantage():
    members = np.array([10, 9, 8, 1, 0.5])
    nonmembers = np.array([7, 0, -1, -2])
    fpr, tpr = mia.roc(members, nonmembers)
    assert mia.tpr_at_fpr(fpr, tpr, 0.0) == 0.6       # 3 of 5 members above every non-member
    assert mia.tpr_at_fpr(fpr, tpr, 0.25) == 1.0      # one non-member (7) above the threshold 0.5
    s = mia.summary(members, nonmembers)
    assert s["advantage"] == pytest.approx(1.0 - 0.25)


def test_dp_ceiling():
    eps, delta = math.log(2), 0.0
    assert mia.dp_tpr_ceiling(np.array([0.1]), eps, delta)[0] == pytest.approx(0.2)
    # near FPR 1 the second inequality binds: TPR <= 1 - e^-eps (1 - FPR)
    assert mia.dp_tpr_ceiling(np.array([0.9]), eps, delta)[0] == pytest.approx(1 - 0.5 * 0.1)
    assert mia.dp_tpr_ceiling(np.array([0.0]), 1.0, 1e-5)[0] == pytest.approx(1e-5)


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(2)
    members, nonmembers = rng.normal(0.5, 1, 300), rng.normal(0, 1, 300)
    estimate = mia.summary(members, nonmembers)
    interval = mia.bootstrap(members, nonmembers, rounds=100)
    assert interval["auc"][0] < estimate["auc"] < interval["auc"][1]
    assert interval["auc"][1] - interval["auc"][0] < 0.15

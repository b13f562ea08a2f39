"""Membership inference on ordinary data: members (training examples) against non-members (held-out
examples), each scored by the trained model (higher = "more likely a member", e.g. minus the loss).

Everything here is a function of the two score arrays: the ROC curve (every threshold), its area
(the Mann-Whitney statistic, ties counted one half), the best TPR at a given FPR, the largest
advantage TPR - FPR, and bootstrap intervals for them. An (eps, delta)-DP training bounds every
threshold test: TPR <= e^eps FPR + delta and TPR <= 1 - e^-eps (1 - delta - FPR).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

FPR_POINTS = (0.001, 0.01)


def roc(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) to (1, 1): guess "member" when score >= t."""
    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    scores = np.concatenate([members, nonmembers])
    is_member = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    order = np.argsort(-scores, kind="stable")
    scores, is_member = scores[order], is_member[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]   # a threshold between distinct scores
    tp = np.cumsum(is_member)[last_of_tie]
    fp = np.cumsum(1 - is_member)[last_of_tie]
    return np.r_[0.0, fp / len(nonmembers)], np.r_[0.0, tp / len(members)]


def auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """P[member score > non-member score] + P[equal] / 2 (Mann-Whitney U over the product of sizes)."""
    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    ranks = stats.rankdata(np.concatenate([members, nonmembers]))   # ties get their mean rank
    u = ranks[:len(members)].sum() - len(members) * (len(members) + 1) / 2
    return float(u / (len(members) * len(nonmembers)))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, at: float) -> float:
    """The highest TPR of a threshold whose FPR is at most `at`."""
    return float(tpr[fpr <= at].max())


def summary(members: np.ndarray, nonmembers: np.ndarray) -> dict:
    fpr, tpr = roc(members, nonmembers)
    return {"auc": auc(members, nonmembers),
            **{f"tpr_at_fpr_{at:g}": tpr_at_fpr(fpr, tpr, at) for at in FPR_POINTS},
            "advantage": float(np.max(tpr - fpr))}


def bootstrap(members: np.ndarray, nonmembers: np.ndarray, rounds: int = 200, seed: int = 0,
              confidence: float = 0.95) -> dict:
    """Percentile bootstrap interval of each `summary` value (members and non-members resampled apart)."""
    rng = np.random.default_rng(seed)
    draws = [summary(rng.choice(members, len(members)), rng.choice(nonmembers, len(nonmembers)))
             for _ in range(rounds)]
    tail = (1 - confidence) / 2 * 100
    return {key: [float(np.percentile([d[key] for d in draws], tail)),
                  float(np.percentile([d[key] for d in draws], 100 - tail))] for key in draws[0]}


def dp_tpr_ceiling(fpr: np.ndarray, eps: float, delta: float) -> np.ndarray:
    """The largest TPR any test can reach at each FPR against an (eps, delta)-DP training."""
    fpr = np.asarray(fpr, float)
    return np.clip(np.minimum(math.exp(eps) * fpr + delta, 1 - math.exp(-eps) * (1 - delta - fpr)), 0, 1)


def thinned(fpr: np.ndarray, tpr: np.ndarray, points: int = 400) -> tuple[list, list]:
    """At most about `points` ROC points, spaced evenly in log FPR (for a file and a figure)."""
    grid = np.unique(np.r_[0.0, np.geomspace(max(fpr[fpr > 0].min(initial=1.0), 1e-6), 1, points)])
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return [float(x) for x in fpr[idx]], [float(y) for y in tpr[idx]]

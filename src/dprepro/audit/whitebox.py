"""White-box audit: gradient canaries inside the `fast` engine's DP-SGD step.

m canaries, each a sparse random unit direction u_j of the flattened parameter vector (SUPPORT
coordinates drawn at random by the auditor's seed, signs at random, each 1/sqrt(SUPPORT)), each in the
training set on its own fair coin. A canary in the set is an example whose gradient is NORM_IN_CLIPS *
clip * u_j: at every step it joins the batch like a training example (Poisson, rate q, from the stream
(key, "canary", step)), is clipped by the engine's own rule (to one clip; not at all under a planted
clip-off bug) and joins the clipped sum before the noise.

Why sparse directions. Dense random directions (an m x d matrix) cost a product per step: 39 s an
epoch at m = 4,000 on the tutorial CNN, against 4 s. Single coordinates cost nothing, but the training
gradient is very uneven across coordinates, so the spread the auditor measures fits none of them:
noise halved at tutorial-15ep-poisson gave bounds 0.74-0.85 with 5,000 coordinates, against 0.68-1.04
with 1,000 dense directions (measured when the auditor scored the noisy sum itself, gradients
included). A direction over SUPPORT coordinates averages the gradient's share as a dense one does,
at the cost of a gather.

The auditor sees every step's iterate, hence its noisy sum S_t, and also which training examples the
step sampled. It may: DP-SGD's bound for one example holds for every fixed sample of the others (the
subsampled Gaussian's analysis conditions on it, the others' sum being the same shift under both
hypotheses), so revealing the others' sampling, which does not depend on any canary, leaves every
canary's epsilon as claimed. With the iterate, the examples and their sample, the auditor computes
the training examples' clipped sum G_t and subtracts it: R_t = S_t - G_t is the noise plus the
canaries sampled that step. Scoring S_t instead leaves the training gradients' share in every
projection: at frontier-eps4 (claim 3.34) the f-DP bound was 1.21 with it, and 1.55 in a simulation
without it. Canary j is scored by the log-likelihood ratio of "in" against "out" for
x_t = <R_t, u_j> / clip, with the spread of a direction measured on R_t itself, ||R_t||^2 / (d clip^2)
(the noise's, whatever the engine really added, plus a vanishing share of the other canaries): out,
x_t ~ N(0, s_t^2); in, with probability q, N(1, s_t^2):

    score_j = sum_t log(1 - q + q exp((2 x_t - 1) / (2 s_t^2)))

This needs no knowledge of which steps sampled a canary (the canaries' sampling is part of the
guarantee). Any score gives a valid bound; this one is the likelihood-ratio test of one step's
residual. The scores go to the same one-run bound as the black-box audit (bounds.py). The claim is the spec's: a canary is one more example at the spec's q and clip, so the spec's epsilon
covers it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dprepro.errors import InputError
from dprepro.sampling import stream_seed

NORM_IN_CLIPS = 10.0    # a canary's gradient norm, in clips: clipping must cut it tenfold
SUPPORT = 64            # coordinates of each canary's direction


def directions(m: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """m sparse random unit directions in R^d, from the audit's own generator (public: the auditor's):
    ([m, SUPPORT] coordinates, distinct within a direction; [m, SUPPORT] weights +-1/sqrt(SUPPORT))."""
    if not 1 <= m or d < SUPPORT:
        raise InputError(f"--canaries: {m} gradient canaries on a model of {d} parameters: need m >= 1 "
                         f"and at least {SUPPORT} parameters")
    rng = np.random.default_rng([seed, 22])
    index = np.stack([rng.choice(d, size=SUPPORT, replace=False) for _ in range(m)])
    signs = rng.choice([-1.0, 1.0], size=(m, SUPPORT)) / np.sqrt(SUPPORT)
    return index.astype(np.int64), signs.astype(np.float32)


class GradientCanaries:
    """The canaries of one audited run: injected into the clipped sum, scored from the noisy sum."""

    def __init__(self, index: np.ndarray, weights: np.ndarray, d: int, included: np.ndarray, q: float,
                 clip: float, key):
        self.index = tf.constant(np.asarray(index, np.int64).reshape(-1, 1))         # [m * SUPPORT, 1]
        self.weights = tf.constant(np.asarray(weights, np.float32))                   # [m, SUPPORT]
        self.d = d
        self.included = tf.constant(np.asarray(included, np.float32))                 # [m], 0/1
        self.q, self.clip, self.key = q, clip, key
        self.scores = tf.Variable(tf.zeros([len(included)], tf.float64), trainable=False)

    @staticmethod
    def flat(grads: list) -> tf.Tensor:
        return tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)

    def inject(self, grads: list, step, clip_factors) -> list:
        """The clipped sum with every canary in the set that step t samples added, its gradient
        (norm NORM_IN_CLIPS * clip) clipped by `clip_factors`, the engine's own clipping."""
        draws = tf.random.stateless_uniform(tf.shape(self.included), stream_seed(self.key, "canary", step),
                                            dtype=tf.float64, alg="philox")
        sampled = tf.cast(draws < self.q, tf.float32) * self.included
        norm = NORM_IN_CLIPS * self.clip
        scale = norm * clip_factors(tf.constant([norm], tf.float32))[0]
        values = tf.reshape(scale * sampled[:, None] * self.weights, [-1])                # [m * SUPPORT]
        added = tf.scatter_nd(self.index, values, [self.d])                                 # [d], sums repeats
        parts = tf.split(added, [int(np.prod(g.shape)) for g in grads])
        return [g + tf.reshape(p, tf.shape(g)) for g, p in zip(grads, parts)]

    def observe(self, residual: list) -> None:
        """Add each canary's log-likelihood ratio for this step's residual R_t: the noisy sum less
        the training examples' clipped sum, i.e. the noise and the canaries sampled. The spread of
        a direction is estimated from R_t itself, ||R_t||^2 / (d clip^2) (a random direction takes
        1/d of it)."""
        flat = self.flat(residual)
        picked = tf.reshape(tf.gather_nd(flat, self.index), tf.shape(self.weights))          # [m, SUPPORT]
        x = tf.cast(tf.reduce_sum(picked * self.weights, axis=1), tf.float64) / self.clip       # [m]
        spread = tf.maximum(tf.cast(tf.reduce_sum(tf.square(flat)), tf.float64) / (self.d * self.clip ** 2), 1e-12)
        llr = tf.reduce_logsumexp(tf.stack([tf.fill(tf.shape(x), np.log1p(-self.q).astype(np.float64)),
                                            np.log(self.q) + (2 * x - 1) / (2 * spread)]), axis=0)
        self.scores.assign_add(llr)

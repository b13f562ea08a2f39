"""Which training examples each step sees: shuffled fixed batches, or Poisson samples.

- `shuffle` (the tutorial's): each epoch a new permutation (fixed by the seed), cut into
  floor(n / batch_size) full batches; the remainder is dropped.
- `poisson` (what the Poisson accountants assume): at step t every training example joins the batch
  independently with probability q = batch_size / n, drawn by a counter-based generator from
  (seed, t) alone, so a step's batch does not depend on the steps before it. Batches vary in size
  (mean batch_size); each is padded to one fixed size with masked rows (mask 0, image and label 0),
  so the compiled step is traced once. The size is the binomial quantile at which a batch
  overflows with probability OVERFLOW per step; a batch that still overflows is padded to the
  next multiple of that size (one more trace, nothing dropped): the sample is never truncated, so
  the accountant's Poisson assumption holds exactly. Steps per epoch: floor(n / batch_size).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

OVERFLOW = 1e-6   # per step: over 3,600 steps (15 epochs) a 0.4 % chance of one extra trace
PAD_MULTIPLE = 8


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled full batches (a new order each epoch, fixed by `seed`); the remainder is dropped."""
    x, y = tf.constant(x), tf.constant(y)
    n = int(x.shape[0])
    return (tf.data.Dataset.range(n)
            .shuffle(n, seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size, drop_remainder=True)
            .map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
            .prefetch(tf.data.AUTOTUNE))


def padded_size(n: int, batch_size: int, overflow: float = OVERFLOW) -> int:
    """The padded batch size: P[Binomial(n, batch_size / n) > size] <= overflow, rounded up to a
    multiple of PAD_MULTIPLE and at most n."""
    from scipy import stats

    quantile = int(stats.binom.isf(overflow, n, batch_size / n))
    return min(n, PAD_MULTIPLE * math.ceil(max(quantile, batch_size) / PAD_MULTIPLE))


def poisson_indices(n: int, q: float, seed: int, step) -> tf.Tensor:
    """The training examples of step `step`: each of the n included with probability q."""
    u = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)]),
                                    alg="philox")   # the same draw on every device
    return tf.where(u < q)[:, 0]


def poisson_batch(x: tf.Tensor, y: tf.Tensor, idx: tf.Tensor, size: int):
    """(x, y, mask) for the examples `idx`, padded with zero rows to a multiple of `size`."""
    count = tf.shape(idx)[0]
    rows = tf.maximum(size, size * ((count + size - 1) // size))
    pad = rows - count
    xb = tf.pad(tf.gather(x, idx), tf.concat([[[0, pad]], tf.zeros([len(x.shape) - 1, 2], tf.int32)], 0))
    yb = tf.pad(tf.gather(y, idx), [[0, pad], [0, 0]])
    mask = tf.concat([tf.ones([count]), tf.zeros([pad])], axis=0)
    xb.set_shape([None, *x.shape[1:]])
    yb.set_shape([None, *y.shape[1:]])
    return xb, yb, mask


def poisson_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, steps: int,
                    first_step: int = 0) -> tf.data.Dataset:
    """Steps first_step .. steps-1 of Poisson sampling: (x, y, mask) with mask 1 for sampled examples."""
    x, y = tf.constant(x), tf.constant(y)
    n = int(x.shape[0])
    size, q = padded_size(n, batch_size), batch_size / n
    return (tf.data.Dataset.range(first_step, steps)
            .map(lambda t: poisson_batch(x, y, poisson_indices(n, q, seed, t), size))
            .prefetch(tf.data.AUTOTUNE))

"""Which training examples each step sees: shuffled fixed batches, or Poisson samples.

- `shuffle` (the tutorial's): each epoch a new permutation, cut into floor(n / batch_size) full
  batches; the remainder is dropped.
- `poisson` (what the Poisson accountants assume): at step t every training example joins the batch
  independently with probability q = batch_size / n, decided by a float64 uniform draw u < q (on a
  2^-52 grid, so the rate used is q to 1e-15). Batches vary in size (mean batch_size, standard
  deviation sd); each is padded with masked rows (mask 0, image and label 0) to the next multiple
  of the bucket width (sd rounded up to a multiple of 8: 16 rows at batch 250), so a batch carries
  half a bucket of padding on average and a run sees a handful of shapes. The sample is never
  truncated, so the accountant's Poisson assumption holds exactly. Steps per epoch:
  floor(n / batch_size).

Randomness comes from counter-based streams (Philox, the same numbers on every device): the
permutation of epoch e from (seed, "shuffle", e), the sample of step t from (seed, "poisson", t),
and the `fast` engine's noise of step t from (seed, "noise", t, variable). A run resumed at any
epoch therefore draws exactly what an uninterrupted run draws.

Who can regenerate them: with `privacy.randomness: reproducible` (every shipped spec) the key of
every stream is the seed recorded in result.json, so anyone holding a released model and its result
file can redraw each step's sample and noise; the ε then holds only against an adversary who does not
know the seed. With `secret` the key is a SecretKey, 128 bits of the operating system's entropy
(`secrets`), drawn once per seed and never written, logged or shown; only the run's checkpoint holds
it (for an exact resume), which makes the checkpoint as sensitive as the data. Weight initialisation
stays a function of the seed in both modes (it does not depend on the data).
"""

from __future__ import annotations

import secrets

import numpy as np
import tensorflow as tf

from dprepro.spec.typed import PAD_MULTIPLE, bucket_rows  # noqa: F401  (the spec computes the width)
STREAMS = {"shuffle": 1, "poisson": 2, "noise": 3, "normalization": 4, "pca": 5, "canary": 6,
           "selection_sample": 7, "selection": 8}     # the last two: DPSUR's test (training/selective.py)


class SecretKey:
    """The key of a run's draws under `privacy.randomness: secret`: two 64-bit words from the operating
    system's entropy. It shows as SecretKey(hidden) and is not JSON-serialisable, so it cannot reach a
    result, a log or TensorBoard by accident; `words` is for the checkpoint only."""

    def __init__(self, words: np.ndarray | None = None):
        self.words = np.array([secrets.randbits(64) - 2 ** 63 for _ in range(2)] if words is None else words,
                              dtype=np.int64)

    def __repr__(self) -> str:
        return "SecretKey(hidden)"


def stream_seed(seed, stream: str, *counters) -> tf.Tensor:
    """The [2] int64 seed of a stateless draw: the run's `seed` (or its SecretKey), the stream, then
    each counter (epoch; step; step and variable) folded in."""
    if isinstance(seed, SecretKey):
        key = tf.random.experimental.stateless_fold_in(tf.constant(seed.words), STREAMS[stream], alg="philox")
    else:
        key = tf.stack([tf.cast(seed, tf.int64), tf.constant(STREAMS[stream], tf.int64)])
    for counter in counters:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(counter, tf.int64), alg="philox")
    return key


def epoch_order(n: int, seed: int | SecretKey, epoch) -> tf.Tensor:
    """The permutation of range(n) for one epoch: argsort of n random 64-bit keys."""
    keys = tf.random.stateless_uniform([n], stream_seed(seed, "shuffle", epoch), minval=None, maxval=None,
                                       dtype=tf.int64, alg="philox")
    return tf.argsort(keys, stable=True)


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | SecretKey, epochs: int = 1,
                     first_epoch: int = 0) -> tf.data.Dataset:
    """Epochs first_epoch .. epochs-1, each a new permutation cut into full batches (the remainder
    dropped), as one dataset."""
    x, y = tf.constant(x), tf.constant(y)
    n = int(x.shape[0])
    return (tf.data.Dataset.range(first_epoch, epochs)
            .flat_map(lambda e: tf.data.Dataset.from_tensor_slices(epoch_order(n, seed, e))
                      .batch(batch_size, drop_remainder=True))
            .map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
            .prefetch(tf.data.AUTOTUNE))


def inclusion_draws(n: int, seed: int | SecretKey, step, stream: str = "poisson") -> tf.Tensor:
    """The uniform draw u of each of the n examples at step `step` (included when u < q).

    float64, on a 2^-52 grid: the rate actually used, ceil(q 2^52) / 2^52, is q to 2^-52. (Until
    engine versions fast 5 / vectorized 3 it was float32, on a 2^-23 grid: above q by 1.3e-5
    relative at q = 250/60000.)"""
    return tf.random.stateless_uniform([n], stream_seed(seed, stream, step), dtype=tf.float64, alg="philox")


def poisson_indices(n: int, q: float, seed: int | SecretKey, step, stream: str = "poisson") -> tf.Tensor:
    """The training examples of step `step`: each of the n included with probability q."""
    return tf.where(inclusion_draws(n, seed, step, stream) < q)[:, 0]


def poisson_batch(x: tf.Tensor, y: tf.Tensor, idx: tf.Tensor, size: int):
    """(x, y, mask) for the examples `idx`, padded with zero rows to the next multiple of `size`
    (at least `size` rows)."""
    count = tf.shape(idx)[0]
    rows = tf.maximum(size, size * ((count + size - 1) // size))
    pad = rows - count
    xb = tf.pad(tf.gather(x, idx), tf.concat([[[0, pad]], tf.zeros([len(x.shape) - 1, 2], tf.int32)], 0))
    yb = tf.pad(tf.gather(y, idx), [[0, pad], [0, 0]])
    mask = tf.concat([tf.ones([count]), tf.zeros([pad])], axis=0)
    xb.set_shape([None, *x.shape[1:]])
    yb.set_shape([None, *y.shape[1:]])
    return xb, yb, mask


def poisson_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | SecretKey, steps: int,
                    first_step: int = 0, stream: str = "poisson") -> tf.data.Dataset:
    """Steps first_step .. steps-1 of Poisson sampling: (x, y, mask) with mask 1 for sampled examples
    (`stream`: another sampler's draws, e.g. DPSUR's validation samples)."""
    x, y = tf.constant(x), tf.constant(y)
    n = int(x.shape[0])
    size, q = bucket_rows(n, batch_size), batch_size / n
    return (tf.data.Dataset.range(first_step, steps)
            .map(lambda t: poisson_batch(x, y, poisson_indices(n, q, seed, t, stream), size))
            .prefetch(tf.data.AUTOTUNE))

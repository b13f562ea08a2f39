"""The white-box audit's canaries (audit/whitebox.py): their directions, what they add to the clipped
sum and how the auditor scores them from the noisy sum."""

import numpy as np
import pytest
import tensorflow as tf

from dprepro.audit import whitebox
from dprepro.errors import InputError

S = whitebox.SUPPORT


def canaries(included, q=1.0, clip=0.5, d=200, seed=0):
    index, weights = whitebox.directions(len(included), d, seed)
    return whitebox.GradientCanaries(index, weights, d, np.array(included), q, clip, key=seed)


def dense(c) -> np.ndarray:
    """[m, d]: each canary's direction as a dense vector."""
    m = c.weights.shape[0]
    u = np.zeros((m, c.d))
    np.add.at(u, (np.repeat(np.arange(m), S), c.index.numpy()[:, 0]), c.weights.numpy().reshape(-1))
    return u


def engine_clip(clip):
    return lambda norms: clip / tf.maximum(norms, clip)


def test_directions_are_sparse_unit_vectors_from_the_auditors_seed():
    index, weights = whitebox.directions(300, 1000, seed=3)
    assert index.shape == weights.shape == (300, S)
    assert all(len(set(row)) == S for row in index.tolist()) and 0 <= index.min() and index.max() < 1000
    assert np.allclose(np.abs(weights), 1 / np.sqrt(S)) and np.allclose((weights ** 2).sum(axis=1), 1)
    again = whitebox.directions(300, 1000, seed=3)
    assert np.array_equal(index, again[0]) and np.array_equal(weights, again[1])
    assert not np.array_equal(index, whitebox.directions(300, 1000, seed=4)[0])
    with pytest.raises(InputError, match=f"--canaries: 10 gradient canaries on a model of {S - 1} parameters"):
        whitebox.directions(10, S - 1, seed=3)


def test_a_sampled_canary_adds_one_clip_along_its_direction_after_the_engines_clipping():
    """q = 1: every canary in the set is sampled. Its gradient (10 clips long) is cut to one clip by
    the engine's rule; under a planted clip-off bug (factors 1) it stays 10 clips long. Canaries out
    of the set add nothing."""
    clip, c = 0.5, canaries([1, 0, 1])
    u = dense(c)
    grads = [tf.zeros([120]), tf.zeros([80])]
    clipped = np.concatenate([g.numpy() for g in c.inject(grads, tf.constant(0, tf.int64), engine_clip(clip))])
    assert clipped == pytest.approx(clip * (u[0] + u[2]), abs=1e-6)
    unclipped = np.concatenate([g.numpy() for g in c.inject(grads, tf.constant(0, tf.int64), tf.ones_like)])
    assert unclipped == pytest.approx(whitebox.NORM_IN_CLIPS * clip * (u[0] + u[2]), abs=1e-5)


def test_sampling_follows_q_on_the_canary_stream():
    """One canary per coordinate block (SUPPORT coordinates each, disjoint), so the canaries sampled at
    a step are the blocks where inject adds something. q = 0.1, 500 canaries all in the set, 50 steps:
    about 2,500 draws of 25,000 (binomial sd 47; 4 sd allowed). Steps differ; a step repeats."""
    m = 500
    index = np.arange(m * S).reshape(m, S)
    c = whitebox.GradientCanaries(index, np.full((m, S), S ** -0.5, np.float32), m * S, np.ones(m), 0.1, 1.0, key=0)
    zeros = [tf.zeros([m * S])]

    def drawn(step):
        return c.inject(zeros, tf.constant(step, tf.int64), tf.ones_like)[0].numpy().reshape(m, S)[:, 0] != 0

    sampled = [drawn(step) for step in range(50)]
    assert abs(np.sum(sampled) - 2500) < 4 * 47
    assert not np.array_equal(sampled[0], sampled[1]) and np.array_equal(sampled[3], drawn(3))


def test_each_step_adds_the_log_likelihood_ratio_of_its_projections():
    """score_j += log(1 - q + q exp((2 x_j - 1) / (2 s^2))), x_j = <S, u_j> / clip, s^2 = ||S||^2 / (d clip^2)."""
    clip, q = 0.5, 0.2
    c = canaries([1, 1, 0], q=q, clip=clip)
    flat = np.random.default_rng(1).normal(size=200)
    noisy = [tf.constant(flat[:120], tf.float32), tf.constant(flat[120:], tf.float32)]
    c.observe(noisy)
    x = dense(c) @ flat / clip
    s2 = flat @ flat / (200 * clip ** 2)
    want = np.log(1 - q + q * np.exp((2 * x - 1) / (2 * s2)))
    assert c.scores.numpy() == pytest.approx(want, rel=1e-4)
    c.observe(noisy)
    assert c.scores.numpy() == pytest.approx(2 * want, rel=1e-4)


def test_the_engine_shows_the_auditor_the_noisy_sum_less_the_training_examples_clipped_sum():
    """The auditor may know the other examples' sampling (audit/whitebox.py), so it scores the residual
    R = noisy sum - training clipped sum. With no noise and q = 1 the residual is exactly the one canary
    in the set, cut to one clip, R = clip u_0: x = 1 on its own direction, s^2 = 1 / d, its score d / 2;
    the other's x is u_0's overlap with its direction. Were the training sum (large, random) left in,
    neither would hold."""
    from dprepro.audit.audited_step import audit
    from dprepro.training.fast_dp import FastDPSequential

    d_in, d_out = 40, 5
    model = FastDPSequential(l2_norm_clip=0.5, noise_multiplier=0.0, num_microbatches=None, expected_batch_size=4,
                             layers=[tf.keras.layers.InputLayer(input_shape=(d_in,)), tf.keras.layers.Dense(d_out)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
    d = d_in * d_out + d_out
    c = canaries([1, 0], q=1.0, clip=0.5, d=d, seed=3)
    audit(model, c)                         # audit/audited_step.py: the engine's step with the canaries
    rng = np.random.default_rng(0)
    training_sum = [tf.constant(rng.normal(size=w.shape) * 3, tf.float32) for w in model.trainable_weights]
    mean = model.noisy_mean(training_sum)
    x = dense(c) @ dense(c)[0]                                  # <R, u_j> / clip
    assert x[0] == pytest.approx(1) and c.scores.numpy()[0] == pytest.approx(d / 2, rel=1e-4)
    assert c.scores.numpy()[1] == pytest.approx((2 * x[1] - 1) * d / 2, rel=1e-4, abs=1e-3)
    # what the optimizer gets is unchanged: (training sum + the canary's clip * u) / 4
    flat = np.concatenate([m.numpy().ravel() for m in mean]) * 4 - np.concatenate([t.numpy().ravel() for t in training_sum])
    assert flat == pytest.approx(0.5 * dense(c)[0], abs=1e-5)


def test_the_shipping_engine_carries_no_audit_state():
    """Issue 34, finding 6: FastDPSequential has no canaries and no clipping switch (on main before issue
    34 it had both); an audit makes a built model an AuditedStep, whose planted bugs the ledger sees."""
    from dprepro.audit import PlantedBug
    from dprepro.audit.audited_step import AuditedStep, audit
    from dprepro.training.fast_dp import FastDPSequential

    def build():
        model = FastDPSequential(l2_norm_clip=1.5, noise_multiplier=1.3, num_microbatches=None, expected_batch_size=4,
                                 layers=[tf.keras.layers.InputLayer(input_shape=(3,)), tf.keras.layers.Dense(2)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
        return model

    shipped = build()
    assert not hasattr(shipped, "clipping") and not hasattr(shipped, "canaries")
    assert shipped.applied_clip() == 1.5 and shipped.clip_factors(tf.constant([3.0])).numpy() == pytest.approx([0.5])
    broken = audit(build(), bug=PlantedBug.CLIP_OFF)
    assert isinstance(broken, AuditedStep) and broken.applied_clip() is None
    assert broken.clip_factors(tf.constant([3.0])).numpy() == pytest.approx([1.0])
    halved = audit(build(), bug=PlantedBug.NOISE_HALF)
    assert halved.noise_multiplier == pytest.approx(0.65) and halved.applied_clip() == 1.5

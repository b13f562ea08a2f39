"""Which examples each step sees: shuffled batches and Poisson samples (sampling.py)."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from dprepro import sampling

N, BATCH = 2000, 100


def poisson_steps(seed, steps, n=N, batch=BATCH, first_step=0):
    """[(indices of the sampled examples, rows of the padded batch)] for each step."""
    x = np.arange(n, dtype=np.float32).reshape(n, 1) + 1        # example i has image value i + 1
    y = np.eye(10, dtype=np.float32)[np.arange(n) % 10]
    out = []
    for xb, yb, mask in sampling.poisson_batches(x, y, batch, seed, steps, first_step):
        xb, yb, mask = xb.numpy(), yb.numpy(), mask.numpy()
        count = int(mask.sum())
        assert np.all(mask[:count] == 1) and np.all(mask[count:] == 0)
        assert np.all(xb[count:] == 0) and np.all(yb[count:] == 0)   # padding: zero rows
        out.append((xb[:count, 0].astype(int) - 1, len(mask)))
    return out


def test_poisson_inclusion_is_independent_with_probability_q():
    """Over 400 steps each example's inclusion count is Binomial(400, q): the mean over examples
    within 5 standard errors of 400 q, the variance as a binomial's (chi-square, 5 sigma), and the
    batch sizes have mean batch_size; batches of consecutive steps are not the same."""
    q, steps = BATCH / N, 400
    drawn = poisson_steps(0, steps)
    counts = np.zeros(N)
    for idx, _ in drawn:
        assert len(set(idx)) == len(idx)                      # without replacement within a step
        counts[idx] += 1
    mean, var = steps * q, steps * q * (1 - q)
    assert abs(counts.mean() - mean) <= 5 * np.sqrt(var / N)
    assert abs(counts.var(ddof=1) / var - 1) <= 5 * np.sqrt(2 / (N - 1))
    sizes = np.array([len(idx) for idx, _ in drawn])
    assert abs(sizes.mean() - BATCH) <= 5 * np.sqrt(N * q * (1 - q) / steps)
    assert sizes.std() > 0.5 * np.sqrt(N * q * (1 - q))       # variable, not fixed at batch_size
    overlap = [len(np.intersect1d(a, b)) for (a, _), (b, _) in zip(drawn, drawn[1:])]
    assert abs(np.mean(overlap) - N * q * q) <= 5 * np.sqrt(N * q * q / len(overlap))


def test_poisson_steps_repeat_for_a_seed_differ_between_seeds_and_start_anywhere():
    first = poisson_steps(0, 6)
    again = poisson_steps(0, 6)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(first, again))
    other = poisson_steps(1, 6)
    assert not any(np.array_equal(a, b) for (a, _), (b, _) in zip(first, other))
    later = poisson_steps(0, 6, first_step=4)               # step t depends on (seed, t) only
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(first[4:], later))


def test_bucket_width_is_the_batch_size_spread_rounded_to_eight():
    for n, batch in ((60000, 250), (2500, 250), (60000, 256), (60000, 4096), (N, BATCH)):
        width = sampling.bucket_rows(n, batch)
        sd = np.sqrt(n * (batch / n) * (1 - batch / n))
        assert width % sampling.PAD_MULTIPLE == 0 and sd <= width < sd + sampling.PAD_MULTIPLE
    assert sampling.bucket_rows(60000, 250) == 16           # sd 15.8
    assert sampling.bucket_rows(60000, 4096) == 64          # sd 61.8
    assert sampling.bucket_rows(10, 10) == 8                # sd 0: one multiple of 8, never above n
    assert sampling.bucket_rows(4, 4) == 4


def test_poisson_batches_are_padded_to_the_next_bucket():
    """Every step's padded batch has the smallest multiple of the bucket width that holds its
    sample (never truncated); over 400 steps the padding averages about half a bucket, and the
    shapes seen are few (each one a trace under XLA)."""
    width = sampling.bucket_rows(N, BATCH)
    drawn = poisson_steps(0, 400)
    for idx, rows in drawn:
        assert rows % width == 0 and rows - width < max(len(idx), 1) <= rows
    padding = np.mean([rows - len(idx) for idx, rows in drawn])
    assert 0.3 * width < padding < 0.7 * width, padding     # uniform-ish within a bucket: width / 2
    assert len({rows for _, rows in drawn}) <= 8


def test_an_overflowing_batch_is_padded_further_never_truncated():
    x = np.arange(50, dtype=np.float32).reshape(50, 1)
    y = np.zeros((50, 10), np.float32)
    for count in (7, 16, 17, 40):
        idx = tf.range(count, dtype=tf.int64)
        xb, _, mask = sampling.poisson_batch(tf.constant(x), tf.constant(y), idx, size=16)
        assert len(mask) == 16 * max(1, -(-count // 16))
        assert int(mask.numpy().sum()) == count
        np.testing.assert_array_equal(xb.numpy()[:count, 0], np.arange(count))


def shuffled_epochs(n, batch, seed, epochs, first_epoch=0):
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    y = np.zeros((n, 10), np.float32)
    seen = np.concatenate([xb.numpy()[:, 0] for xb, _ in
                           sampling.shuffled_batches(x, y, batch, seed, epochs, first_epoch)])
    return seen.reshape(epochs - first_epoch, -1)


@pytest.mark.parametrize("n,batch", [(1000, 250), (1000, 256)])
def test_shuffled_epochs_are_permutations_without_the_remainder(n, batch):
    """floor(n / batch) full batches per epoch, no example twice; a new order each epoch; the same
    for the same seed, another for another seed; epoch e is the same when the dataset starts there
    (what a resumed run reads)."""
    epochs = shuffled_epochs(n, batch, 0, 3)
    for seen in epochs:
        assert len(seen) == (n // batch) * batch
        assert len(np.unique(seen)) == len(seen)
    assert not np.array_equal(epochs[0], epochs[1])
    np.testing.assert_array_equal(epochs, shuffled_epochs(n, batch, 0, 3))
    assert not np.array_equal(epochs[0], shuffled_epochs(n, batch, 1, 1)[0])
    np.testing.assert_array_equal(epochs[2], shuffled_epochs(n, batch, 0, 3, first_epoch=2)[0])


def test_a_shuffled_epoch_is_a_uniform_permutation():
    """Over 400 epochs of 10 examples, each example lands in each position 40 times on average:
    a chi-square test of the 10 x 10 position counts (81 degrees of freedom) at p > 1e-4."""
    counts = np.zeros((10, 10))
    for order in shuffled_epochs(10, 10, 0, 400):
        counts[order.astype(int), np.arange(10)] += 1
    chi2 = ((counts - 40) ** 2 / 40).sum()
    assert stats.chi2.sf(chi2, 81) > 1e-4, chi2


def test_poisson_inclusion_rate_is_at_most_q():
    """Poisson inclusion compares u ~ Uniform[0, 1) with q; the rate actually used is the grid's
    ceil(q / grid) * grid. Review of 0.5.0, defect 6: the draw was float32 (grid 2^-23), so the rate
    was above q (the unsafe side; at q = 250/60000 by 1.3e-5 relative) while the accountant assumes
    q. Drawn in float64 (grid 2^-52) the excess is below 1e-12 relative. This test failed on the
    float32 draw."""
    draws = sampling.inclusion_draws(10 ** 6, 0, 0)
    grid = 2.0 ** -np.finfo(draws.dtype.as_numpy_dtype).nmant       # float32: 2^-23; float64: 2^-52
    u = draws.numpy().astype(np.float64)
    assert np.array_equal(u / grid, np.floor(u / grid))              # every draw sits on that grid
    q = 250 / 60000
    rate_used = np.ceil(q / grid) * grid
    assert rate_used <= q * (1 + 1e-12)

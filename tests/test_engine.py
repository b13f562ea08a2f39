"""The `fast` and `vectorized` engines take the same DP-SGD step as the tutorial's optimizer (noise 0)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import first_examples, raw_spec, typed
from dprepro.training import engines as engine


@pytest.fixture(scope="module")
def batch(mnist):
    data = first_examples(mnist, 8, 1)
    return data.x_train, data.y_train


_tutorial_steps = {}


def tutorial_step(spec, weights, x, y):
    """The tutorial engine's step (slow to build), computed once per configuration."""
    key = (spec.privacy.num_microbatches, spec.privacy.l2_norm_clip, spec.model.pooling)
    if key not in _tutorial_steps:
        _tutorial_steps[key] = one_step(spec, "tutorial", weights, x, y)
    return _tutorial_steps[key]


def one_step(spec, engine_name, weights, x, y):
    engine.seed_everything(0)
    model = engine.build_model(spec, engine_name)
    model.set_weights(weights)
    model.train_on_batch(x, y)
    return model.get_weights()


# The default engine in the quick tier; `vectorized` (the same promises, its own step) in the full one.
@pytest.mark.parametrize("engine_name", ["fast", pytest.param("vectorized", marks=pytest.mark.full)])
@pytest.mark.parametrize("num_microbatches", [8, 2], ids=["1-per-microbatch", "4-per-microbatch"])
@pytest.mark.parametrize("clip", [0.1, 1e3], ids=["clipping", "no-clipping"])
@pytest.mark.parametrize("pooling", ["max", "average"])
def test_fast_step_equals_tutorial_step(batch, num_microbatches, clip, engine_name, pooling):
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["privacy"].update(noise_multiplier=0.0, l2_norm_clip=clip, num_microbatches=num_microbatches)
    raw["model"]["pooling"] = pooling
    spec = typed(raw, "test")
    x, y = batch
    engine.seed_everything(0)
    start = engine.build_model(noise_specs()[1], "none").get_weights()
    tutorial = tutorial_step(spec, start, x, y)
    fast = one_step(spec, engine_name, start, x, y)
    moved = max(float(np.max(np.abs(t - s))) for t, s in zip(tutorial, start))
    assert moved > 2e-4, "the step must change the weights for the comparison to mean anything"
    for t, f in zip(tutorial, fast):
        np.testing.assert_allclose(f, t, atol=1e-5, rtol=0)


def test_clipping_changes_the_step(batch):
    """Guards the test above: a tiny clip norm gives a different (smaller) update."""
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["privacy"].update(noise_multiplier=0.0, num_microbatches=8)
    x, y = batch
    engine.seed_everything(0)
    start = engine.build_model(typed(raw, "t"), "none").get_weights()
    steps = {}
    for clip in (0.1, 1e3):
        raw["privacy"]["l2_norm_clip"] = clip
        after = one_step(typed(raw, "t"), "fast", start, x, y)
        steps[clip] = np.sqrt(sum(float(np.sum((a - s) ** 2)) for a, s in zip(after, start)))
    assert steps[0.1] <= 0.25 * 0.1 * 1.0001  # lr 0.25 x clip bounds the step's norm
    assert steps[1e3] > 3 * steps[0.1]


def test_tanh_fast_step_equals_vectorized_step(batch):
    """With tanh the fast engine's per-example norms (from pre-activation gradients) still give
    tf-privacy's per-example clipping: the same step as `vectorized` (noise 0, clipping on)."""
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["privacy"].update(noise_multiplier=0.0, l2_norm_clip=0.1, num_microbatches=8)
    raw["model"]["activation"] = "tanh"
    spec = typed(raw, "test")
    x, y = batch
    engine.seed_everything(0)
    start = engine.build_model(spec, "fast").get_weights()
    fast, vectorized = one_step(spec, "fast", start, x, y), one_step(spec, "vectorized", start, x, y)
    assert max(float(np.max(np.abs(f - s))) for f, s in zip(fast, start)) > 2e-4
    for f, v in zip(fast, vectorized):
        np.testing.assert_allclose(f, v, atol=1e-6, rtol=0)


def test_momentum_and_schedule_drive_the_fast_step(batch):
    """Heavy-ball momentum on the noisy clipped mean g (noise 0 here): v <- m v - lr g, w <- w + v.
    Two steps on one batch: the second update is m times the first plus a plain step from where
    the first ended; the learning rate is the linear schedule's at each step."""
    raw = raw_spec("smoke")
    raw["training"].update(batch_size=8, momentum=0.9, learning_rate_schedule="linear", final_learning_rate=0.05)
    raw["privacy"].update(noise_multiplier=0.0, num_microbatches=8)
    spec = typed(raw, "test")
    x, y = batch
    engine.seed_everything(0)
    model = engine.build_model(spec, "fast")
    model.train_on_batch(x, y)
    w0 = model.get_weights()
    model.train_on_batch(x, y)
    w1 = model.get_weights()
    model.train_on_batch(x, y)
    w2 = model.get_weights()
    plain = typed({**raw, "training": {**raw["training"], "momentum": 0.0}}, "plain")
    engine.seed_everything(0)
    one = engine.build_model(plain, "fast")
    one.train_on_batch(x, y)           # brings its schedule to step 1 ...
    one.set_weights(w1)
    one.optimizer.iterations.assign(2)  # ... then step 2 from w1, as the momentum model's third step
    one.train_on_batch(x, y)
    step = [p - w for p, w in zip(one.get_weights(), w1)]
    for a, b, c, d in zip(w0, w1, w2, step):
        np.testing.assert_allclose(c - b, 0.9 * (b - a) + d, atol=2e-6, rtol=0)
    assert spec.learning_rate_at(2) < spec.learning_rate_at(1) < spec.training.learning_rate
    rates = [float(engine.learning_rate(spec)(t)) for t in (0, 1, 15, spec.decay_steps, 10 ** 6)]
    np.testing.assert_allclose(rates, [spec.learning_rate_at(t) for t in (0, 1, 15, spec.decay_steps, 10 ** 6)],
                               rtol=1e-6)


def test_xla_is_off_by_default():
    spec = typed(raw_spec("tutorial-3ep"), "t")
    assert spec.engine.use_xla is False
    assert engine.build_model(spec, "fast").jit_compile is False
    model = engine.build_model(spec, "vectorized")
    assert not isinstance(model.train_step, tf.types.experimental.GenericFunction)
    raw = raw_spec("tutorial-3ep")
    raw["engine"]["use_xla"] = True
    assert engine.build_model(typed(raw, "t"), "fast").jit_compile is True


# The noise: from the same weights and batch, (noisy step - noise-free step) / learning rate is
# -N / num_microbatches (Poisson: / expected batch size), N ~ Normal(0, (l2_norm_clip * noise_multiplier)^2)
# per coordinate. The Poisson batch is 6 sampled examples padded to 12 rows, expected size 8: a
# division by the examples drawn (6) or by the rows (12) is 33 % off and fails too.
NOISE = {"l2_norm_clip": 1.5, "noise_multiplier": 1.3, "num_microbatches": 8}
SAMPLINGS = ["shuffle", "poisson"]


def flat_step(spec, engine_name, weights, x, y, seed, steps=1, mask=None):
    engine.seed_everything(seed)
    model = engine.build_model(spec, engine_name, seed)
    model.set_weights(weights)
    for _ in range(steps):
        model.train_on_batch(x, y, sample_weight=mask)
    return model.get_weights()


def flat(weights):
    return np.concatenate([w.ravel() for w in weights]).astype(np.float64)


def noise_specs(sampling="shuffle"):
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["privacy"].update(NOISE)
    raw["data"]["sampling"] = sampling
    noisy = typed(raw, "noise")
    raw["privacy"]["noise_multiplier"] = 0.0
    return noisy, typed(raw, "no-noise")


def sampled(batch, sampling):
    """The shuffle batch as it is; for Poisson 6 of its examples padded with 6 masked rows of noise."""
    x, y = batch
    if sampling == "shuffle":
        return x, y, None
    rng = np.random.default_rng(7)
    pad_x = rng.random((6, *x.shape[1:]), dtype=np.float32)
    pad_y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 6)]
    mask = np.array([1.0] * 6 + [0.0] * 6, dtype=np.float32)
    return np.concatenate([x[:6], pad_x]), np.concatenate([y[:6], pad_y]), mask


def drawn_noise(engine_name, start, batch, seed, sampling="shuffle"):
    """The noise of one step, as the engine added it, scaled back by the learning rate."""
    noisy, clean = noise_specs(sampling)
    lr = noisy.training.learning_rate
    x, y, mask = sampled(batch, sampling)
    return (flat(flat_step(noisy, engine_name, start, x, y, seed, mask=mask))
            - flat(flat_step(clean, engine_name, start, x, y, seed, mask=mask))) / lr


_first_draws = {}


def first_draw(engine_name, batch, sampling):
    """Seed 0's noise from the common start (one step each of a noisy and a clean model, slow to
    build): computed once per engine and sampling, for both tests below. (start, noise)"""
    if (engine_name, sampling) not in _first_draws:
        engine.seed_everything(0)
        start = engine.build_model(noise_specs()[0], "none").get_weights()
        _first_draws[engine_name, sampling] = start, drawn_noise(engine_name, start, batch, 0, sampling)
    return _first_draws[engine_name, sampling]


def noise_ratio(engine_name, batch, sampling) -> float:
    """Measured standard deviation of the noise / the one the accountant assumes; asserts mean ~ 0."""
    _, noise = first_draw(engine_name, batch, sampling)
    n, want = noise.size, NOISE["l2_norm_clip"] * NOISE["noise_multiplier"] / NOISE["num_microbatches"]
    assert n == 26010
    assert abs(noise.mean()) <= 5 * want / np.sqrt(n)
    return noise.std() / want


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("engine_name", ["fast", pytest.param("vectorized", marks=pytest.mark.full)])
def test_noise_has_the_scale_of_the_guarantee(batch, engine_name, sampling):
    """Mean ~ 0 and standard deviation clip * noise_multiplier / num_microbatches (Poisson: / the
    expected batch size) over the 26,010 coordinates. Bands of 5 standard errors (std:
    1/sqrt(2n) relative = 0.44%, so +-2.2%); a noise off by a factor sqrt(2) (e.g. divided twice,
    or added per microbatch) is 41% off and fails."""
    ratio = noise_ratio(engine_name, batch, sampling)
    assert abs(ratio - 1) <= 5 / np.sqrt(2 * 26010), ratio


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("engine_name", ["fast", pytest.param("vectorized", marks=pytest.mark.full)])
def test_noise_is_fresh_each_step_and_seed_and_repeats_for_a_seed(batch, engine_name, sampling):
    noisy, clean = noise_specs(sampling)
    lr = noisy.training.learning_rate
    x, y, mask = sampled(batch, sampling)
    start, first = first_draw(engine_name, batch, sampling)
    assert np.array_equal(first, drawn_noise(engine_name, start, batch, 0, sampling))   # same seed: same draw
    other_seed = drawn_noise(engine_name, start, batch, 1, sampling)
    after_one = flat_step(noisy, engine_name, start, x, y, seed=0, mask=mask)
    second = (flat(flat_step(noisy, engine_name, start, x, y, seed=0, steps=2, mask=mask))
              - flat(flat_step(clean, engine_name, after_one, x, y, seed=0, mask=mask))) / lr
    for other in (other_seed, second):
        corr = np.corrcoef(first, other)[0, 1]
        assert abs(corr) < 0.05, corr      # independent draws: |corr| ~ 0.006 (1/sqrt(26010))


def poisson_spec(clip, noise=0.0):
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["data"]["sampling"] = "poisson"
    raw["privacy"].update(noise_multiplier=noise, l2_norm_clip=clip, num_microbatches=8)
    return typed(raw, "poisson")


@pytest.mark.parametrize("engine_name", ["fast", pytest.param("vectorized", marks=pytest.mark.full)])
@pytest.mark.parametrize("clip", [0.1, 1e3], ids=["clipping", "no-clipping"])
def test_poisson_step_is_the_sampled_examples_step_over_the_expected_batch(batch, engine_name, clip):
    """6 sampled examples padded with 6 masked rows of random images and labels: the update is the
    tutorial optimizer's step on the 6 examples alone (6 microbatches, so divided by 6) times 6/8,
    8 being the expected batch size. Masked rows change nothing (noise 0)."""
    x, y, mask = sampled(batch, "poisson")
    spec = poisson_spec(clip)
    engine.seed_everything(0)
    start = engine.build_model(noise_specs()[1], "none").get_weights()
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 6
    raw["privacy"].update(noise_multiplier=0.0, l2_norm_clip=clip, num_microbatches=6)
    tutorial = one_step(typed(raw, "t"), "tutorial", start, x[:6], y[:6])
    padded = flat_step(spec, engine_name, start, x, y, 0, mask=mask)
    alone = flat_step(spec, engine_name, start, x[:6], y[:6], 0, mask=mask[:6])
    assert max(float(np.max(np.abs(t - s))) for t, s in zip(tutorial, start)) > 2e-4
    for t, p, a, s in zip(tutorial, padded, alone, start):
        np.testing.assert_allclose(p - s, (t - s) * 6 / 8, atol=1e-6, rtol=0)
        np.testing.assert_allclose(p, a, atol=1e-7, rtol=0)   # float32 sums of another length


def test_poisson_masked_rows_matter_if_unmasked(batch):
    """Guards the test above: the padding rows are real inputs that would change the step."""
    x, y, mask = sampled(batch, "poisson")
    spec = poisson_spec(1e3)
    engine.seed_everything(0)
    start = engine.build_model(noise_specs()[1], "none").get_weights()
    masked = flat(flat_step(spec, "fast", start, x, y, 0, mask=mask))
    unmasked = flat(flat_step(spec, "fast", start, x, y, 0, mask=np.ones_like(mask)))
    assert np.max(np.abs(masked - unmasked)) > 1e-3


@pytest.mark.parametrize("engine_name", ["fast", pytest.param("vectorized", marks=pytest.mark.full)])
def test_poisson_training_metrics_count_only_the_sampled_examples(batch, engine_name):
    """The step's reported loss and accuracy are those of the 6 sampled examples (the model's
    predictions before the update), not of the 12 rows with their padding (labelled here with the
    model's own predictions, so that counting them would raise the accuracy)."""
    x, y, mask = sampled(batch, "poisson")
    spec = poisson_spec(1.0)
    engine.seed_everything(0)
    model = engine.build_model(spec, engine_name)
    y = y.copy()
    y[6:] = np.eye(10, dtype=np.float32)[np.argmax(model(x[6:]).numpy(), 1)]
    logits = model(x[:6]).numpy()
    real_accuracy = float(np.mean(np.argmax(logits, 1) == np.argmax(y[:6], 1)))
    real_loss = float(np.mean(tf.keras.losses.categorical_crossentropy(y[:6], logits, from_logits=True)))
    logs = model.train_on_batch(x, y, sample_weight=mask, return_dict=True)
    assert real_accuracy < 1
    assert logs["accuracy"] == pytest.approx(real_accuracy, abs=1e-6)
    assert logs["loss"] == pytest.approx(real_loss, rel=1e-5)

"""The `fast` and `vectorized` engines take the same DP-SGD step as the tutorial's optimizer (noise 0)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import raw_spec
from dprepro import engine
from dprepro.data import load_mnist
from dprepro.spec import validate


@pytest.fixture(scope="module")
def batch():
    data = load_mnist(__import__("conftest").DATA, train_examples=8, test_examples=1)
    return data.x_train, data.y_train


_tutorial_steps = {}


def tutorial_step(spec, weights, x, y):
    """The tutorial engine's step (slow to build), computed once per configuration."""
    key = (spec["privacy"]["num_microbatches"], spec["privacy"]["l2_norm_clip"], spec["model"]["pooling"])
    if key not in _tutorial_steps:
        _tutorial_steps[key] = one_step(spec, "tutorial", weights, x, y)
    return _tutorial_steps[key]


def one_step(spec, engine_name, weights, x, y):
    engine.seed_everything(0)
    model = engine.build_model(spec, engine_name)
    model.set_weights(weights)
    model.train_on_batch(x, y)
    return model.get_weights()


@pytest.mark.parametrize("engine_name", ["fast", "vectorized"])
@pytest.mark.parametrize("num_microbatches", [8, 2], ids=["1-per-microbatch", "4-per-microbatch"])
@pytest.mark.parametrize("clip", [0.1, 1e3], ids=["clipping", "no-clipping"])
@pytest.mark.parametrize("pooling", ["max", "average"])
def test_fast_step_equals_tutorial_step(batch, num_microbatches, clip, engine_name, pooling):
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["privacy"].update(noise_multiplier=0.0, l2_norm_clip=clip, num_microbatches=num_microbatches)
    raw["model"]["pooling"] = pooling
    spec = validate(raw, "test")
    x, y = batch
    engine.seed_everything(0)
    start = engine.build_model(spec, "none").get_weights()
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
    start = engine.build_model(validate(raw, "t"), "none").get_weights()
    steps = {}
    for clip in (0.1, 1e3):
        raw["privacy"]["l2_norm_clip"] = clip
        after = one_step(validate(raw, "t"), "fast", start, x, y)
        steps[clip] = np.sqrt(sum(float(np.sum((a - s) ** 2)) for a, s in zip(after, start)))
    assert steps[0.1] <= 0.25 * 0.1 * 1.0001  # lr 0.25 x clip bounds the step's norm
    assert steps[1e3] > 3 * steps[0.1]


def test_xla_is_off_by_default():
    spec = validate(raw_spec("tutorial-3ep"), "t")
    assert spec["engine"]["use_xla"] is False
    assert engine.build_model(spec, "fast").jit_compile is False
    model = engine.build_model(spec, "vectorized")
    assert not isinstance(model.train_step, tf.types.experimental.GenericFunction)
    raw = raw_spec("tutorial-3ep")
    raw["engine"]["use_xla"] = True
    assert engine.build_model(validate(raw, "t"), "fast").jit_compile is True


# The noise: from the same weights and batch, (noisy step - noise-free step) / learning rate is
# -N / num_microbatches, N ~ Normal(0, (l2_norm_clip * noise_multiplier)^2) per coordinate.
NOISE = {"l2_norm_clip": 1.5, "noise_multiplier": 1.3, "num_microbatches": 8}


def flat_step(spec, engine_name, weights, x, y, seed, steps=1):
    engine.seed_everything(seed)
    model = engine.build_model(spec, engine_name)
    model.set_weights(weights)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model.get_weights()


def flat(weights):
    return np.concatenate([w.ravel() for w in weights]).astype(np.float64)


def noise_specs():
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["privacy"].update(NOISE)
    noisy = validate(raw, "noise")
    raw["privacy"]["noise_multiplier"] = 0.0
    return noisy, validate(raw, "no-noise")


def drawn_noise(engine_name, start, x, y, seed):
    """The noise of one step, as the engine added it, scaled back by the learning rate."""
    noisy, clean = noise_specs()
    lr = noisy["training"]["learning_rate"]
    return (flat(flat_step(noisy, engine_name, start, x, y, seed))
            - flat(flat_step(clean, engine_name, start, x, y, seed))) / lr


@pytest.mark.parametrize("engine_name", ["fast", "vectorized"])
def test_noise_has_the_scale_of_the_guarantee(batch, engine_name):
    """Mean ~ 0 and standard deviation clip * noise_multiplier / num_microbatches over the 26,010
    coordinates. Bands of 5 standard errors (std: 1/sqrt(2n) relative = 0.44%, so +-2.2%); a noise
    off by a factor sqrt(2) (e.g. divided twice, or added per microbatch) is 41% off and fails."""
    x, y = batch
    engine.seed_everything(0)
    start = engine.build_model(noise_specs()[0], "none").get_weights()
    noise = drawn_noise(engine_name, start, x, y, seed=0)
    n, want = noise.size, NOISE["l2_norm_clip"] * NOISE["noise_multiplier"] / NOISE["num_microbatches"]
    assert n == 26010
    assert abs(noise.std() / want - 1) <= 5 / np.sqrt(2 * n), noise.std() / want
    assert abs(noise.mean()) <= 5 * want / np.sqrt(n)


@pytest.mark.parametrize("engine_name", ["fast", "vectorized"])
def test_noise_is_fresh_each_step_and_seed_and_repeats_for_a_seed(batch, engine_name):
    x, y = batch
    noisy, clean = noise_specs()
    lr = noisy["training"]["learning_rate"]
    engine.seed_everything(0)
    start = engine.build_model(noisy, "none").get_weights()
    first = drawn_noise(engine_name, start, x, y, seed=0)
    assert np.array_equal(first, drawn_noise(engine_name, start, x, y, seed=0))   # same seed: same draw
    other_seed = drawn_noise(engine_name, start, x, y, seed=1)
    after_one = flat_step(noisy, engine_name, start, x, y, seed=0)
    second = (flat(flat_step(noisy, engine_name, start, x, y, seed=0, steps=2))
              - flat(flat_step(clean, engine_name, after_one, x, y, seed=0))) / lr
    for other in (other_seed, second):
        corr = np.corrcoef(first, other)[0, 1]
        assert abs(corr) < 0.05, corr      # independent draws: |corr| ~ 0.006 (1/sqrt(26010))

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

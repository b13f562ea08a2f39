"""The pieces of the `fast` engine against plain TensorFlow gradients, one example at a time."""

import numpy as np
import pytest
import tensorflow as tf

from dprepro.training.fast_dp import LayerGradients, conv_example_gradients, squared_gram_or_direct


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("size,kernel,stride,channels", [
    (28, 8, 2, 1), (13, 4, 2, 1), (9, 3, 1, 1), (10, 3, 3, 1), (13, 4, 2, 3), (11, (3, 5), (2, 1), 2)])
def test_conv_example_gradients_are_each_examples_gradient(padding, size, kernel, stride, channels):
    layer = tf.keras.layers.Conv2D(5, kernel, strides=stride, padding=padding)
    rng = np.random.default_rng(0)
    a = tf.constant(rng.normal(size=(3, size, size, channels)), tf.float32)
    z = layer(a)
    g = tf.constant(rng.normal(size=z.shape), tf.float32)
    got = conv_example_gradients(layer, a, g).numpy()
    for i in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(a[i:i + 1]) * g[i:i + 1])   # d loss / d z = g for example i
        want = tape.gradient(loss, layer.kernel).numpy()
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-4)


def example_gradients(layer, a, g):
    """Each example's (kernel, bias) gradient of sum(layer(a_i) * g_i), by TensorFlow, one at a time."""
    out = []
    for i in range(a.shape[0]):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(a[i:i + 1]) * g[i:i + 1])
        out.append([t.numpy() for t in tape.gradient(loss, [layer.kernel, layer.bias])])
    return out


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("size,kernel,stride,channels,dilation", [
    (13, 4, 2, 16, 1),      # the tutorial's second Conv2D
    (11, 3, 2, 3, 1),       # kernel not a multiple of the stride: taps beyond it are dropped
    (9, (3, 5), (1, 2), 2, 1),
    (12, 3, 1, 2, 2),       # dilated: ExtractImagePatches
    (28, 8, 2, 1, 1),       # one input channel: per-example gradients formed outright
])
@pytest.mark.parametrize("microbatches", [6, 2])
def test_layer_norms_and_clipped_sum_equal_per_example_gradients(padding, size, kernel, stride, channels,
                                                                 dilation, microbatches):
    """LayerGradients against TensorFlow's gradient of each example alone: the squared norm of each
    microbatch's summed gradient, and the sum of scale_i * gradient_i."""
    layer = tf.keras.layers.Conv2D(4, kernel, strides=stride, padding=padding, dilation_rate=dilation)
    rng = np.random.default_rng(3)
    a = tf.constant(rng.normal(size=(6, size, size, channels)), tf.float32)
    z = layer(a)
    g = tf.constant(rng.normal(size=z.shape), tf.float32)
    want = example_gradients(layer, a, g)
    part = LayerGradients(layer, a, g, microbatches)
    per_mb = 6 // microbatches
    want_norms = [sum(np.sum(np.sum([want[i][k] for i in range(m * per_mb, (m + 1) * per_mb)], axis=0,
                                    dtype=np.float64) ** 2) for k in range(2)) for m in range(microbatches)]
    np.testing.assert_allclose(part.squared_norms().numpy(), want_norms, rtol=1e-4)
    scale = rng.uniform(0.1, 1.0, size=6).astype(np.float32)
    got = part.clipped_sum(tf.constant(scale))
    for k in range(2):
        expected = sum(scale[i] * want[i][k].astype(np.float64) for i in range(6))
        np.testing.assert_allclose(got[k].numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows,d,c", [(1, 512, 32), (25, 256, 32), (4, 3, 2)])
def test_gram_and_direct_forms_agree(rows, d, c):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, rows, d)).astype(np.float32)
    g = rng.normal(size=(6, rows, c)).astype(np.float32)
    want = np.array([np.sum((a[m].T.astype(np.float64) @ g[m]) ** 2) for m in range(6)])
    np.testing.assert_allclose(squared_gram_or_direct(tf.constant(a), tf.constant(g)).numpy(), want, rtol=1e-4)


def test_masked_rows_have_zero_gradient_and_leave_real_norms_alone():
    """Poisson padding: rows of random images and labels with mask 0 get g = 0 exactly in every
    layer (so zero norm, zero share of the clipped sum), and every real example's squared norm is
    the one it has in a batch without the padding."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from conftest import raw_spec, typed
    from dprepro.training import engines as engine

    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 8
    raw["data"]["sampling"] = "poisson"
    raw["privacy"].update(num_microbatches=8, noise_multiplier=0.0)
    engine.seed_everything(0)
    model = engine.build_model(typed(raw, "t"))
    rng = np.random.default_rng(3)
    x = rng.random((10, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 10)]
    mask = np.array([1.0] * 4 + [0.0] * 6, dtype=np.float32)

    def norms(x, y, mask):
        _, kept, grads_z = model.backward(tf.constant(x), tf.constant(y), tf.constant(mask))
        parts = [LayerGradients(layer, a, g, None) for (layer, a, _), g in zip(kept, grads_z)]
        return [p.squared_norms().numpy() for p in parts], [g.numpy() for g in grads_z]

    padded, g_padded = norms(x, y, mask)
    alone, _ = norms(x[:4], y[:4], mask[:4])
    assert len(padded) == 4                                     # 2 Conv2D + 2 Dense layers
    for layer_padded, layer_alone, g in zip(padded, alone, g_padded):
        assert np.all(g[4:] == 0)                               # exactly: loss * 0 before the backward pass
        assert np.all(layer_padded[4:] == 0)
        assert np.all(layer_padded[:4] > 0)
        np.testing.assert_allclose(layer_padded[:4], layer_alone, rtol=1e-5)


def test_a_failing_layer_call_keeps_the_layers_activation():
    """Review of 0.5.0, defect 7: the forward pass swaps each layer's activation for the identity
    to keep its pre-activation output; a call that raises must not leave the identity behind."""
    from dprepro.training.fast_dp import FastDPSequential

    dense = tf.keras.layers.Dense(3, activation="relu")
    model = FastDPSequential(l2_norm_clip=1.0, noise_multiplier=0.0, num_microbatches=1,
                             layers=[tf.keras.layers.InputLayer(input_shape=(4,)), dense])
    model.forward(tf.zeros([2, 4]))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        model.forward(tf.zeros([2, 5]))                # the wrong width: the layer call fails
    assert dense.activation is tf.keras.activations.relu

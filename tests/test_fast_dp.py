"""The pieces of the `fast` engine against plain TensorFlow gradients, one example at a time."""

import numpy as np
import pytest
import tensorflow as tf

from dprepro.fast_dp import conv_example_gradients, conv_patches, squared_gram_or_direct


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


def test_patch_rows_match_the_kernel_layout():
    """patches^T g, reshaped to the kernel's shape, is the kernel gradient (the clipped-sum path)."""
    layer = tf.keras.layers.Conv2D(4, 4, strides=2, padding="valid")
    rng = np.random.default_rng(1)
    a = tf.constant(rng.normal(size=(2, 13, 13, 3)), tf.float32)
    with tf.GradientTape() as tape:
        z = layer(a)
        g = tf.constant(rng.normal(size=z.shape), tf.float32)
        loss = tf.reduce_sum(z * g)
    want = tape.gradient(loss, layer.kernel).numpy()
    p = conv_patches(layer, a)
    got = tf.matmul(tf.reshape(p, [-1, p.shape[-1]]), tf.reshape(g, [-1, 4]), transpose_a=True)
    np.testing.assert_allclose(tf.reshape(got, want.shape).numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows,d,c", [(1, 512, 32), (25, 256, 32), (4, 3, 2)])
def test_gram_and_direct_forms_agree(rows, d, c):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, rows, d)).astype(np.float32)
    g = rng.normal(size=(6, rows, c)).astype(np.float32)
    want = np.array([np.sum((a[m].T.astype(np.float64) @ g[m]) ** 2) for m in range(6)])
    np.testing.assert_allclose(squared_gram_or_direct(tf.constant(a), tf.constant(g)).numpy(), want, rtol=1e-4)

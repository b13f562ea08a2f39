"""The tutorial CNN: output shape and parameter counts, per layer."""

import pytest
import tensorflow as tf

from dprepro.training.model import tutorial_cnn_layers


@pytest.mark.parametrize("pooling", ["max", "average"])
def test_tutorial_cnn_shapes_and_parameters(pooling):
    model = tf.keras.Sequential(tutorial_cnn_layers(pooling))
    assert model.output_shape == (None, 10)
    assert [layer.count_params() for layer in model.layers] == [1040, 0, 8224, 0, 0, 16416, 330]
    assert model.count_params() == 26010
    assert [tuple(layer.output_shape[1:]) for layer in model.layers] == [
        (14, 14, 16), (13, 13, 16), (5, 5, 32), (4, 4, 32), (512,), (32,), (10,)]
    expected_pool = tf.keras.layers.MaxPool2D if pooling == "max" else tf.keras.layers.AveragePooling2D
    assert isinstance(model.layers[1], expected_pool)

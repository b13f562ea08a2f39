"""The models, as lists of fresh Keras layers (each engine wraps them in its own model): the tutorial's
CNN on pixels, and Tramer & Boneh's two heads on ScatterNet features (features.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from dprepro.files import atomic
from dprepro.spec.typed import Spec

INPUT_SHAPE = (28, 28, 1)
SCATTERNET_SHAPE = (7, 7, 81)


def tutorial_cnn_layers(pooling: str = "max", activation: str = "relu") -> list:
    """Conv(16, 8x8, s2, same) -> Pool(2, s1) -> Conv(32, 4x4, s2, valid) -> Pool(2, s1)
    -> Flatten -> Dense(32) -> Dense(10) logits; `activation` everywhere but the last layer.

    `pooling` is "max" (the tutorial notebook) or "average" (the Keras script variant);
    `activation` "relu" (the tutorial) or "tanh" (Papernot et al. 2021; Tramer & Boneh 2021's
    end-to-end CNN). 26,010 trainable parameters in every variant.
    """
    pool = {"max": tf.keras.layers.MaxPool2D, "average": tf.keras.layers.AveragePooling2D}[pooling]
    return [
        tf.keras.layers.InputLayer(input_shape=INPUT_SHAPE),
        tf.keras.layers.Conv2D(16, 8, strides=2, padding="same", activation=activation),
        pool(2, 1),
        tf.keras.layers.Conv2D(32, 4, strides=2, padding="valid", activation=activation),
        pool(2, 1),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(32, activation=activation),
        tf.keras.layers.Dense(10),
    ]


def scatternet_linear_layers() -> list:
    """A linear classifier on the 7x7x81 ScatterNet features: Flatten -> Dense(10) logits (39,700
    parameters)."""
    return [tf.keras.layers.InputLayer(input_shape=SCATTERNET_SHAPE), tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(10)]


def scatternet_cnn_layers(activation: str = "tanh") -> list:
    """Tramer & Boneh's small CNN on the 7x7x81 ScatterNet features: Conv(16, 3x3, s2, same) ->
    Conv(32, 3x3, s1, same) -> Flatten -> Dense(32) -> Dense(10) logits, `activation` but on the
    logits (33,066 parameters)."""
    return [
        tf.keras.layers.InputLayer(input_shape=SCATTERNET_SHAPE),
        tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation=activation),
        tf.keras.layers.Conv2D(32, 3, strides=1, padding="same", activation=activation),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(32, activation=activation),
        tf.keras.layers.Dense(10),
    ]


class Projection(tf.keras.layers.Layer):
    """x -> flatten(x) @ P with a fixed, non-trainable P (n_inputs x dimensions): the DP-PCA
    projection of Abadi et al., set per seed from the private release (features.private_projection)
    and saved with the model's weights. The fast engine applies it as it is (no trainable weights)."""

    def __init__(self, dimensions: int, **kwargs):
        super().__init__(**kwargs)
        self.dimensions = dimensions

    def build(self, input_shape):
        inputs = int(np.prod(input_shape[1:]))
        self.projection = self.add_weight(name="projection", shape=(inputs, self.dimensions),
                                          initializer="zeros", trainable=False)

    def call(self, x):
        return tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), self.projection)

    def get_config(self):
        return {**super().get_config(), "dimensions": self.dimensions}


def pca_mlp_layers(dimensions: int, activation: str = "relu") -> list:
    """Abadi et al.'s MNIST network: the DP-PCA projection to `dimensions`, then Dense(1000,
    activation) -> Dense(10) logits (61,010 trainable parameters at 60 dimensions)."""
    return [tf.keras.layers.InputLayer(input_shape=INPUT_SHAPE), Projection(dimensions),
            tf.keras.layers.Dense(1000, activation=activation), tf.keras.layers.Dense(10)]


def build_layers(spec: Spec) -> list:
    """Layers for a spec's `model` section (validated: its inputs match data.features)."""
    model = spec.model
    if model.name == "pca_mlp":
        return pca_mlp_layers(spec.data.pca_dimensions, model.activation)
    if model.name == "scatternet_linear":
        return scatternet_linear_layers()
    if model.name == "scatternet_cnn":
        return scatternet_cnn_layers(model.activation)
    return tutorial_cnn_layers(model.pooling, model.activation)


def save_weights(path: Path, weights: list) -> str:
    """A trained model's weights (in layer order) as .npz, written atomically; returns its SHA-256.
    Rebuild with `load_model(spec, path)`."""
    path = Path(path)
    with atomic(path, "wb") as f:
        np.savez(f, *weights)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model(spec: Spec, path: Path) -> tf.keras.Model:
    """A plain Keras model of the spec's layers with the weights saved at `path`, compiled for
    evaluation (loss CategoricalCrossentropy from logits, accuracy)."""
    with np.load(path) as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    keras_model = tf.keras.Sequential(build_layers(spec))
    keras_model.set_weights(weights)
    keras_model.compile(loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return keras_model

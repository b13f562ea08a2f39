"""The canaries: inputs with a label a model can only learn by memorising that one example, each
put into the training set on a fair coin of its own.

Two kinds:
- `synthetic` (default): random binary images (each pixel on with probability 0.2), each with a
  random label. Nothing in MNIST looks like them, so an OUT canary's score is the model's reaction
  to noise and an IN canary's stands out (measured here: the stronger of the two, see docs/audits.md);
- `mislabelled`: the last m MNIST test images, each with a fixed wrong label. They are then never
  used as test images: the audited model is tested on the test images before them.
Images and labels are fixed (the same for every seed); which canaries are IN is drawn from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dprepro.data import NUM_CLASSES, Mnist

KINDS = ("synthetic", "mislabelled")
PIXEL_ON = 0.2
CANARY_STREAM = 0xCA7A           # images and labels (one draw, the same for every seed)
COIN_STREAM = 0xC014             # the coins, per seed


@dataclass(frozen=True)
class Canaries:
    x: np.ndarray          # (m, 28, 28, 1) images
    labels: np.ndarray     # (m,) the labels they are trained and scored with
    included: np.ndarray   # (m,) bool: in the training set of this seed
    kind: str


def wrong_labels(true_labels: np.ndarray) -> np.ndarray:
    """A label other than the true one for each canary, uniform over the nine others."""
    shift = np.random.default_rng([CANARY_STREAM]).integers(1, NUM_CLASSES, size=len(true_labels))
    return (true_labels + shift) % NUM_CLASSES


def synthetic(m: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([CANARY_STREAM, 1])
    return (rng.random((m, *shape)) < PIXEL_ON).astype(np.float32), rng.integers(0, NUM_CLASSES, m)


def coins(m: int, seed: int) -> np.ndarray:
    """m fair coins for `seed`: True = the canary is in the training set."""
    return np.random.default_rng([COIN_STREAM, seed]).random(m) < 0.5


def split(data: Mnist, m: int, seed: int, kind: str = "synthetic") -> tuple[Mnist, Canaries]:
    """The training data with this seed's IN canaries appended (then shuffled or sampled like any
    example), the test set (without the canary images), and the canaries themselves."""
    if kind == "mislabelled":
        x, labels = data.x_test[-m:], wrong_labels(data.y_test[-m:].argmax(1))
        x_test, y_test = data.x_test[:-m], data.y_test[:-m]
    else:
        x, labels = synthetic(m, data.x_train.shape[1:])
        x_test, y_test = data.x_test, data.y_test
    canaries = Canaries(x=x, labels=labels, included=coins(m, seed), kind=kind)
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    augmented = Mnist(
        x_train=np.concatenate([data.x_train, x[canaries.included]]),
        y_train=np.concatenate([data.y_train, one_hot[canaries.included]]),
        x_test=x_test, y_test=y_test, files=data.files)
    return augmented, canaries

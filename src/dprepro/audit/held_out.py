"""The membership inference's non-members: images of the training file an audit keeps out of
training, a public random draw per seed, and the spec and data the audit then trains."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dprepro.errors import InputError
from dprepro.spec import Spec
from dprepro.spec.schema import DATASETS

HELD_OUT = 10_000   # the membership inference's non-members: this many images of the training file, never trained on


def held_out_split(spec: Spec, held_out: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices trained, indices held out) of the training file for the audited `seed`. The held-out
    images are a uniformly random subset, the seed's own public draw: the file's order is not random
    (its last 10,000 images are easier than the rest, as the test images are), and one draw shared by
    every seed would shift all their AUCs alike (a draw's own offset, measured with a model trained on
    all 60,000: -0.003). They come from the images the spec does not train when there are enough (its
    first train_examples are then trained as they are), else from the whole file, and the spec
    trains the rest: as many examples whatever the seed."""
    size = DATASETS[spec.data.dataset]["train"]
    if not 1 <= held_out < size:
        raise InputError(f"--held-out: {held_out} images; need 0 to {size - 1} (of the training file's {size})")
    rng = np.random.default_rng([22, held_out, seed])
    if spec.train_examples + held_out <= size:
        out = rng.choice(np.arange(spec.train_examples, size), held_out, replace=False)
        return np.arange(spec.train_examples), np.sort(out)
    out = np.sort(rng.choice(size, held_out, replace=False))
    return np.setdiff1d(np.arange(size), out), out


def held_out_spec(spec: Spec, held_out: int) -> Spec:
    """The spec an audit trains when `held_out` images are kept out (`held_out_split`; 0: the spec).
    Fewer examples trained means a larger q: the claim is then the accountant's for the n trained."""
    if held_out == 0:
        return spec
    trained, _ = held_out_split(spec, held_out)
    if len(trained) < spec.training.batch_size:
        raise InputError(f"--held-out: {held_out} held out leaves {len(trained)} training examples, fewer than "
                         f"{spec.path}'s training.batch_size {spec.training.batch_size}")
    if len(trained) == spec.train_examples:
        return spec
    return spec.replace({"data.train_examples": len(trained), "data.validation_examples": None})


def seed_data(full, spec: Spec, held_out: int, seed: int):
    """(the data seed `seed`'s audit trains and tests on, its membership inference's non-members (x, y)
    or None) from `full`: the whole training file when images are held out, else the spec's data."""
    if held_out == 0:
        return full, None
    trained, out = held_out_split(spec, held_out, seed)
    return (replace(full, x_train=full.x_train[trained], y_train=full.y_train[trained]),
            (full.x_train[out], full.y_train[out]))

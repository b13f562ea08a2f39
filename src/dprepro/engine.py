"""Training engines: the same model and DP-SGD step, built three ways.

- `tutorial`: the tutorial's own path, `DPKerasSGDOptimizer` with a per-example loss
  (reduction NONE). Faithful and slow: one gradient per microbatch, in a loop.
- `fast`: dprepro's own step (fast_dp.py): each microbatch's gradient norm and the clipped
  gradient sum from the layer inputs and output gradients of one ordinary backward pass
  (ghost clipping for Dense, per-example kernel gradients by one depthwise convolution for
  the first Conv2D, input patches for other Conv2D layers).
- `vectorized`: tf-privacy's `DPSequential`, per-microbatch gradients vectorised with
  `tf.vectorized_map` (what `fast` was in engine version 1).
- `none`: the same model with plain SGD, no clipping, no noise.

DP-SGD semantics, identical in every private engine: split the batch into
`num_microbatches` equal microbatches, take the gradient of each microbatch's mean loss,
clip it to L2 norm `l2_norm_clip`, sum, add Gaussian noise of standard deviation
`l2_norm_clip * noise_multiplier`, divide by `num_microbatches`, take an SGD step.
With `data.sampling: poisson` (fast and vectorized only) every example is its own microbatch,
padded rows are masked out, and the noisy sum is divided by the expected batch size.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
from tensorflow_privacy.privacy.keras_models.dp_keras_model import DPSequential
from tensorflow_privacy.privacy.optimizers.dp_optimizer_keras import DPKerasSGDOptimizer

from dprepro import sampling
from dprepro.fast_dp import FastDPSequential, update_metrics
from dprepro.model import build_layers


def seed_everything(seed: int, use_xla: bool = False) -> None:
    """One seed for weight init (and the noise of `vectorized` and `tutorial`; batches and the
    `fast` engine's noise come from sampling's streams of the same seed); ops deterministic on this
    machine, except in XLA runs (XLA has no deterministic MaxPool gradient)."""
    tf.keras.utils.set_random_seed(seed)
    if not use_xla:
        tf.config.experimental.enable_op_determinism()


def build_model(spec: dict, engine: str | None = None, seed: int = 0) -> tf.keras.Model:
    """A compiled Keras model for the resolved spec dict, with the spec's engine or `engine`;
    `seed` drives the `fast` engine's noise (the others draw theirs from TensorFlow's global seed)."""
    engine = engine or spec["engine"]["name"]
    training, privacy = spec["training"], spec["privacy"]
    layers = build_layers(spec["model"])
    lr = training["learning_rate"]
    poisson = spec["data"]["sampling"] == "poisson"
    if poisson and engine not in ("fast", "vectorized"):
        raise ValueError(f"engine {engine!r} cannot train with poisson sampling")
    loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True)
    if engine == "none":
        model = tf.keras.Sequential(layers)
        optimizer = tf.keras.optimizers.legacy.SGD(learning_rate=lr)
    elif engine == "tutorial":
        model = tf.keras.Sequential(layers)
        optimizer = DPKerasSGDOptimizer(
            l2_norm_clip=privacy["l2_norm_clip"],
            noise_multiplier=privacy["noise_multiplier"],
            num_microbatches=privacy["num_microbatches"],
            learning_rate=lr)
        # The DP optimizer needs one loss value per example to form microbatches.
        loss = tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
    elif engine == "vectorized":
        dp = {"l2_norm_clip": privacy["l2_norm_clip"], "noise_multiplier": privacy["noise_multiplier"],
              "use_xla": spec["engine"]["use_xla"], "layers": layers}
        if poisson:
            model = PoissonDPSequential(expected_batch_size=training["batch_size"], **dp)
        else:
            model = DPSequential(num_microbatches=privacy["num_microbatches"], **dp)
        optimizer = tf.keras.optimizers.legacy.SGD(learning_rate=lr)
    elif engine == "fast":
        model = FastDPSequential(
            l2_norm_clip=privacy["l2_norm_clip"],
            noise_multiplier=privacy["noise_multiplier"],
            num_microbatches=None if poisson else privacy["num_microbatches"],
            expected_batch_size=training["batch_size"] if poisson else None,
            layers=layers, seed=seed)
        optimizer = tf.keras.optimizers.legacy.SGD(learning_rate=lr)
    else:
        raise ValueError(f"unknown engine {engine!r}")
    jit = spec["engine"]["use_xla"] and engine == "fast"   # DPSequential takes use_xla itself
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit)
    return model


class PoissonDPSequential(DPSequential):
    """tf-privacy's DPSequential (per-example gradients by tf.vectorized_map, each clipped by
    DPSequential's own code) for Poisson-sampled, padded batches: one example per microbatch,
    masked rows weighted 0 in their loss and in the sum, the noisy sum divided by
    `expected_batch_size`. The reference that the `fast` engine's Poisson step is tested against."""

    def __init__(self, expected_batch_size: int, **kwargs):
        super().__init__(num_microbatches=None, **kwargs)
        self.expected_batch_size = expected_batch_size

    def train_step(self, data):
        x, y, mask = tf.keras.utils.unpack_x_y_sample_weight(data)
        clipped = tf.vectorized_map(self._compute_per_example_grads,
                                    (x[:, tf.newaxis], y[:, tf.newaxis], mask[:, tf.newaxis]))
        std = self._l2_norm_clip * self._noise_multiplier
        grads = []
        for per_example in clipped:
            total = tf.tensordot(mask, per_example, axes=1)
            if std > 0:
                total += tf.random.normal(tf.shape(total), stddev=std)
            grads.append(total / self.expected_batch_size)
        logits = self(x, training=True)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        update_metrics(self, y, logits, mask)
        return {metric.name: metric.result() for metric in self.metrics}


def training_batches(spec: dict, x: np.ndarray, y: np.ndarray, seed: int, first_epoch: int = 0) -> tf.data.Dataset:
    """The spec's batches from `first_epoch` to the last epoch, as one dataset (shuffled epochs, or
    Poisson samples of epochs * steps_per_epoch steps)."""
    batch_size, epochs = spec["training"]["batch_size"], spec["training"]["epochs"]
    if spec["data"]["sampling"] == "poisson":
        per_epoch = len(x) // batch_size
        return sampling.poisson_batches(x, y, batch_size, seed, epochs * per_epoch, first_epoch * per_epoch)
    return sampling.shuffled_batches(x, y, batch_size, seed, epochs, first_epoch)


class EpochTimer(tf.keras.callbacks.Callback):
    """Wall time of each epoch (training and evaluation), in seconds."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class Progress(tf.keras.callbacks.Callback):
    """Each epoch's metrics and wall time, continuing those of a resumed run; after each epoch
    `on_epoch(epochs_done, model, state)` (the pipeline's checkpoint)."""

    LOGS = {"train_loss": "loss", "train_accuracy": "accuracy", "test_loss": "val_loss",
            "test_accuracy": "val_accuracy"}

    def __init__(self, previous: dict | None = None, on_epoch=None):
        super().__init__()
        previous = previous or {"history": {k: [] for k in self.LOGS}, "epoch_seconds": [], "wall_seconds": 0.0}
        self.history = {k: list(v) for k, v in previous["history"].items()}
        self.epoch_seconds = list(previous["epoch_seconds"])
        self.wall_before = previous["wall_seconds"]
        self.on_epoch = on_epoch

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for name, key in self.LOGS.items():
            self.history[name].append(float(logs[key]))
        self.epoch_seconds.append(time.perf_counter() - self._start)
        if self.on_epoch:
            self.on_epoch(epoch + 1, self.model, self.state())

    def state(self) -> dict:
        return {"history": self.history, "epoch_seconds": self.epoch_seconds,
                "wall_seconds": self.wall_before + time.perf_counter() - self._train_start}


def restore(model: tf.keras.Model, input_shape, weights: list, optimizer_weights: list) -> None:
    """Put a checkpoint's weights and optimizer variables (step counter included) into `model`."""
    model.build((None, *input_shape))
    model.set_weights(weights)
    model.optimizer._create_all_weights(model.trainable_variables)
    model.optimizer.set_weights(optimizer_weights)


def train(spec: dict, data, seed: int, callbacks=(), engine: str | None = None,
          resume: dict | None = None, on_epoch=None) -> tuple[dict, tf.keras.Model]:
    """Train one seed, from scratch or from `resume` (a checkpoint: epoch, progress, weights,
    optimizer weights); after each epoch call `on_epoch(epochs_done, model, state)`. Return its
    outcome (history of per-epoch metrics, final metrics, timings) and the trained model."""
    seed_everything(seed, spec["engine"]["use_xla"])
    model = build_model(spec, engine, seed)
    training = spec["training"]
    first_epoch = resume["epoch"] if resume else 0
    if resume:
        restore(model, data.x_train.shape[1:], resume["weights"], resume["optimizer_weights"])
    progress = Progress(resume and resume["progress"], on_epoch)
    if first_epoch < training["epochs"]:
        model.fit(
            training_batches(spec, data.x_train, data.y_train, seed, first_epoch),
            epochs=training["epochs"], initial_epoch=first_epoch,
            # One dataset for all epochs, read on across them (given steps_per_epoch, Keras keeps the iterator).
            steps_per_epoch=len(data.x_train) // training["batch_size"],
            validation_data=(data.x_test, data.y_test),
            validation_batch_size=1000,
            callbacks=[*callbacks, progress],   # the checkpoint last: a resumed run never misses a logged epoch
            verbose=0)
        state = progress.state()
    else:
        state = resume["progress"]
    history = {"epoch": list(range(1, training["epochs"] + 1)), **state["history"]}
    outcome = {
        "seed": seed,
        "test_accuracy": history["test_accuracy"][-1], "test_loss": history["test_loss"][-1],
        "train_accuracy": history["train_accuracy"][-1], "train_loss": history["train_loss"][-1],
        "steps": training["epochs"] * (data.x_train.shape[0] // training["batch_size"]),
        "history": history,
        "epoch_seconds": state["epoch_seconds"],
        "wall_seconds": state["wall_seconds"],
    }
    return outcome, model


def devices() -> dict:
    """The accelerators TensorFlow sees and the CUDA/cuDNN versions it was built against."""
    build = tf.sysconfig.get_build_info()
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return {"gpus": gpus, "built_with_cuda": bool(build.get("is_cuda_build")),
            "cuda_version": build.get("cuda_version"), "cudnn_version": build.get("cudnn_version")}


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels on the CPU (TF_ENABLE_ONEDNN_OPTS, default on x86)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())

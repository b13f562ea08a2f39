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
`l2_norm_clip * noise_multiplier`, divide by `num_microbatches`, take an SGD step (with the spec's
momentum and learning-rate schedule: post-processing of the noisy gradients, no privacy cost).
With `data.sampling: poisson` (fast and vectorized only) every example is its own microbatch,
padded rows are masked out, and the noisy sum is divided by the expected batch size.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow_privacy.privacy.keras_models.dp_keras_model import DPSequential
from tensorflow_privacy.privacy.optimizers.dp_optimizer_keras import DPKerasSGDOptimizer

from dprepro.spec import POISSON_ENGINES, Spec
from dprepro.training.fast_dp import FastDPSequential, update_metrics
from dprepro.training.model import build_layers
from dprepro.training.recorder import examples_per_microbatch, record_step


def seed_everything(seed: int, use_xla: bool = False) -> None:
    """One seed for weight init (and the noise of `vectorized` and `tutorial`; batches and the
    `fast` engine's noise come from sampling's streams of the same seed); ops deterministic on this
    machine, except in XLA runs (XLA has no deterministic MaxPool gradient)."""
    tf.keras.utils.set_random_seed(seed)
    if not use_xla:
        tf.config.experimental.enable_op_determinism()


class LinearDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear from `initial` to `final` over `decay_steps` optimizer steps, then `final` (the
    optimizer's own step counter drives it, so a restored optimizer resumes it exactly)."""

    def __init__(self, initial: float, final: float, decay_steps: int):
        self.initial, self.final, self.decay_steps = initial, final, decay_steps

    def __call__(self, step):
        done = tf.minimum(tf.cast(step, tf.float32), float(self.decay_steps)) / float(self.decay_steps)
        return self.initial + (self.final - self.initial) * done

    def get_config(self):
        return {"initial": self.initial, "final": self.final, "decay_steps": self.decay_steps}


def learning_rate(spec: Spec):
    """The optimizer's learning rate: the spec's number, or its linear schedule."""
    t = spec.training
    if spec.decay_steps is None:
        return t.learning_rate
    return LinearDecay(t.learning_rate, t.final_learning_rate, spec.decay_steps)


def build_model(spec: Spec, engine: str | None = None, seed: int = 0) -> tf.keras.Model:
    """A compiled Keras model for `spec`, with the spec's engine or `engine`; `seed` drives the
    `fast` engine's noise (the others draw theirs from TensorFlow's global seed)."""
    engine = engine or spec.engine.name
    training, privacy = spec.training, spec.privacy
    layers = build_layers(spec)
    if spec.poisson and engine not in POISSON_ENGINES:
        raise ValueError(f"engine {engine!r} cannot train with poisson sampling")
    loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True)
    def sgd():
        return tf.keras.optimizers.legacy.SGD(learning_rate=learning_rate(spec), momentum=training.momentum)

    if engine == "none":
        model, optimizer = RecordedSequential(layers), sgd()
    elif engine == "tutorial":
        model = RecordedSequential(layers)
        optimizer = DPKerasSGDOptimizer(
            l2_norm_clip=privacy.l2_norm_clip, noise_multiplier=privacy.noise_multiplier,
            num_microbatches=privacy.num_microbatches, learning_rate=learning_rate(spec),
            momentum=training.momentum)
        # The DP optimizer needs one loss value per example to form microbatches.
        loss = tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
    elif engine == "vectorized":
        dp = {"l2_norm_clip": privacy.l2_norm_clip, "noise_multiplier": privacy.noise_multiplier,
              "use_xla": spec.engine.use_xla, "layers": layers}
        if spec.poisson:
            model = PoissonDPSequential(expected_batch_size=training.batch_size, **dp)
        else:
            model = RecordedDPSequential(num_microbatches=privacy.num_microbatches, **dp)
        optimizer = sgd()
    elif engine == "fast":
        model = FastDPSequential(
            l2_norm_clip=privacy.l2_norm_clip, noise_multiplier=privacy.noise_multiplier,
            num_microbatches=None if spec.poisson else privacy.num_microbatches,
            expected_batch_size=training.batch_size if spec.poisson else None,
            layers=layers, seed=seed)
        optimizer = sgd()
    else:
        raise ValueError(f"unknown engine {engine!r}")
    jit = spec.engine.use_xla and engine == "fast"   # DPSequential takes use_xla itself
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit)
    return model


class RecordedSequential(tf.keras.Sequential):
    """Keras' own train step (engine `none`, or `tutorial` with tf-privacy's DP optimizer), then what the
    step used recorded for the ledger: the DP optimizer's Gaussian query's clip and noise standard
    deviation (the numbers its graph was built from; the noise multiplier is their ratio, to 12
    significant digits, since the optimizer keeps only the two), or no noise and no clip."""

    def train_step(self, data):
        logs = super().train_step(data)
        query = getattr(self.optimizer, "_dp_sum_query", None)
        if query is None:
            record_step(self, 0.0, None, 1)
        else:
            x, _, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
            record_step(self, float(f"{query._stddev / query._l2_norm_clip:.12g}"), query._l2_norm_clip,
                        examples_per_microbatch(x, self.optimizer._num_microbatches))
        return logs


class RecordedDPSequential(DPSequential):
    """tf-privacy's DPSequential, then what its step used recorded for the ledger."""

    def train_step(self, data):
        logs = super().train_step(data)
        x, _, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
        record_step(self, self._noise_multiplier, self._l2_norm_clip,
                    examples_per_microbatch(x, self._num_microbatches))
        return logs


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
        record_step(self, self._noise_multiplier, self._l2_norm_clip, 1)
        update_metrics(self, y, logits, mask)
        return {metric.name: metric.result() for metric in self.metrics}

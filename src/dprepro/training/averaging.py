"""An exponential moving average of the parameters (`training.ema_decay`): free post-processing.

After every step the average moves towards the new iterate:

    average <- r * average + (1 - r) * iterate,    r = min(ema_decay, (1 + t) / (10 + t)),

t the steps applied so far (the optimizer's counter), so the first steps, whose iterates are far from
where training ends, are forgotten fast, and the rate settles at `ema_decay` after 10 / (1 - ema_decay)
steps or so. The average starts at the initial weights.

Privacy: none spent. The average is a function of the iterates, and DP-SGD's epsilon already covers
releasing every iterate (each step's noisy gradient is a release the accountant composes), so anything
computed from them, with no further access to the data, is post-processing.

A run with an average evaluates and releases the averaged weights: after each epoch the test (and
validation) metrics are the average's, and the seed's model file holds the average. The last iterate's
test and validation metrics are kept beside them (`iterate_test_accuracy`, ...), so one run measures
the average's gain against the same training trajectory, same noise and same batches: training never
reads the average, so the iterates are bit for bit those of the spec without `ema_decay`. The training
metrics (Keras's running mean over the epoch's batches) stay the iterates'.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

WARMUP = 10.0      # r = min(decay, (1 + t) / (WARMUP + t))

# the epoch's metrics of the last iterate, kept under these names when the average takes the plain ones
ITERATE_KEYS = {"val_loss": "iterate_test_loss", "val_accuracy": "iterate_test_accuracy",
                "validation_loss": "iterate_validation_loss", "validation_accuracy": "iterate_validation_accuracy"}


def rate(decay: float, steps_applied: int) -> float:
    """The weight the average keeps after `steps_applied` steps."""
    return min(decay, (1.0 + steps_applied) / (WARMUP + steps_applied))


class ParameterAverage(tf.keras.callbacks.Callback):
    """Keeps the average of the model's trainable variables after every training batch; after each
    epoch evaluates it on the test set (and the validation examples, when given), moving the iterate's
    metrics to ITERATE_KEYS in the epoch's logs. Put it after ValidationScore and before the callbacks
    that log or record the epoch. `initial`: the averages from a checkpoint (a resumed run)."""

    def __init__(self, decay: float, test: tuple, validation: tuple | None = None, initial: list | None = None):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be strictly between 0 and 1, got {decay}")
        self.decay, self.test, self.validation, self.initial = decay, test, validation, initial
        self.averages: list[tf.Variable] = []

    def on_train_begin(self, logs=None):
        variables = self.model.trainable_variables
        start = self.initial if self.initial is not None else [v.numpy() for v in variables]
        if len(start) != len(variables) or any(tuple(a.shape) != tuple(v.shape) for a, v in zip(start, variables)):
            raise ValueError("the checkpoint's parameter averages do not match the model's trainable variables")
        self.averages = [tf.Variable(np.asarray(a, dtype=v.dtype.as_numpy_dtype), trainable=False)
                         for a, v in zip(start, variables)]
        self._update = tf.function(self._move)

    def _move(self, keep):
        for average, variable in zip(self.averages, self.model.trainable_variables):
            average.assign(keep * average + (1.0 - keep) * variable)

    def on_train_batch_end(self, batch, logs=None):
        steps = int(self.model.optimizer.iterations.numpy())
        self._update(tf.constant(rate(self.decay, steps), tf.float32))

    def values(self) -> list[np.ndarray]:
        """The averages now, as arrays (for a checkpoint)."""
        return [a.numpy() for a in self.averages]

    def swap(self) -> None:
        """Exchange the model's trainable variables with the averages (twice restores both)."""
        for average, variable in zip(self.averages, self.model.trainable_variables):
            held = variable.numpy()
            variable.assign(average)
            average.assign(held)

    def on_epoch_end(self, epoch, logs=None):
        for plain, kept in ITERATE_KEYS.items():
            if plain in logs:
                logs[kept] = logs[plain]
        self.swap()
        try:
            logs["val_loss"], logs["val_accuracy"] = map(float, self.model.evaluate(
                *self.test, batch_size=1000, verbose=0))
            if self.validation is not None:
                logs["validation_loss"], logs["validation_accuracy"] = map(float, self.model.evaluate(
                    *self.validation, batch_size=1000, verbose=0))
        finally:
            self.swap()

    def release(self) -> None:
        """At the end of training: the model's trainable variables become the averages (the model
        released and saved); the iterates are gone from it."""
        for average, variable in zip(self.averages, self.model.trainable_variables):
            variable.assign(average)

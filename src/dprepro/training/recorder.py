"""What each training step used, recorded by the step itself (the privacy ledger's source, ledger.py).

Every engine's train step ends with `record_step(model, noise_multiplier, l2_norm_clip,
examples_per_microbatch)`, given the values that step's graph was built with (read from the engine
object, or tf-privacy's optimizer, when the step is traced: the same Python numbers the noise and the
clipping were made from). The call writes them, with the optimizer's step number after the update,
into one slot of a per-epoch buffer of variables (a few scalar writes per step, no host sync). After
each epoch the host reads the buffer once (`StepRecorder.drain`) and the ledger run-length encodes it.

A model without a recorder (a benchmark's, say) records nothing. The recorder is a plain object, not a
tracked Keras attribute: the model's weights, and so every saved model and checkpoint, are unchanged.
"""

from __future__ import annotations

import math

import tensorflow as tf

NO_CLIP = math.inf     # recorded when a step clips nothing (an audit's planted clip-off bug, engine none)


class StepRecorder:
    """A buffer of `capacity` steps: step number, noise multiplier, clip norm, examples per microbatch."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.filled = tf.Variable(0, dtype=tf.int32, trainable=False, name="ledger_filled")
        self.step = tf.Variable(tf.zeros([capacity], tf.int64), trainable=False, name="ledger_step")
        self.noise = tf.Variable(tf.zeros([capacity], tf.float64), trainable=False, name="ledger_noise")
        self.clip = tf.Variable(tf.zeros([capacity], tf.float64), trainable=False, name="ledger_clip")
        self.microbatch = tf.Variable(tf.zeros([capacity], tf.int64), trainable=False, name="ledger_microbatch")

    def record(self, step, noise_multiplier: float, l2_norm_clip: float | None, examples_per_microbatch) -> None:
        """In the step's graph: write one slot (an error if an epoch has more steps than the capacity).
        Every write waits for `step`, the optimizer's counter read after its update: a call that never
        updates (Keras's last call on an exhausted dataset, whose batch read fails) records nothing.
        Without that dependency the writes of constants, which need no batch, ran even then."""
        step = tf.cast(step, tf.int64)
        with tf.control_dependencies([step]):
            slot = tf.reshape(self.filled, [1, 1])
            clip = NO_CLIP if l2_norm_clip is None else l2_norm_clip
            self.step.scatter_nd_update(slot, tf.reshape(step, [1]))
            self.noise.scatter_nd_update(slot, tf.constant([noise_multiplier], tf.float64))
            self.clip.scatter_nd_update(slot, tf.constant([clip], tf.float64))
            self.microbatch.scatter_nd_update(slot, tf.reshape(tf.cast(examples_per_microbatch, tf.int64), [1]))
            self.filled.assign_add(1)

    def drain(self) -> list[tuple[int, float, float | None, int]]:
        """On the host: the steps recorded since the last drain, as (step, noise multiplier, clip or
        None, examples per microbatch), and an empty buffer."""
        k = int(self.filled.numpy())
        rows = list(zip(self.step.numpy()[:k].tolist(), self.noise.numpy()[:k].tolist(),
                        self.clip.numpy()[:k].tolist(), self.microbatch.numpy()[:k].tolist()))
        self.filled.assign(0)
        return [(s, noise, None if math.isinf(clip) else clip, m) for s, noise, clip, m in rows]


def attach(model: tf.keras.Model, capacity: int) -> StepRecorder:
    """Give `model` a recorder of `capacity` steps per drain (before its train step is traced)."""
    recorder = StepRecorder(capacity)
    object.__setattr__(model, "step_recorder", recorder)     # untracked: not one of the model's weights
    return recorder


def record_step(model: tf.keras.Model, noise_multiplier: float, l2_norm_clip: float | None,
                examples_per_microbatch) -> None:
    """Called at the end of every engine's train step, after the optimizer's update."""
    recorder = getattr(model, "step_recorder", None)
    if recorder is not None:
        recorder.record(model.optimizer.iterations, noise_multiplier, l2_norm_clip, examples_per_microbatch)


def examples_per_microbatch(x, num_microbatches: int | None):
    """The rows of the batch `x` in each microbatch (one when every example is its own)."""
    return 1 if num_microbatches is None else tf.shape(x)[0] // num_microbatches

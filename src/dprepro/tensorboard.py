"""TensorBoard logs of one seed: per-epoch scalars and the spec's hyper-parameters (HParams).

Tags: loss/train, loss/test, accuracy/train, accuracy/test, learning_rate, and
epsilon/<accountant> for a private run (one curve per accountant, see accounting.py), and
epsilon/of_record: the smallest value that holds for the run's sampling and sensitivity.
"""

from __future__ import annotations

import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api


def hparams(spec: dict, seed: int, engine: str) -> dict:
    """Flat hyper-parameters of a resolved spec dict, for TensorBoard's HParams dashboard."""
    flat = {"spec": spec["name"], "spec_version": spec["version"], "seed": seed, "engine": engine,
            "epochs": spec["training"]["epochs"], "batch_size": spec["training"]["batch_size"],
            "learning_rate": spec["training"]["learning_rate"], "pooling": spec["model"]["pooling"],
            "private": spec["privacy"]["enabled"], "sampling": spec["data"].get("sampling", "shuffle")}
    if spec["privacy"]["enabled"]:
        flat.update({k: spec["privacy"][k] for k in
                     ("l2_norm_clip", "noise_multiplier", "num_microbatches", "delta")})
    return flat


class TensorBoardLog(tf.keras.callbacks.Callback):
    """Writes one event file per seed folder; `epsilon_curve` is {accountant: [eps per epoch]}."""

    def __init__(self, logdir, spec: dict, seed: int, engine: str, epsilon_curve: dict):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(logdir))
        self.hparams = hparams(spec, seed, engine)
        self.learning_rate = spec["training"]["learning_rate"]
        self.epsilon_curve = epsilon_curve

    def on_train_begin(self, logs=None):
        with self.writer.as_default():
            hparams_api.hparams(self.hparams, trial_id=f"{self.hparams['spec']}/seed-{self.hparams['seed']}")

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        with self.writer.as_default():
            for split, prefix in (("train", ""), ("test", "val_")):
                tf.summary.scalar(f"loss/{split}", logs[prefix + "loss"], step=step)
                tf.summary.scalar(f"accuracy/{split}", logs[prefix + "accuracy"], step=step)
            tf.summary.scalar("learning_rate", self.learning_rate, step=step)
            for accountant, values in self.epsilon_curve.items():
                tf.summary.scalar(f"epsilon/{accountant}", values[epoch], step=step)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()

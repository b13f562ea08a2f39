"""The Keras callbacks of a training run: epoch timing, the resumable progress record (history,
epoch times, wall time; the checkpoint hook), one progress line per epoch, and the TensorBoard log
of one seed: per-epoch scalars and the spec's hyper-parameters (HParams).

TensorBoard tags: loss/train, loss/test, accuracy/train, accuracy/test (loss/validation and
accuracy/validation when the spec holds validation examples out), learning_rate, and
epsilon/<accountant> for a private run (one curve per accountant, see accounting.py), and
epsilon/of_record: the smallest value that holds for the run's sampling and sensitivity. With a
parameter average (averaging.py) the test and validation scalars are the average's, and
accuracy/test_last_iterate the last iterate's.
"""

from __future__ import annotations

import time

import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from dprepro.spec import Spec


def hparams(spec: Spec, seed: int, engine: str) -> dict:
    """Flat hyper-parameters of a spec, for TensorBoard's HParams dashboard."""
    flat = {"spec": spec.name, "spec_version": spec.version, "seed": seed, "engine": engine,
            "epochs": spec.training.epochs, "batch_size": spec.training.batch_size,
            "learning_rate": spec.training.learning_rate, "pooling": spec.model.pooling,
            "activation": spec.model.activation, "momentum": spec.training.momentum,
            "learning_rate_schedule": spec.training.learning_rate_schedule,
            "private": spec.private, "sampling": spec.sampling}
    if spec.private:
        p = spec.privacy
        flat.update(l2_norm_clip=p.l2_norm_clip, noise_multiplier=p.noise_multiplier,
                    num_microbatches=p.num_microbatches, delta=p.delta)
    return flat


class TensorBoardLog(tf.keras.callbacks.Callback):
    """Writes one event file per seed folder; `epsilon_curve` is {accountant: [eps per epoch]}."""

    def __init__(self, logdir, spec: Spec, seed: int, engine: str, epsilon_curve: dict):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(logdir))
        self.hparams = hparams(spec, seed, engine)
        self.spec = spec
        self.epsilon_curve = epsilon_curve

    def on_train_begin(self, logs=None):
        with self.writer.as_default():
            hparams_api.hparams(self.hparams, trial_id=f"{self.hparams['spec']}/seed-{self.hparams['seed']}")

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        with self.writer.as_default():
            for split, prefix in (("train", ""), ("test", "val_"), ("validation", "validation_")):
                if prefix + "loss" in logs:
                    tf.summary.scalar(f"loss/{split}", logs[prefix + "loss"], step=step)
                    tf.summary.scalar(f"accuracy/{split}", logs[prefix + "accuracy"], step=step)
            if "iterate_test_accuracy" in logs:     # a parameter average's run: accuracy/test is the average's
                tf.summary.scalar("accuracy/test_last_iterate", logs["iterate_test_accuracy"], step=step)
            # the rate of the epoch's last step
            tf.summary.scalar("learning_rate", self.spec.learning_rate_at(step * self.spec.steps_per_epoch - 1), step=step)
            for accountant, values in self.epsilon_curve.items():
                tf.summary.scalar(f"epsilon/{accountant}", values[epoch], step=step)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


class ValidationScore(tf.keras.callbacks.Callback):
    """After each epoch, the model's loss and accuracy on the validation examples, put into the
    epoch's logs (as validation_loss, validation_accuracy) for the callbacks after it. Keras's own
    `val_` metrics stay the test set's, as in the tutorial."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        loss, accuracy = self.model.evaluate(self.x, self.y, batch_size=1000, verbose=0)
        logs.update(validation_loss=float(loss), validation_accuracy=float(accuracy))


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
    """Each epoch's metrics and wall time, and the privacy ledger (`collect()` brings it up to date),
    continuing those of a resumed run; after each epoch `on_epoch(epochs_done, model, state)` (the
    pipeline's checkpoint)."""

    LOGS = {"train_loss": "loss", "train_accuracy": "accuracy", "test_loss": "val_loss",
            "test_accuracy": "val_accuracy"}
    # with validation examples; with a parameter average, the last iterate's (averaging.ITERATE_KEYS)
    OPTIONAL = ("validation_loss", "validation_accuracy", "iterate_test_loss", "iterate_test_accuracy",
                "iterate_validation_loss", "iterate_validation_accuracy", "kept_steps",      # DPSUR's, the last three
                "published_stop_step", "published_stop_test_accuracy")

    def __init__(self, previous: dict | None = None, on_epoch=None, collect=None):
        super().__init__()
        self.collect = collect
        previous = previous or {"history": {k: [] for k in self.LOGS}, "epoch_seconds": [], "wall_seconds": 0.0}
        self.ledger = previous.get("ledger")     # the dict collect() keeps up to date
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
        for name in self.OPTIONAL:
            if name in logs:
                self.history.setdefault(name, []).append(float(logs[name]))
        self.epoch_seconds.append(time.perf_counter() - self._start)
        if self.collect:
            self.ledger = self.collect()    # the epoch's steps into the ledger (the recorder holds one epoch)
        if self.on_epoch:
            self.on_epoch(epoch + 1, self.model, self.state())

    def state(self) -> dict:
        return {"history": self.history, "epoch_seconds": self.epoch_seconds,
                "wall_seconds": self.wall_before + time.perf_counter() - self._train_start,
                "ledger": self.ledger}


class EpochLine(tf.keras.callbacks.Callback):
    """One progress line per epoch: losses, accuracies, epsilon after the epoch (rdp and the value of
    record, when given a curve), seconds."""

    def __init__(self, label: str, epochs: int, epsilon_curve: dict | None = None, of_record: str | None = None):
        super().__init__()
        self.label, self.epochs, self.curve, self.of_record = label, epochs, epsilon_curve or {}, of_record

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        names = dict.fromkeys(n for n in ("rdp", self.of_record) if n in self.curve)
        eps = "".join(f"  eps({n}) {self.curve[n][epoch]:.4f}" for n in names)
        validation = f"  validation acc {logs['validation_accuracy']:.4f}" if "validation_accuracy" in logs else ""
        averaged = ("" if "iterate_test_accuracy" not in logs
                    else f" (averaged; last iterate {logs['iterate_test_accuracy']:.4f})")
        if "kept_steps" in logs:     # DPSUR: the steps the test kept this epoch
            averaged += f"  kept {int(logs['kept_steps'])} steps"
        print(f"  {self.label}  epoch {epoch + 1}/{self.epochs}  "
              f"train loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}{validation}  "
              f"test loss {logs['val_loss']:.4f} acc {logs['val_accuracy']:.4f}{averaged}{eps}  "
              f"{time.perf_counter() - self.start:.1f} s", flush=True)

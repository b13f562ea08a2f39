"""Training one seed: the spec's batches, the model restored from a checkpoint if resuming, Keras's
fit loop with the progress callback last, and the seed's outcome (history, final metrics, timings)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dprepro import accounting, ledger as privacy_ledger, sampling
from dprepro.mechanisms import dpsur_published_kept_steps
from dprepro.features import private_projection, with_private_normalization
from dprepro.errors import RunCheckFailed
from dprepro.spec import Spec
from dprepro.training.averaging import ParameterAverage
from dprepro.training.callbacks import Progress, ValidationScore
from dprepro.training.engines import build_model, seed_everything
from dprepro.training.recorder import attach
from dprepro.training.selective import KeptSteps, kept_summary, select, tests_of


def draw_key(spec: Spec, seed: int, resume: dict | None = None) -> int | sampling.SecretKey:
    """The key of the run's sampling, noise and private releases: its seed (`reproducible`), or a
    SecretKey (`secret`): new from the operating system's entropy, or the checkpoint's when resuming."""
    if not spec.private or spec.privacy.randomness != "secret":
        return seed
    return sampling.SecretKey(resume["secret"]) if resume and resume.get("secret") is not None else sampling.SecretKey()


def training_batches(spec: Spec, x: np.ndarray, y: np.ndarray, seed: int | sampling.SecretKey,
                     first_epoch: int = 0) -> tf.data.Dataset:
    """The spec's batches from `first_epoch` to the last epoch, as one dataset (shuffled epochs, or
    Poisson samples of epochs * steps_per_epoch steps)."""
    if len(x) != spec.train_examples:
        raise ValueError(f"{len(x)} training examples, the spec says {spec.train_examples}")
    batch_size, per_epoch = spec.training.batch_size, spec.steps_per_epoch
    if spec.selective:           # each step's training batch beside its own validation sample (DPSUR)
        return tf.data.Dataset.zip(tuple(
            sampling.poisson_batches(x, y, size, seed, spec.steps_trained, first_epoch * per_epoch, stream)
            for size, stream in ((batch_size, "poisson"), (spec.selective.validation_batch_size, "selection_sample"))))
    if spec.poisson:
        return sampling.poisson_batches(x, y, batch_size, seed, spec.steps_trained, first_epoch * per_epoch)
    return sampling.shuffled_batches(x, y, batch_size, seed, spec.training.epochs, first_epoch)



def restore(model: tf.keras.Model, input_shape, weights: list, optimizer_weights: list) -> None:
    """Put a checkpoint's weights and optimizer variables (step counter included) into `model`."""
    model.build((None, *input_shape))
    model.set_weights(weights)
    model.optimizer._create_all_weights(model.trainable_variables)
    model.optimizer.set_weights(optimizer_weights)


def applied_steps(model: tf.keras.Model) -> int:
    """The steps the model's optimizer applied: its own counter, which every engine's step advances
    once and a checkpoint carries (a resumed run's earlier steps included)."""
    return int(model.optimizer.iterations.numpy())


def train(spec: Spec, data, seed: int, callbacks=(), engine: str | None = None,
          resume: dict | None = None, on_epoch=None, prepare=None, check: bool = True) -> tuple[dict, tf.keras.Model]:
    """Train one seed, from scratch or from `resume` (a checkpoint: epoch, progress with the ledger so
    far, weights, optimizer weights, and under secret randomness the key); after each epoch call
    `on_epoch(epochs_done, model, state, secret)` (secret: the key's words, or None; with
    `training.ema_decay` also `averages=`, the parameter average's arrays). Return its outcome (history of per-epoch
    metrics, final metrics, the steps applied, the privacy ledger, timings) and the trained model
    (with `training.ema_decay`: the averaged weights, which the metrics are of; averaging.py). RunCheckFailed if the optimizer applied other steps than the spec
    plans, or (`check`, a private spec) if the ledger departs from the spec's plan: the epsilon of
    the spec would not count what ran. An audit's planted bug trains with check=False."""
    seed_everything(seed, spec.engine.use_xla)                        # weight init: from the seed in both modes
    key = draw_key(spec, seed, resume)                                 # sampling, noise, releases
    made = []                                                          # the releases, as each one reports itself
    data, statistics = with_private_normalization(spec, data, key, made)   # this seed's release, if the spec has one
    model = build_model(spec, engine, key)
    if spec.selective:               # DPSUR: each step tested, and rolled back when the test says no
        select(model, spec.selective)
    recorder = attach(model, spec.steps_per_epoch)                     # what each step used (the ledger)
    if prepare is not None:          # e.g. a white-box audit's gradient canaries (audit/whitebox.py)
        prepare(model, key)
    epochs = spec.training.epochs
    first_epoch = resume["epoch"] if resume else 0
    if resume:
        restore(model, data.x_train.shape[1:], resume["weights"], resume["optimizer_weights"])
    elif spec.data.features == "dp_pca":         # this seed's DP-PCA release, a fixed weight of the model
        model.build((None, *data.x_train.shape[1:]))
        (layer,) = [layer for layer in model.layers if hasattr(layer, "projection")]
        layer.projection.assign(private_projection(data.x_train, spec, key, made))
    secret = key.words if isinstance(key, sampling.SecretKey) else None
    ledger = resume["progress"]["ledger"] if resume else privacy_ledger.new(made, tests_of(model, len(data.x_train)))
    batch_sampler = (spec.sampling, spec.training.batch_size / len(data.x_train))   # training_batches' sampler

    def collect():
        privacy_ledger.append(ledger, recorder.drain(), *batch_sampler)
        return ledger
    validation = None if data.x_val is None else (data.x_val, data.y_val)
    decay = spec.training.ema_decay
    average = decay and ParameterAverage(decay, (data.x_test, data.y_test), validation, resume and resume.get("averages"))
    progress = Progress(resume and resume["progress"],
                        on_epoch and (lambda done, model, state: on_epoch(
                            done, model, state, secret, **({"averages": average.values()} if average else {}))), collect)
    # The validation score, then the average: the callbacks after them (progress lines, TensorBoard, the record) see both.
    scores = ([] if validation is None else [ValidationScore(*validation)]) + ([average] if average else [])
    if spec.selective:             # DPSUR: the steps kept; where Fu et al.'s run would stop, if asked
        stop_at = spec.selective.published_epsilon and dpsur_published_kept_steps(
            accounting.Schedule.planned(spec), spec.selective.published_epsilon)
        scores.append(KeptSteps(stop_at, (data.x_test, data.y_test), resume and resume["progress"]["history"]))
    if first_epoch < epochs:
        model.fit(
            training_batches(spec, data.x_train, data.y_train, key, first_epoch),
            epochs=epochs, initial_epoch=first_epoch,
            # One dataset for all epochs, read on across them (given steps_per_epoch, Keras keeps the iterator).
            steps_per_epoch=spec.steps_per_epoch,
            validation_data=(data.x_test, data.y_test),
            validation_batch_size=1000,
            callbacks=[*scores, *callbacks, progress],   # the checkpoint last: a resumed run never misses a logged epoch
            verbose=0)
        state = progress.state()
    else:
        state = resume["progress"]
        if average:                         # nothing left to train: the checkpoint's averages are the release
            average.set_model(model)
            average.on_train_begin()
    collect()                               # steps of an epoch Keras ended early, if any
    applied = applied_steps(model)
    if applied != spec.steps_trained:       # before the caller writes the seed's record
        raise RunCheckFailed(f"seed {seed}: the optimizer applied {applied} steps, the spec plans {spec.steps_trained} "
                             f"(the steps its epsilon counts); the seed is not recorded as finished")
    if check and spec.private:
        privacy_ledger.check(ledger, spec, seed)
    history = {"epoch": list(range(1, epochs + 1)), **state["history"]}
    outcome = {
        "seed": seed,
        "test_accuracy": history["test_accuracy"][-1], "test_loss": history["test_loss"][-1],
        "train_accuracy": history["train_accuracy"][-1], "train_loss": history["train_loss"][-1],
        "steps": applied,
        "ledger": ledger,
        "history": history,
        "epoch_seconds": state["epoch_seconds"],
        "wall_seconds": state["wall_seconds"],
    }
    if "validation_accuracy" in history:
        outcome.update(validation_accuracy=history["validation_accuracy"][-1],
                       validation_loss=history["validation_loss"][-1])
    if statistics is not None:
        outcome["normalization"] = statistics
    if spec.selective:
        outcome["selective_update"] = kept_summary(spec, ledger, history)
    if average:                             # the released model is the average; the last iterate's scores kept
        average.release()
        outcome["parameter_average"] = {"ema_decay": decay, **{k: history[k][-1] for k in history if k.startswith("iterate_")}}

    return outcome, model

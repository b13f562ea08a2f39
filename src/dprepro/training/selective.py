"""Selective update and release (DPSUR, Fu et al., PVLDB 17(6), 2024) on the fast engine: each DP-SGD
step is kept only if a noisy test on private data says it lowered the loss.

One step t, on the training batch B_t and a Poisson sample V_t of the training examples (expected size
`validation_batch_size`), both drawn afresh:

    theta' = the DP-SGD step from theta on B_t              (clip, noise, apply: FastDPSequential)
    d      = clip(L(theta'; V_t) - L(theta; V_t), -C_v, C_v)   (L: mean cross-entropy over V_t; 0 if empty)
    keep   = d + N(0, (2 C_v sigma_v)^2) < beta C_v
    theta  = theta' if keep else theta                      (the optimizer's momentum is not rolled back)

Privacy: the step releases a noisy gradient (accounted as always) and a noisy test. The test's query
is bounded to [-C_v, C_v], so adding or removing one example moves it by at most 2 C_v whatever else
is in V_t, and when that example is not sampled into V_t nothing changes: a Poisson-sampled Gaussian
mechanism of rate validation_batch_size / n and noise multiplier sigma_v, every step, kept or not.
The accountants compose both for every step (the ε that holds). Fu et al. compose only the kept steps
(and their tests); that value is computed per seed, from the count the run kept, and labelled as not
holding (docs/privacy.md, "Selective update (DPSUR)").

One departure from Fu et al.'s code, which compares the candidate's loss on V_t with the loss the last
kept step had on *its own* sample: here both losses are on V_t, so the test reads V_t alone and is the
mechanism above (their difference also reads an earlier, never-released sample).

Randomness: V_t from the stream (seed, "selection_sample", t) and the test's noise from (seed,
"selection", t), like every other draw of a run (sampling.py).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from dprepro import ledger as privacy_ledger
from dprepro.mechanisms import dpsur_published_epsilon, dpsur_published_kept_steps, selection_test
from dprepro.sampling import stream_seed
from dprepro.spec import Spec
from dprepro.training.fast_dp import FastDPSequential


class SelectiveStep(FastDPSequential):
    """The fast engine's step, then DPSUR's test and, when the test says no, the step rolled back.
    Made from a built FastDPSequential by `select` (the engine carries no DPSUR state otherwise)."""

    def configure(self, validation_batch_size: int, validation_clip: float, validation_noise_multiplier: float,
                  threshold: float) -> None:
        self.validation_batch_size = validation_batch_size
        self.validation_clip = validation_clip
        self.validation_noise_multiplier = validation_noise_multiplier
        self.threshold = threshold

    def mean_loss(self, x, y, mask):
        """The mean cross-entropy over the sample's real rows (0 for an empty sample)."""
        per_example = tf.keras.losses.categorical_crossentropy(y, self(x, training=False), from_logits=True)
        return tf.reduce_sum(per_example * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    def test_noise(self, step):
        std = 2.0 * self.validation_clip * self.validation_noise_multiplier
        return tf.random.stateless_normal([], stream_seed(self.seed, "selection", step), stddev=std, alg="philox")

    def train_step(self, data):
        batch, (xv, yv, mv) = data
        step = self.optimizer.iterations                  # before the step: the step's own index
        noise = self.test_noise(step)
        before = [tf.identity(v) for v in self.trainable_variables]
        loss_before = self.mean_loss(xv, yv, mv)
        logs = super().train_step(batch)                  # clip, noise, apply; the ledger records the step
        difference = self.mean_loss(xv, yv, mv) - loss_before
        clipped = tf.clip_by_value(difference, -self.validation_clip, self.validation_clip)
        keep = clipped + noise < self.threshold * self.validation_clip
        for variable, old in zip(self.trainable_variables, before):
            variable.assign(tf.where(keep, variable, old))
        return {**logs, "kept": tf.cast(keep, tf.float32)}


def select(model: FastDPSequential, section) -> SelectiveStep:
    """The built model made a SelectiveStep (in place), with the spec's `privacy.selective_update`."""
    if type(model) is not FastDPSequential:
        raise ValueError(f"selective update needs the fast engine's model, not {type(model).__name__}")
    model.__class__ = SelectiveStep
    model.configure(section.validation_batch_size, section.validation_clip, section.validation_noise_multiplier,
                    section.threshold)
    return model


def tests_of(model, n: int) -> list[dict]:
    """The test every step of `model` makes, as the ledger records it (from the values the step was
    built with; its samples come from `n` training examples); none for another model."""
    if not isinstance(model, SelectiveStep):
        return []
    return [selection_test(model.validation_clip, model.validation_noise_multiplier, model.validation_batch_size / n)]


def kept_summary(spec: Spec, ledger: dict, history: dict) -> dict:
    """A seed's record of its selection: steps proposed and kept, the epsilon Fu et al.'s accounting
    gives this seed (the kept steps and their tests only; it does not hold for the run), and with a
    published_epsilon the model their run would release there (KeptSteps)."""
    ran = privacy_ledger.schedule(ledger, spec)
    kept_per_epoch = history["kept_steps"]
    kept = int(round(sum(kept_per_epoch)))
    published = dpsur_published_epsilon(ran.q, ran.noise_multiplier / ran.sensitivity, kept, ran.delta,
                                        ran.releases, ran.tests)
    out = {}
    if spec.selective.published_epsilon is not None:
        step, accuracy = (history[k][-1] for k in STOP_KEYS)
        out["published_stop"] = {
            "published_epsilon": spec.selective.published_epsilon, "steps_kept": dpsur_published_kept_steps(ran, spec.selective.published_epsilon),
            "reached": step >= 0, "step": int(step) if step >= 0 else None,
            "test_accuracy": accuracy if step >= 0 else None,
            "epsilon_every_step": dataclasses.replace(ran, steps=int(step)).poisson_epsilon("pld") if step >= 0 else None,
            "label": "the model Fu et al.'s run would release at this epsilon (it stops once its accounting has kept "
                     "these steps), scored on the test set when this run got there; epsilon_every_step: the pld epsilon "
                     "of the steps proposed until then, each with its test (what that model cost, counted as it holds)"}
    return {**out, "steps_proposed": ran.steps, "steps_kept": kept,
            "kept_per_epoch": [int(round(k)) for k in kept_per_epoch],
            "published_accounting": {
                "epsilon": published, "delta": ran.delta, "holds_for_this_run": False,
                "label": f"Fu et al. 2024's accounting: RDP over their orders, composing only the {kept} kept steps "
                         f"and their tests (and the releases); the {ran.steps - kept} rejected steps' training and "
                         f"tests were computed on private data too and are not counted, so it does not hold"}}


class KeptSteps(tf.keras.callbacks.Callback):
    """Counts the steps the test kept, per epoch, into the epoch's logs as `kept_steps` (the history
    the progress record and the checkpoint carry). With `stop_at` (Fu et al.'s run at the spec's
    published_epsilon keeps that many steps, then stops) it also scores the model on `test` right after
    the step that brings the kept count to `stop_at`: the model their run would release. Its step and
    accuracy go into every later epoch's logs (`published_stop_step`, `published_stop_test_accuracy`;
    -1 before), so a resumed run keeps them."""

    def __init__(self, stop_at: int | None = None, test: tuple | None = None, history: dict | None = None):
        super().__init__()
        history = history or {}
        self.total = int(round(sum(history.get("kept_steps", []))))
        self.stop_at, self.test = stop_at, test
        self.stop = [history[k][-1] for k in STOP_KEYS] if history.get(STOP_KEYS[0]) else [-1, -1]

    def on_epoch_begin(self, epoch, logs=None):
        self.kept = 0

    def on_train_batch_end(self, batch, logs=None):
        kept = int(round(float(logs["kept"])))
        self.kept, self.total = self.kept + kept, self.total + kept
        if self.stop_at is not None and self.stop[0] < 0 and kept and self.total >= self.stop_at:
            self.stop = [int(self.model.optimizer.iterations.numpy()), self.accuracy()]

    def accuracy(self) -> float:
        x, y = self.test
        right = sum(int(tf.reduce_sum(tf.cast(tf.argmax(self.model(x[i:i + 1000], training=False), 1)
                                              == tf.argmax(y[i:i + 1000], 1), tf.int32)))
                    for i in range(0, len(x), 1000))
        return right / len(x)

    def on_epoch_end(self, epoch, logs=None):
        logs["kept_steps"] = self.kept
        if self.stop_at is not None:
            logs.update(zip(STOP_KEYS, self.stop))


STOP_KEYS = ("published_stop_step", "published_stop_test_accuracy")

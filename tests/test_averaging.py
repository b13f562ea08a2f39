"""The parameter average (training.ema_decay, training/averaging.py): post-processing that never
touches training, whose released weights are the average of the iterates the run took, resumed
exactly, and absent from every spec that does not ask for it."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import first_examples, raw_spec, typed
from dprepro.errors import InputError
from dprepro.training import checkpoint
from dprepro.training.averaging import rate


def small(ema_decay=None, epochs=2):
    """The smoke spec on 500 training examples: 2 epochs of 2 steps."""
    raw = raw_spec("smoke")
    raw["data"].update(train_examples=500, test_examples=200)
    raw["training"]["epochs"] = epochs
    if ema_decay is not None:
        raw["training"]["ema_decay"] = ema_decay
    return typed(raw)


class Iterates(tf.keras.callbacks.Callback):
    """The trainable weights after every step (the iterates the average is of)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append([v.numpy() for v in self.model.trainable_variables])

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append([v.numpy() for v in self.model.trainable_variables])


def test_the_rate_warms_up_and_settles():
    """(1 + t) / (10 + t) at first (0.1 before any step: the first iterate weighs 0.9), then the decay."""
    assert rate(0.99, 0) == pytest.approx(0.1)
    assert rate(0.99, 8) == pytest.approx(0.5)
    assert rate(0.99, 10_000) == 0.99


def test_training_is_untouched_and_the_release_is_the_average_of_the_iterates(mnist):
    """Same seed with and without the average: the last iterate's test scores are the plain run's,
    exactly (the average never feeds back); the released weights are the average recomputed here in
    float64 from the recorded iterates (rtol 1e-5: float32 arithmetic over 4 updates rounds at ~1e-7)."""
    from dprepro.training.fit import train

    data = first_examples(mnist, 500, 200)
    plain, _ = train(small(), data, 0)
    seen = Iterates()
    averaged, model = train(small(ema_decay=0.9), data, 0, callbacks=[seen])
    assert averaged["history"]["iterate_test_accuracy"] == plain["history"]["test_accuracy"]
    assert averaged["history"]["iterate_test_loss"] == plain["history"]["test_loss"]
    assert averaged["parameter_average"]["iterate_test_accuracy"] == plain["test_accuracy"]
    assert averaged["test_loss"] != plain["test_loss"]            # the average's score, not the iterate's
    expected = [w.astype(np.float64) for w in seen.seen[0]]
    for step, iterate in enumerate(seen.seen[1:], 1):
        keep = np.float32(rate(0.9, step))
        expected = [keep * e + (1 - keep) * w for e, w in zip(expected, iterate)]
    assert len(seen.seen) == 5
    for released, e, last in zip(model.trainable_variables, expected, seen.seen[-1]):
        np.testing.assert_allclose(released.numpy(), e, rtol=1e-5, atol=1e-7)
        assert not np.allclose(released.numpy(), last)               # not the last iterate


def test_a_resumed_average_is_the_uninterrupted_one(mnist, tmp_path):
    """Checkpoint after epoch 1 (with the averages), resume: the same released weights and scores, bit
    for bit; without the averages in the checkpoint the resumed average would restart from epoch 1's
    iterate and differ."""
    from dprepro.training.fit import train

    data = first_examples(mnist, 500, 200)
    spec = small(ema_decay=0.9)
    ident = checkpoint.identity(spec.sha256, "fast", 5, 0)

    def keep_first(done, model, state, secret, averages=None):
        if done == 1:
            checkpoint.save(tmp_path, ident, done, model.get_weights(), model.optimizer.get_weights(), state,
                            secret, averages)
    whole, model = train(spec, data, 0, on_epoch=keep_first)
    resume = checkpoint.load(tmp_path, ident)
    assert resume["averages"] is not None and len(resume["averages"]) == len(model.trainable_variables)
    resumed, model2 = train(spec, data, 0, resume=resume)
    assert resumed["history"] == whole["history"]
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_ema_decay_is_hash_neutral_and_checked():
    """Absent and null are the same spec (the pins keep their identity); a value changes it; a decay
    outside (0, 1) is refused naming the field."""
    assert small().sha256 == typed({**raw_spec("smoke"), "data": small().to_dict()["data"],
                                    "training": {**small().to_dict()["training"], "ema_decay": None}}).sha256
    assert small(ema_decay=0.99).sha256 != small().sha256
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(InputError, match=r"training\.ema_decay: must be above 0 and below 1"):
            small(ema_decay=bad)


def test_the_report_pairs_each_average_with_its_iterate_and_its_base_pin():
    """The pinned A/B (results/tuned-scatternet-linear-ema-*): the gain is average minus iterate per seed,
    and each seed's iterate is the base pin's accuracy (training untouched) — made on the same arithmetic
    path, so equal to the last digit. A base pin whose seed differed shows NO."""
    import dataclasses

    from conftest import ROOT
    from dprepro.records import averaging_ab
    from dprepro.records.read import load_result

    names = ("tuned-scatternet-linear-ema-eps1", "tuned-scatternet-linear-eps1")
    results = [load_result(ROOT / "results" / n / "v1" / "result.json") for n in names]
    (row,) = averaging_ab.rows(results)
    assert row["base"] == "tuned-scatternet-linear-eps1" and row["same_training"] is True
    assert row["iterate"] == [s.test_accuracy for s in results[1].seeds]
    assert row["gain"] == [a - i for a, i in zip(row["averaged"], row["iterate"])]
    assert row["averaged"] != row["iterate"]
    (line,) = [x for x in averaging_ab.table(results) if x.startswith("| tuned-scatternet-linear-ema-eps1 v1")]
    assert "| 0.99 |" in line and line.endswith("| tuned-scatternet-linear-eps1: yes |")
    first = dataclasses.replace(results[1].seeds[0], test_accuracy=results[1].seeds[0].test_accuracy + 1e-4)
    moved = dataclasses.replace(results[1], seeds=(first, *results[1].seeds[1:]))
    assert averaging_ab.rows([results[0], moved])[0]["same_training"] is False

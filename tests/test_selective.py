"""DPSUR's selective update (privacy.selective_update; training/selective.py): a rejected step leaves
the model as it was, at most about half the steps are kept (the test's construction), every step's test
is composed into the ε that holds, Fu et al.'s own accounting is kept beside it labelled, and a resumed
run tests and keeps exactly as an uninterrupted one."""

import math

import dp_accounting
import numpy as np
import pytest
import tensorflow as tf
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from conftest import first_examples, raw_spec, typed
from dprepro.errors import InputError
from dprepro.training import checkpoint

SECTION = {"validation_batch_size": 256, "validation_clip": 0.001, "validation_noise_multiplier": 1.3,
           "threshold": -1.0}


def dpsur_raw(**section):
    """The smoke spec, Poisson-sampled on 5,000 training examples, 3 epochs of 20 steps, with DPSUR."""
    raw = raw_spec("smoke")
    raw["data"].update(sampling="poisson", train_examples=5000, test_examples=500)
    raw["training"]["epochs"] = 3
    raw["privacy"]["selective_update"] = {**SECTION, **section}
    return raw


class Steps(tf.keras.callbacks.Callback):
    """The trainable weights before and after every step, and whether the step was kept."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_train_batch_begin(self, batch, logs=None):
        self.before = [v.numpy() for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append((self.before, [v.numpy() for v in self.model.trainable_variables], float(logs["kept"])))


@pytest.fixture(scope="module")
def dpsur_run(mnist):
    from dprepro.training.fit import train

    seen = Steps()
    outcome, _ = train(typed(dpsur_raw()), first_examples(mnist, 5000, 500), 0, callbacks=[seen])
    return outcome, seen.rows


def test_a_rejected_step_leaves_the_model_and_a_kept_one_moves_it(dpsur_run):
    outcome, rows = dpsur_run
    kept = [k for _, _, k in rows]
    assert len(rows) == outcome["steps"] == 60 and set(kept) == {0.0, 1.0}
    for before, after, k in rows:
        same = all(np.array_equal(a, b) for a, b in zip(before, after))
        assert same == (k == 0.0)
    summary = outcome["selective_update"]
    assert summary["steps_kept"] == sum(kept) == sum(summary["kept_per_epoch"])
    assert summary["steps_proposed"] == 60


def test_at_most_about_half_the_steps_are_kept(dpsur_run):
    """The clipped difference is >= -C_v, so keeping (noisy < -C_v) needs the noise below 0: each step is
    kept with probability <= 1/2. 60 steps: P(Binomial(60, 1/2) > 40) < 0.7 %, the slack allowed."""
    outcome, _ = dpsur_run
    assert outcome["selective_update"]["steps_kept"] <= 40


def test_every_test_is_composed_into_the_epsilon_that_holds(dpsur_run):
    """The block's pld and rdp compose 60 Poisson-sampled Gaussian steps and 60 tests (rate 256 / 5000,
    noise 1.3), composed here from dp_accounting's events directly; the statements, which cannot count
    the tests, do not hold. Fu et al.'s value (kept steps only, their orders) is the seed's, lower
    than the same accounting over every step, and labelled as not holding. Tolerance 1e-9 relative:
    the same library composing the same events."""
    from dprepro import accounting

    spec = typed(dpsur_raw())
    block = accounting.epsilon_block(spec)
    train = dp_accounting.PoissonSampledDpEvent(250 / 5000, dp_accounting.GaussianDpEvent(1.3))
    test = dp_accounting.PoissonSampledDpEvent(256 / 5000, dp_accounting.GaussianDpEvent(1.3))
    both = dp_accounting.ComposedDpEvent([dp_accounting.SelfComposedDpEvent(train, 60),
                                          dp_accounting.SelfComposedDpEvent(test, 60)])
    pld = PLDAccountant(value_discretization_interval=1e-4).compose(both).get_epsilon(1e-5)
    alone = PLDAccountant(value_discretization_interval=1e-4).compose(
        dp_accounting.SelfComposedDpEvent(train, 60)).get_epsilon(1e-5)
    assert block["accountants"]["pld"]["epsilon"] == pytest.approx(pld, rel=1e-9) and pld > alone * 1.2
    assert block["of_record"] == "pld" and block["tests"][0]["sampling_rate"] == 256 / 5000
    for name in ("statement_poisson", "statement_once_per_epoch"):
        assert "not the private test made with each (DPSUR)" in block["accountants"][name]["label"]
    assert block["interval"]["lower"] <= pld
    outcome, _ = dpsur_run
    kept = outcome["selective_update"]["steps_kept"]
    orders = [1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512]

    def theirs(steps):
        return RdpAccountant(orders).compose(dp_accounting.ComposedDpEvent(
            [dp_accounting.SelfComposedDpEvent(train, steps), dp_accounting.SelfComposedDpEvent(test, steps)]
        )).get_epsilon(1e-5)
    published = outcome["selective_update"]["published_accounting"]
    assert published["epsilon"] == pytest.approx(theirs(kept), rel=1e-9) and published["epsilon"] < theirs(60)
    assert published["holds_for_this_run"] is False and f"only the {kept} kept steps" in published["label"]


def test_a_resumed_run_tests_and_keeps_as_an_uninterrupted_one(mnist, dpsur_run, tmp_path):
    """The samples and the test's noise are step-addressed: resumed after epoch 1, the same steps are
    kept and the model ends bit for bit the same."""
    from dprepro.training.fit import train

    spec = typed(dpsur_raw())
    ident = checkpoint.identity(spec.sha256, "fast", 5, 0)

    def keep_first(done, model, state, secret):
        if done == 1:
            checkpoint.save(tmp_path, ident, done, model.get_weights(), model.optimizer.get_weights(), state, secret)
    data = first_examples(mnist, 5000, 500)
    whole, model = train(spec, data, 0, on_epoch=keep_first)
    resumed, model2 = train(spec, data, 0, resume=checkpoint.load(tmp_path, ident))
    assert resumed["history"] == whole["history"] == dpsur_run[0]["history"]
    assert resumed["selective_update"] == whole["selective_update"]
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_ledger_without_the_spec_s_tests_fails_the_check():
    from dprepro import ledger

    spec = typed(dpsur_raw())
    plan = ledger.planned(spec)
    assert ledger.first_difference(plan, plan) is None
    other = {**plan, "tests": [{**plan["tests"][0], "noise_multiplier": 0.65}]}
    assert "the tests with every step were" in ledger.first_difference(other, plan)
    assert "the tests with every step were" in ledger.first_difference({**plan, "tests": []}, plan)


@pytest.mark.parametrize("change, field, message", [
    ({"data": {"sampling": "shuffle"}}, "privacy.selective_update", "needs data.sampling: poisson"),
    ({"engine": {"name": "vectorized"}}, "privacy.selective_update", "fast engine only"),
    ({"section": {"validation_noise_multiplier": None}}, "privacy.selective_update.validation_noise_multiplier",
     "required"),
    ({"section": {"validation_clip": 0}}, "privacy.selective_update.validation_clip", "must be above 0"),
    ({"section": {"validation_batch_size": 0}}, "privacy.selective_update.validation_batch_size", "must be from 1"),
    ({"section": {"beta": -1}}, "privacy.selective_update.beta", "unknown field"),
    ({"section": {"published_epsilon": 0}}, "privacy.selective_update.published_epsilon", "must be above 0"),
])
def test_bad_selective_update_names_the_field(change, field, message):
    raw = dpsur_raw(**change.get("section", {}))
    raw["data"].update(change.get("data", {}))
    raw.setdefault("engine", {}).update(change.get("engine", {}))
    with pytest.raises(InputError, match=rf"{field.replace('.', '[.]')}: .*{message}"):
        typed(raw)


def test_absent_is_plain_dp_sgd_with_the_same_identity():
    raw = dpsur_raw()
    del raw["privacy"]["selective_update"]
    plain = typed(raw)
    assert plain.selective is None and plain.to_dict()["privacy"]["selective_update"] is None
    raw["privacy"]["selective_update"] = None
    assert typed(raw).sha256 == plain.sha256 != typed(dpsur_raw()).sha256
    assert math.isfinite(float(typed(dpsur_raw()).selective.validation_noise_multiplier))


def test_where_fu_et_al_would_stop_the_model_is_scored_and_costed(mnist):
    """published_epsilon 1.5: their accounting lets a run keep T steps (T found here by bisection on the
    same RDP); the seed records the step at which this run had kept T, the test accuracy of the model
    after that step (recomputed here from the weights a callback saw then), and the pld epsilon of
    that many steps with their tests (composed here directly; same library, 1e-9)."""
    from dprepro.training.fit import train

    spec = typed(dpsur_raw(published_epsilon=1.5))
    data = first_examples(mnist, 5000, 500)
    seen = Steps()
    outcome, model = train(spec, data, 0, callbacks=[seen])
    stop = outcome["selective_update"]["published_stop"]
    orders = [1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512]
    train_event = dp_accounting.PoissonSampledDpEvent(250 / 5000, dp_accounting.GaussianDpEvent(1.3))
    test_event = dp_accounting.PoissonSampledDpEvent(256 / 5000, dp_accounting.GaussianDpEvent(1.3))

    def composed(steps):
        return dp_accounting.ComposedDpEvent([dp_accounting.SelfComposedDpEvent(train_event, steps),
                                              dp_accounting.SelfComposedDpEvent(test_event, steps)])
    kept = max(t for t in range(1, 61) if RdpAccountant(orders).compose(composed(t)).get_epsilon(1e-5) < 1.5)
    assert stop["steps_kept"] == kept and stop["reached"]
    flags = [k for _, _, k in seen.rows]
    assert sum(flags[:stop["step"]]) == kept and flags[stop["step"] - 1] == 1.0
    model.set_weights(model.get_weights())          # same architecture; load the weights after that step
    for variable, value in zip(model.trainable_variables, seen.rows[stop["step"] - 1][1]):
        variable.assign(value)
    logits = model(data.x_test, training=False)
    right = np.mean(np.argmax(logits, 1) == np.argmax(data.y_test, 1))
    assert stop["test_accuracy"] == pytest.approx(right, abs=1e-12)
    pld = PLDAccountant(value_discretization_interval=1e-4).compose(composed(stop["step"])).get_epsilon(1e-5)
    assert stop["epsilon_every_step"] == pytest.approx(pld, rel=1e-9)


@pytest.mark.parametrize("target", [1, 2, 3, 4])
def test_a_published_run_repeats_the_every_step_run_over_their_common_epochs(target):
    """The pinned dpsur-published-eps<target> and dpsur-every-step-eps<target> share seeds and streams and
    differ only in length and in scoring the stopping point: per seed, their common epochs are the same
    to the last digit (same arithmetic path), and the published run reached the paper's stopping point
    after more steps than the every-step run was allowed."""
    from conftest import ROOT
    from dprepro.records.read import load_result

    def pinned(name):
        return load_result(ROOT / "results" / name / "v1" / "result.json")
    published, every = pinned(f"dpsur-published-eps{target}"), pinned(f"dpsur-every-step-eps{target}")
    for a, b in zip(published.seeds, every.seeds):
        common = len(b.history["test_accuracy"])
        for key in ("test_accuracy", "train_loss", "kept_steps"):
            assert list(a.history[key][:common]) == list(b.history[key]), (target, a.seed, key)
        stop = a.get("selective_update")["published_stop"]
        assert stop["reached"] and stop["step"] > every.epsilon.fields["steps"]
        assert stop["epsilon_every_step"] > every.epsilon.value_of_record

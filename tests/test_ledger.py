"""The privacy ledger (ledger.py, training/recorder.py): every step records the noise multiplier, clip
and examples per microbatch its graph was built with; the seed fails, naming the step and the field,
when that departs from the spec's plan; the result's epsilon is computed from the ledgers. Each test
breaks one thing the spec cannot see."""

import math
import re

import pytest

from conftest import EXPERIMENTS, first_examples, raw_spec, run_cli_in_process, typed
from dprepro import accounting, ledger
from dprepro.errors import RunCheckFailed

SMOKE_STEP = {"noise_multiplier": 1.3, "l2_norm_clip": 1.5, "examples_per_microbatch": 1,
              "sampling": "shuffle", "sampling_rate": 0.1}


def small(**training) -> tuple:
    """The smoke spec on 500 examples: 2 steps per epoch."""
    raw = raw_spec("smoke")
    raw["data"].update(train_examples=500, test_examples=100)
    raw["training"].update(training)
    return typed(raw)


def test_a_callback_that_changes_sigma_mid_run_fails_the_seed_naming_the_step(write_spec, tmp_path, monkeypatch):
    """A callback halves the fast engine's noise after epoch 1 and re-traces its step (so the noise
    really changes). Epoch 2's first step is step 11: the seed fails with exit 1 in one line naming
    it and the field, and leaves no seed.json, model or result. Before the ledger the run passed
    and its result said eps 1.3's value holds."""
    import tensorflow as tf

    from dprepro.training import pipeline

    class HalveNoiseAfterEpochOne(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.noise_multiplier = 0.65
                self.model.train_function = self.model.make_train_function(force=True)

    line = pipeline.EpochLine
    monkeypatch.setattr(pipeline, "EpochLine", lambda *a, **k: [line(*a, **k), HalveNoiseAfterEpochOne()][1])
    raw = raw_spec("smoke")
    raw["training"]["epochs"] = 2
    spec = write_spec(raw)
    proc = run_cli_in_process("run", spec, "--out", tmp_path, "--logdir", tmp_path / "logs")
    assert proc.returncode == RunCheckFailed.exit_code == 1, proc.stderr
    (failure,) = [x for x in proc.stderr.splitlines() if x.startswith("seed 0:")]
    checkpoint = tmp_path / "logs" / "smoke" / "v1" / "seed-0" / "checkpoint.npz"
    assert failure == ("seed 0: step 11 applied noise multiplier 0.65, the spec says 1.3; "
                       f"the seed is not recorded as finished; its checkpoint {checkpoint} is kept: "
                       "`dprepro run --restart` trains it from scratch")
    assert not list(tmp_path.rglob("seed.json")) and not list(tmp_path.rglob("model.npz"))
    assert not list(tmp_path.rglob("result*.json"))
    # a re-run resumes after the last epoch, reads the ledger from the checkpoint and fails the same way
    again = run_cli_in_process("run", spec, "--out", tmp_path, "--logdir", tmp_path / "logs")
    assert again.returncode == 1 and failure in again.stderr and not list(tmp_path.rglob("seed.json"))


@pytest.mark.parametrize("bug, departure", [
    ("noise-half", "step 1 applied noise multiplier 0.65, the spec says 1.3"),
    ("clip-off", "step 1 applied clip norm none (no clipping), the spec says 1.5")])
def test_a_planted_bug_trains_and_its_ledger_shows_what_ran(mnist, bug, departure):
    """An audit's planted bug (audit/audited_step.py) trains without the check; its ledger records the
    broken step, and what the audit records of it says where it departs from the claim's plan. The
    same training with the check on fails."""
    from dprepro.audit import PlantedBug
    from dprepro.audit.audit_run import what_ran
    from dprepro.audit.audited_step import audit
    from dprepro.training.fit import train

    spec = small(epochs=1)
    data = first_examples(mnist, 500, 100)
    outcome, _ = train(spec, data, 0, prepare=lambda model, key: audit(model, bug=PlantedBug(bug)), check=False)
    assert what_ran(spec, outcome)["ledger_departs"] == departure
    assert len(outcome["ledger"]["steps"]) == 1 and outcome["ledger"]["steps"][0]["steps"] == 2
    with pytest.raises(RunCheckFailed, match=re.escape(f"seed 0: {departure}")):
        train(spec, data, 0, prepare=lambda model, key: audit(model, bug=PlantedBug(bug)))


@pytest.mark.parametrize("engine", ["tutorial", "vectorized", "fast"])
def test_every_engine_records_what_its_step_used(mnist, engine):
    """Two examples per microbatch (125 microbatches of the 250-example batches): each DP engine's
    step records the spec's noise and clip and 2 examples per microbatch, one entry for both steps;
    the plain engine `none` records no noise and no clip, and a private spec trained with it fails."""
    from dprepro.training.fit import train

    raw = raw_spec("smoke")
    raw["data"].update(train_examples=500, test_examples=100)
    raw["privacy"]["num_microbatches"] = 125
    spec = typed(raw)
    data = first_examples(mnist, 500, 100)
    outcome, _ = train(spec, data, 0, engine=engine)
    assert outcome["ledger"]["steps"] == [{"first_step": 1, "steps": 2, **SMOKE_STEP, "examples_per_microbatch": 2,
                                           "sampling_rate": 0.5}]
    assert outcome["ledger"] == ledger.planned(spec)
    if engine == "fast":
        with pytest.raises(RunCheckFailed, match="seed 0: step 1 applied noise multiplier 0, the spec says 1.3"):
            train(spec, data, 0, engine="none")


def test_poisson_steps_record_one_example_per_microbatch_and_the_rate(mnist):
    from dprepro.training.fit import train

    raw = raw_spec("smoke")
    raw["data"].update(train_examples=500, test_examples=100, sampling="poisson")
    spec = typed(raw)
    outcome, _ = train(spec, first_examples(mnist, 500, 100), 0)
    assert outcome["ledger"]["steps"] == [{"first_step": 1, "steps": 2, **SMOKE_STEP, "sampling": "poisson",
                                           "sampling_rate": 0.5}]


def entry(first, steps, **changes):
    return {"first_step": first, "steps": steps, **SMOKE_STEP, **changes}


def test_steps_are_run_length_encoded_and_a_change_starts_an_entry():
    book = ledger.new([])
    rows = [(1, 1.3, 1.5, 1), (2, 1.3, 1.5, 1), (3, 0.65, 1.5, 1), (4, 0.65, 1.5, 1), (5, 1.3, None, 1)]
    ledger.append(book, rows[:3], "shuffle", 0.1)
    ledger.append(book, rows[3:], "shuffle", 0.1)      # the next epoch's drain continues the last entry
    assert book["steps"] == [entry(1, 2), entry(3, 2, noise_multiplier=0.65), entry(5, 1, l2_norm_clip=None)]
    assert ledger.steps_applied(book) == 5


@pytest.mark.parametrize("steps, message", [
    ([entry(1, 10)], None),
    ([entry(1, 9)], "9 steps were applied, the spec plans 10 (the steps its epsilon counts)"),
    ([entry(1, 11)], "step 11 was applied, the spec plans 10 steps"),
    ([entry(1, 6), entry(5, 6)], "step 7 was followed by step 5: a repeated step"),
    ([entry(1, 4), entry(6, 5)], "step 5 was followed by step 6: a skipped step"),
    ([entry(1, 4), entry(5, 6, examples_per_microbatch=250)],
     "step 5 applied examples per microbatch 250, the spec says 1"),
    ([entry(1, 10, sampling="poisson")], "step 1 applied sampling poisson, the spec says shuffle"),
    ([entry(1, 10, sampling_rate=0.2)], "step 1 applied sampling rate 0.2, the spec says 0.1")])
def test_the_first_departure_from_the_plan_is_named(steps, message):
    spec = typed(raw_spec("smoke"))
    assert ledger.first_difference({**ledger.planned(spec), "steps": steps}, ledger.planned(spec)) == message


def test_a_missing_release_is_a_departure_and_seeds_must_agree():
    from dprepro.spec import load_spec

    spec = load_spec(EXPERIMENTS / "tramer-boneh-scatternet-linear.yaml")
    plan = ledger.planned(spec)
    assert plan["releases"] and "releases before training" in ledger.first_difference({**plan, "releases": []}, plan)
    other = {**plan, "steps": [{**plan["steps"][0], "noise_multiplier": 2.0}]}
    assert ledger.agreed({0: plan, 1: plan}) == plan
    with pytest.raises(RunCheckFailed, match="seed 1's ledger differs from seed 0's: step 1 applied noise multiplier 2"):
        ledger.agreed({0: plan, 1: other})


def test_the_epsilon_block_is_computed_from_the_ledger():
    """The plan's ledger gives the plan's epsilons exactly; a ledger of other noise gives that
    noise's epsilons, so the block reads the ledger and not the spec."""
    spec = typed(raw_spec("smoke"))
    planned, from_ledger = accounting.epsilon_block(spec), accounting.epsilon_block(
        spec, ledger.schedule(ledger.planned(spec), spec))
    assert {k: v["epsilon"] for k, v in from_ledger["accountants"].items()} == \
        {k: v["epsilon"] for k, v in planned["accountants"].items()}
    assert from_ledger["computed_from"].startswith("the seeds' privacy ledgers")
    quieter = {**ledger.planned(spec), "steps": [entry(1, 10, noise_multiplier=0.65)]}
    block = accounting.epsilon_block(spec, ledger.schedule(quieter, spec))
    assert block["noise_multiplier"] == 0.65
    assert block["accountants"]["rdp"]["epsilon"] > 2 * planned["accountants"]["rdp"]["epsilon"]
    with pytest.raises(ValueError, match="2 kinds of step"):
        ledger.schedule({**quieter, "steps": [entry(1, 5), entry(6, 5, noise_multiplier=0.65)]}, spec)
    assert not math.isinf(block["accountants"]["rdp"]["epsilon"])


def test_each_release_records_itself_and_a_release_left_out_fails(mnist, monkeypatch):
    """DP-PCA's release appends what it used to the ledger (features.private_projection); a
    projection made without reporting itself leaves the ledger short of a release the epsilon counts."""
    from dprepro.training import fit

    raw = raw_spec("smoke")
    raw["data"].update(features="dp_pca", pca_dimensions=10, pca_noise_multiplier=7.0, train_examples=200,
                       test_examples=100)
    raw["model"]["name"] = "pca_mlp"
    raw["training"]["batch_size"] = 100
    raw["privacy"]["num_microbatches"] = 100
    spec = typed(raw)
    data = first_examples(mnist, 200, 100)
    outcome, _ = fit.train(spec, data, 0)
    assert outcome["ledger"]["releases"] == ledger.planned(spec)["releases"] == [accounting.pca_release(7.0)]
    project = fit.private_projection
    monkeypatch.setattr(fit, "private_projection", lambda x, spec, key, made=None: project(x, spec, key))
    with pytest.raises(RunCheckFailed, match=re.escape("seed 0: the releases before training were [] (noise "
                                                       "multipliers), the spec says [7.0]")):
        fit.train(spec, data, 0)


def test_a_call_on_an_exhausted_dataset_records_nothing(mnist):
    """Keras ends an epoch over a dataset of unknown length by one more call of the step, whose batch
    read fails. That call must not record a step: the writes wait for the optimizer's update (found by
    `dprepro bench --engines fast-ledger`: the writes of constants ran anyway, 241 rows for 240 steps)."""
    from dprepro import sampling
    from dprepro.training.engines import build_model
    from dprepro.training.recorder import attach

    spec = small(epochs=1)
    data = first_examples(mnist, 500, 100)
    model = build_model(spec)
    recorder = attach(model, 3)                        # room for a phantom third row
    batches = sampling.shuffled_batches(data.x_train, data.y_train, 250, 0)
    assert batches.cardinality().numpy() < 0          # unknown: Keras reads until it runs dry
    model.fit(batches, epochs=1, verbose=0)
    assert [row[0] for row in recorder.drain()] == [1, 2]

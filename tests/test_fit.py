"""The steps a seed's epsilon counts are the steps its optimizer applied (training/fit.py): read from
the optimizer's own step counter after training, a resumed run's earlier steps included, and checked
against the spec's plan before the seed's record is written. Each test breaks the run in one way the
spec cannot see and requires the seed to fail in one line and leave no record."""

import pytest

from conftest import EXPERIMENTS, first_examples, raw_spec, run_cli_in_process, typed
from dprepro.errors import RunCheckFailed

SMOKE = EXPERIMENTS / "smoke.yaml"


def test_an_input_pipeline_one_batch_short_fails_the_seed_and_writes_no_record(tmp_path, monkeypatch):
    """Keras only warns when the batches run out before steps_per_epoch and ends the epoch early:
    the smoke run then applies 9 of its 10 steps, and its epsilon (10 steps) would not be the run's."""
    from dprepro.training import fit

    batches = fit.training_batches
    monkeypatch.setattr(fit, "training_batches", lambda spec, *a, **k: batches(spec, *a, **k).take(
        spec.steps_trained - 1))
    proc = run_cli_in_process("run", SMOKE, "--out", tmp_path, "--logdir", tmp_path / "logs")
    assert proc.returncode == RunCheckFailed.exit_code == 1, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("seed 0:")]
    assert "the optimizer applied 9 steps, the spec plans 10" in line, proc.stderr
    assert not list(tmp_path.rglob("seed.json")) and not list(tmp_path.rglob("model.npz"))
    assert not list(tmp_path.rglob("result*.json"))


def test_a_resume_that_repeats_the_last_epoch_fails(mnist):
    """A checkpoint whose epoch count is one behind its optimizer state (what a resume that repeats
    an epoch does): 2 epochs of 2 steps resumed after "epoch 1" with 4 steps applied runs epoch 2
    again, 6 steps in all, and fails; the same checkpoint with the right epoch finishes with 4."""
    from dprepro.training.fit import train

    raw = raw_spec("smoke")
    raw["data"].update(train_examples=500, test_examples=100)
    raw["training"]["epochs"] = 2
    spec = typed(raw)
    data = first_examples(mnist, 500, 100)
    saved = {}

    def keep(epochs_done, model, state, secret):
        saved.update(epoch=epochs_done, progress=state, weights=model.get_weights(),
                     optimizer_weights=model.optimizer.get_weights(), secret=secret)

    outcome, _ = train(spec, data, 0, on_epoch=keep)
    assert outcome["steps"] == spec.steps_trained == 4 and saved["epoch"] == 2
    assert train(spec, data, 0, resume=dict(saved))[0]["steps"] == 4      # resumed after the last epoch
    with pytest.raises(RunCheckFailed, match="seed 0: the optimizer applied 6 steps, the spec plans 4"):
        train(spec, data, 0, resume={**saved, "epoch": 1})

"""The validation split (`data.validation_examples`): the training file's last examples, held out of
training for tuning; the run scores them every epoch and accounts only the examples it trains."""

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import DATA, raw_spec, run_cli_in_process, typed
from dprepro import accounting
from dprepro.data import load_mnist
from dprepro.errors import InputError


def test_the_validation_set_is_the_files_last_examples_and_never_trained_on():
    full = load_mnist(DATA)
    for n in (1000, 55000):
        split = load_mnist(DATA, train_examples=n, validation_examples=5000)
        np.testing.assert_array_equal(split.x_val, full.x_train[-5000:])    # the same set whatever n is
        np.testing.assert_array_equal(split.y_val, full.y_train[-5000:])
        np.testing.assert_array_equal(split.x_train, full.x_train[:n])
    with pytest.raises(ValueError, match="overlap"):
        load_mnist(DATA, train_examples=55001, validation_examples=5000)


def test_the_spec_trains_the_rest_by_default_and_refuses_an_overlap():
    raw = raw_spec()
    del raw["data"]["train_examples"]
    raw["data"]["validation_examples"] = 5000
    spec = typed(raw)
    assert spec.train_examples == 55000 and spec.q == 250 / 55000          # the accountant's n: what is trained
    assert accounting.epsilon_block(spec)["n"] == 55000
    raw["data"]["train_examples"] = 55001
    with pytest.raises(InputError, match=r"data\.train_examples: must be between 1 and 55000 \(the training file's "
                                         r"60000 less the 5000 validation examples\), got 55001"):
        typed(raw)
    raw["data"]["validation_examples"] = 60000
    with pytest.raises(InputError, match=r"data\.validation_examples: must be from 1 to 59999"):
        typed(raw)


def test_a_new_field_leaves_every_other_spec_its_hash():
    raw = raw_spec()
    before = typed(raw).sha256
    raw["data"]["validation_examples"] = None
    assert typed(raw).sha256 == before
    raw["data"]["validation_examples"] = 500
    assert typed(raw).sha256 != before


def test_a_run_scores_its_validation_examples_every_epoch(write_spec, tmp_path):
    raw = raw_spec()
    raw["name"] = "smoke-validation"
    raw["data"].update(train_examples=2000, validation_examples=1000)
    raw["training"]["epochs"] = 2
    proc = run_cli_in_process("run", write_spec(raw), "--out", tmp_path, "--logdir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation acc" in proc.stdout
    result = json.loads((tmp_path / "smoke-validation" / "v1" / "result.json").read_text())
    seed = result["seeds"][0]
    assert len(seed["history"]["validation_accuracy"]) == 2
    assert seed["validation_accuracy"] == seed["history"]["validation_accuracy"][-1]
    assert result["validation_accuracy"]["mean"] == seed["validation_accuracy"]
    # Chance is 0.1; two epochs on 2,000 examples reach well above it on both held-out sets, and the two
    # sets are different examples: their accuracies differ (1,000 each, granularity 0.001).
    assert seed["validation_accuracy"] > 0.3 and seed["validation_accuracy"] != seed["test_accuracy"]
    assert result["data"]["validation_examples"] == 1000 and result["data"]["train_examples"] == 2000
    assert result["epsilon"]["n"] == 2000 and result["epsilon"]["q"] == 250 / 2000
    events = EventAccumulator(str(next((tmp_path / "smoke-validation" / "v1" / "seed-0").glob("events.*"))))
    events.Reload()
    tags = events.Tags()["scalars"] + events.Tags()["tensors"]
    assert "accuracy/validation" in tags and "loss/validation" in tags


def test_scatternet_validation_features_are_those_of_the_files_last_images(monkeypatch, tmp_path):
    from dprepro import features

    monkeypatch.setenv("DPREPRO_CACHE_DIR", str(tmp_path))
    raw = raw_spec()
    raw["data"].update(train_examples=200, test_examples=10, validation_examples=30, features="scatternet",
                       normalization="group", norm_groups=27)
    raw["model"].update(name="scatternet_linear")
    raw["training"].update(batch_size=50)
    raw["privacy"].update(num_microbatches=50)
    data = features.load_data(typed(raw), DATA)
    last = load_mnist(DATA).x_train[-30:]
    np.testing.assert_array_equal(data.x_val, features.group_normalized(features.scattering(last), 27))
    assert data.x_train.shape == (200, 7, 7, 81) and data.x_val.shape == (30, 7, 7, 81)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 3    # train, test and train-last: each its own entry

"""The typed result record (records/result.py): one writer and one reader, the value of record
defined once, the ledger read strictly."""

import json
import math

import pytest

from conftest import ROOT
from dprepro.errors import InputError
from dprepro.records.result import EpsilonBlock, Result


def test_a_written_result_reads_back_as_the_same_file(smoke_runs):
    """The pipeline writes through the record, so reading it and writing it again changes nothing;
    every seed carries the ledger its steps recorded, and the block says it was computed from it."""
    out, _, raw = smoke_runs[0]
    result = Result.load(out / "smoke" / "v1" / "result.json")
    assert result.to_json() == raw
    assert list(result.to_json()) == list(raw)                      # the written order too
    (seed,) = result.seeds
    assert seed.ledger["steps"] == [{"first_step": 1, "steps": 10, "noise_multiplier": 1.3, "l2_norm_clip": 1.5,
                                     "examples_per_microbatch": 1, "sampling": "shuffle", "sampling_rate": 0.1}]
    assert result.epsilon.fields["computed_from"] == "the seeds' privacy ledgers (what ran)"
    saved = json.loads((out / "logs" / "smoke" / "v1" / "seed-0" / "seed.json").read_text())
    assert saved["ledger"] == seed.ledger and saved["model"] == seed.get("model")


def test_the_value_of_record_is_the_smallest_that_holds():
    block = EpsilonBlock.from_json({"delta": 1e-5, "of_record": "b", "accountants": {
        "a": {"epsilon": 0.5, "holds_for_this_run": False, "label": "x"},
        "b": {"epsilon": 2.0, "holds_for_this_run": True, "label": "holds"},
        "c": {"epsilon": "inf", "holds_for_this_run": True, "label": "holds"}}})
    assert block.value_of_record == 2.0 and block.record["label"] == "holds" and block.value("c") == math.inf
    nothing = EpsilonBlock.from_json({"delta": 1e-5, "of_record": None, "accountants": {}})
    assert nothing.value_of_record is None and nothing.record is None
    assert EpsilonBlock.from_json(None) is None


def test_every_pinned_result_reads_as_a_record():
    paths = sorted((ROOT / "results").glob("*/v*/result*.json"))
    assert len(paths) > 30
    for path in paths:
        result = Result.load(path)
        assert result.seeds and all(s.test_accuracy == s.history["test_accuracy"][-1] for s in result.seeds), path


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["ledger"]["steps"].pop(), "seeds[0].ledger.steps: records 0 steps, the spec trains 10"),
    (lambda s: s["ledger"]["steps"][0].update(first_step=2),
     "seeds[0].ledger.steps[0].first_step: must be 1 (the step after the entry before), got 2"),
    (lambda s: s["ledger"]["steps"][0].update(noise_multiplier="1.3"),
     "seeds[0].ledger.steps[0].noise_multiplier: must be an integer or a number, got '1.3'")])
def test_a_broken_ledger_is_one_line_naming_the_field(smoke_runs, tmp_path, edit, message):
    _, _, raw = smoke_runs[0]
    broken = json.loads(json.dumps(raw))
    edit(broken["seeds"][0])
    path = tmp_path / "result.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(InputError) as e:
        Result.load(path)
    assert str(e.value) == f"{path}: {message}"

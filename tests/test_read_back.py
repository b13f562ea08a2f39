"""Every kind of file dprepro reads back, truncated, corrupted or missing a field: one line naming the
file (and the field, when one is missing), exit 2, nothing overwritten (issue 34, finding 3).

The kinds and the command that reads each: a result (`compare`, `report`), a search's selection, a
sweep's frontier and an audit beside a pinned result (`report`), a seed's checkpoint (`run`, resuming). A seed record or a sweep cell's result
that cannot be read is not an error: the seed trains again, the cell runs again (nothing is lost, and
what it then writes is whole); tests/test_resume.py and the sweep tests cover those paths.
"""

import json
import shutil

import pytest

from conftest import ROOT, run_cli_in_process

PINNED = ROOT / "results" / "tutorial-3ep" / "v1" / "result.json"


def damaged(text: str, how: str, drop: tuple = ()) -> str:
    if how == "truncated":
        return text[: len(text) // 2]
    if how == "not json":
        return "\x00garbage{" + text[:100]
    doc = json.loads(text)
    *parents, last = drop
    target = doc
    for key in parents:
        target = target[key]
    del target[last]
    return json.dumps(doc)


def check_refused(proc, path, before: dict, field: str | None = None):
    """One line naming the file (and field), exit 2, and every file under the folder as it was."""
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr[-1500:]
    lines = [line for line in proc.stderr.strip().splitlines()     # `run` first says it found no GPU
             if not line.startswith("dprepro: WARNING: no GPU")]
    assert len(lines) == 1 and lines[0].startswith(str(path)) and "Traceback" not in proc.stderr, proc.stderr
    if field:
        assert field in lines[0], lines[0]
    after = {p: p.read_bytes() for p in before}
    assert after == before


@pytest.mark.parametrize("how,drop,field", [
    ("truncated", (), "invalid JSON"),
    ("not json", (), "invalid JSON"),
    ("drop", ("seeds",), "seeds"),
    ("drop", ("epsilon", "accountants"), "epsilon.accountants"),
    ("drop", ("test_accuracy",), "test_accuracy"),
])
def test_a_damaged_result_is_one_line(tmp_path, how, drop, field):
    bad = tmp_path / "result.json"
    bad.write_text(damaged(PINNED.read_text(), how, drop))
    before = {bad: bad.read_bytes(), PINNED: PINNED.read_bytes()}
    check_refused(run_cli_in_process("compare", bad, PINNED), bad, before, field)


def results_folder(tmp_path):
    """A results folder with one pinned result, the audit beside it, and one search's selection and one
    sweep's frontier (copied from the pins)."""
    results = tmp_path / "results"
    for rel in ("tutorial-3ep/v1/result.json", "tutorial-3ep/v1/audit.json",
                "sweeps/tuned-scatternet-linear/v1/selection.json", "sweeps/frontier/v1/frontier.json"):
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / "results" / rel).is_file():
            shutil.copy(ROOT / "results" / rel, results / rel)
    return results


@pytest.mark.parametrize("rel,how,drop,field", [
    ("tutorial-3ep/v1/audit.json", "truncated", (), "not valid JSON"),
    ("tutorial-3ep/v1/audit.json", "drop", ("summary",), "summary"),
    ("sweeps/tuned-scatternet-linear/v1/selection.json", "not json", (), "not valid JSON"),
    ("sweeps/tuned-scatternet-linear/v1/selection.json", "drop", ("choices",), "choices"),
    ("sweeps/frontier/v1/frontier.json", "drop", ("cells",), "cells"),
    ("tutorial-3ep/v1/result.json", "drop", ("environment",), "environment"),
])
def test_report_refuses_a_damaged_file_in_one_line(tmp_path, rel, how, drop, field):
    results = results_folder(tmp_path)
    path = results / rel
    if not path.is_file():
        pytest.skip(f"{rel} is not pinned")
    path.write_text(damaged(path.read_text(), how, drop))
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    check_refused(run_cli_in_process("report", "--results", results), path, before, field)
    assert not (results / "README.md").exists()


@pytest.mark.parametrize("how", ["truncated", "no epoch", "no weights"])
def test_a_damaged_checkpoint_is_one_line_and_kept(tmp_path, how):
    """A checkpoint that cannot be resumed from: one line naming it (and the missing field), exit 2, the
    checkpoint kept as it was (`--restart` discards it), no result written."""
    import numpy as np

    from dprepro.spec import ENGINE_VERSIONS, load_spec
    from dprepro.training import checkpoint

    spec = load_spec(ROOT / "experiments" / "smoke.yaml")
    seed_dir = tmp_path / "smoke" / "v1" / "seed-0"
    ident = checkpoint.identity(spec.sha256, "fast", ENGINE_VERSIONS["fast"], 0)
    path = checkpoint.save(seed_dir, ident, 1, [np.ones(3)], [], {})
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        with np.load(path) as f:
            arrays = dict(f)
        state = json.loads(arrays["state"].tobytes().decode())
        del state["epoch" if how == "no epoch" else "weights"]
        arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        with open(path, "wb") as out:
            np.savez(out, **arrays)
    before = {path: path.read_bytes()}
    proc = run_cli_in_process("run", ROOT / "experiments" / "smoke.yaml", "--out", tmp_path, "--logdir", tmp_path)
    check_refused(proc, path, before, {"truncated": "unreadable checkpoint", "no epoch": "epoch missing",
                                       "no weights": "weights missing"}[how])
    assert not (tmp_path / "smoke" / "v1" / "result.json").exists()

"""Pinned results ship their seeds' models and TensorBoard logs (issue 21, item 6): from a clone,
`dprepro evaluate` finds and checks every pinned model, and `make tensorboard` serves the pinned runs."""

import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import ROOT, run_cli, run_cli_in_process

PINNED = ROOT / "results" / "tutorial-3ep-poisson" / "v1" / "result.json"
# On another arithmetic path a model's logits differ in their last bits, which can flip an image
# whose two best logits are within ~1e-6 of each other: a few of 10,000 test images at most (5e-4),
# and the mean loss by far less than 1e-4 relative.
ACCURACY_OTHER_PATH, LOSS_OTHER_PATH = 5e-4, 1e-4


def pinned_result() -> dict:
    return json.loads(PINNED.read_text())


def every_pinned_result():
    return sorted(p for p in (ROOT / "results").rglob("result.json"))


def test_every_pinned_seed_ships_its_model_beside_the_result():
    """Each pinned seed's model is in the repository beside its result, with the recorded SHA-256."""
    import hashlib

    for path in every_pinned_result():
        for seed in json.loads(path.read_text())["seeds"]:
            model = path.parent / f"seed-{seed['seed']}" / "model.npz"
            assert model.is_file(), model
            assert hashlib.sha256(model.read_bytes()).hexdigest() == seed["model"]["sha256"], model
            assert list(model.parent.glob("events.out.tfevents.*")), model.parent


@pytest.mark.parametrize("path", ["default", pytest.param("onednn-off", marks=pytest.mark.full)])
def test_evaluate_finds_and_checks_the_pinned_models(path, tmp_path):
    """`dprepro evaluate` on a pinned result, run from another folder (the recorded model paths are
    relative to the repository, so the models are found beside the result): EXACT for every seed on
    the pin's own arithmetic path; on another path (and on the simulated one) within the stated
    tolerance."""
    from dprepro.records.environment import path_environ

    if path == "default":        # this process's own path
        proc = run_cli_in_process("evaluate", PINNED, "--data-dir", ROOT / "data" / "mnist", cwd=tmp_path)
    else:                        # another path is chosen when TensorFlow loads: a process of its own
        proc = run_cli("evaluate", PINNED, "--data-dir", ROOT / "data" / "mnist", cwd=tmp_path, env=path_environ(path))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    result = pinned_result()
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(EXACT|DIFFERS)$", proc.stdout, re.M)
    assert [int(r[0]) for r in rows] == [s["seed"] for s in result["seeds"]], proc.stdout
    here, recorded = re.search(r"arithmetic path here (\w+), recorded (\w+)", proc.stdout).groups()
    if here == recorded:
        assert proc.returncode == 0 and all(r[5] == "EXACT" for r in rows), proc.stdout
    for seed, r in zip(result["seeds"], rows):
        assert abs(float(r[2]) - seed["test_accuracy"]) <= ACCURACY_OTHER_PATH, proc.stdout
        assert abs(float(r[4]) - seed["test_loss"]) <= LOSS_OTHER_PATH * seed["test_loss"] + 1e-6, proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_make_tensorboard_serves_the_pinned_runs():
    """The command `make tensorboard` runs, started here: it lists the pinned seeds of the spec and
    serves their per-epoch test accuracy, equal to the pinned history (as float32)."""
    port = free_port()
    dry = subprocess.run(["make", "-n", "tensorboard", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True)
    command = next(line for line in dry.stdout.splitlines() if "tensorboard --logdir" in line)
    server = subprocess.Popen(command.split() + ["--host", "127.0.0.1"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = pinned_result()
        wanted = {f"pinned/tutorial-3ep-poisson/v1/seed-{s['seed']}" for s in result["seeds"]}
        runs, deadline = [], time.time() + 90
        while time.time() < deadline and not wanted <= set(runs):
            time.sleep(2)
            try:
                runs = get_json(f"http://127.0.0.1:{port}/data/runs")
            except OSError:
                continue
        assert wanted <= set(runs), runs
        import numpy as np
        for seed in result["seeds"]:
            query = urllib.parse.urlencode({"run": f"pinned/tutorial-3ep-poisson/v1/seed-{seed['seed']}",
                                            "tag": "accuracy/test"})
            points = get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}")
            assert [p[1] for p in points] == seed["history"]["epoch"]
            np.testing.assert_array_equal(np.float32([p[2] for p in points]),
                                          np.float32(seed["history"]["test_accuracy"]))
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_pinned_seed_carries_the_ledger_of_its_spec():
    """scripts/add_ledger.py gave the results pinned before the ledger the one their spec plans, and
    says so; the epsilon block says it was recomputed from it. A result pinned since carries the ledger
    its run recorded (equal to the plan: the run checks it) and its block says so."""
    from dprepro import ledger
    from dprepro.records.read import load_result

    paths = sorted((ROOT / "results").glob("*/v*/result*.json"))
    assert len(paths) > 30
    for path in paths:
        result = load_result(path)
        recorded = all(seed.get("ledger_source") is None for seed in result.seeds)
        for seed in result.seeds:
            assert seed.ledger == ledger.planned(result.spec), (path, seed.seed)
            assert recorded or seed.get("ledger_source", "").startswith("reconstructed from the spec's plan"), path
        computed_from = result.epsilon and result.epsilon.fields["computed_from"]
        assert result.epsilon is None or (computed_from == "the seeds' privacy ledgers (what ran)" if recorded
                                          else "recomputed it from the ledger" in computed_from), path


def test_add_ledger_writes_nothing_when_a_pinned_epsilon_does_not_follow_from_the_ledger(tmp_path):
    """The script's check can fail: an rdp value off by 1e-6 relative (a real change is >= 8.7e-5,
    records/compare.py; float rounding is ~1e-14) stops it, naming the file and the value, with the
    file untouched. The same file unchanged passes, and a second pass changes nothing."""
    import sys

    source = json.loads((ROOT / "results" / "tutorial-3ep" / "v1" / "result.json").read_text())
    for seed in source["seeds"]:                    # as pinned before the script
        seed.pop("ledger", None), seed.pop("ledger_source", None)
    source["epsilon"].pop("computed_from", None)
    target = tmp_path / "results" / "tutorial-3ep" / "v1" / "result.json"
    target.parent.mkdir(parents=True)
    broken = json.loads(json.dumps(source))
    broken["epsilon"]["accountants"]["rdp"]["epsilon"] *= 1 + 1e-6
    target.write_text(json.dumps(broken))

    def script():
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "add_ledger.py"), str(tmp_path / "results")],
                              capture_output=True, text=True, timeout=300)
    proc = script()
    assert proc.returncode != 0 and "epsilon rdp: pinned" in proc.stderr and "nothing written" in proc.stderr
    assert json.loads(target.read_text()) == broken
    target.write_text(json.dumps(source))
    first = script()
    assert first.returncode == 0 and first.stdout.strip().endswith("ledger added"), first.stderr
    assert script().stdout.strip().endswith("unchanged")

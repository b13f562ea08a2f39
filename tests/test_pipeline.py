"""End to end through the CLI on the smoke spec: result file, TensorBoard events, determinism."""

import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import EXPERIMENTS, raw_spec, run_cli, run_cli_in_process
from dprepro.files import write_json as write_json_atomic

SMOKE = EXPERIMENTS / "smoke.yaml"


def test_progress_and_summary_are_printed(smoke_runs):
    _, proc, _ = smoke_runs[0]
    assert "seed 0  epoch 1/1  train loss" in proc.stdout
    assert "summary" in proc.stdout and "smoke v1" in proc.stdout
    assert "WARNING: no GPU visible to TensorFlow; falling back to the CPU" in proc.stderr


def test_result_fields(smoke_runs):
    out, _, r = smoke_runs[0]
    assert r["result_schema"] == 1 and r["name"] == "smoke" and r["version"] == 1
    assert len(r["spec_sha256"]) == 64 and r["spec"]["training"]["batch_size"] == 250
    assert r["run"]["engine"] == "fast" and r["run"]["seeds"] == [0]
    assert set(r["git"]) == {"commit", "dirty", "changed"}
    env = r["environment"]
    assert env["packages"]["tensorflow"] == "2.15.1" and env["packages"]["tensorflow-privacy"] == "0.9.0"
    assert env["packages"]["dp-accounting"] == "0.4.3" and env["packages"]["numpy"] == "1.26.4"
    assert env["python"].startswith("3.11.") and env["cpu"] and env["devices"]["gpus"] == []
    assert r["data"]["train_examples"] == 2500 and r["data"]["test_examples"] == 1000
    assert len(r["data"]["files_sha256"]) == 4
    assert r["epsilon"]["steps"] == 10 and r["epsilon"]["accountants"]["rdp"]["epsilon"] > 0
    (seed,) = r["seeds"]
    assert seed["seed"] == 0 and seed["steps"] == 10
    assert 0.0 <= seed["test_accuracy"] <= 1.0 and seed["history"]["epoch"] == [1]
    assert r["test_accuracy"]["mean"] == seed["test_accuracy"] and r["test_accuracy"]["n"] == 1
    assert (out / "logs" / "smoke" / "v1" / "seed-0" / "seed.json").exists()
    assert not list(out.rglob("*.tmp"))


def test_smoke_training_learns_something(smoke_runs):
    """10 DP-SGD steps on 2,500 examples: better than chance (0.10) on 1,000 test examples."""
    assert smoke_runs[0][2]["test_accuracy"]["mean"] > 0.15


def test_same_seed_gives_identical_history(smoke_runs):
    (_, _, a), (_, _, b) = smoke_runs
    dump = lambda r: json.dumps([s["history"] for s in r["seeds"]], sort_keys=True)  # noqa: E731
    assert dump(a) == dump(b)


def test_tensorboard_scalars_and_hparams(smoke_runs):
    out, _, _ = smoke_runs[0]
    (event_file,) = (out / "logs" / "smoke" / "v1" / "seed-0").glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file)).Reload()
    tags = set(events.Tags()["tensors"])
    assert {"loss/train", "loss/test", "accuracy/train", "accuracy/test", "learning_rate",
            "epsilon/rdp_legacy", "epsilon/rdp", "epsilon/pld"} <= tags
    assert "_hparams_/session_start_info" in tags  # the HParams plugin's record of the spec
    (accuracy,) = events.Tensors("accuracy/test")
    assert accuracy.step == 1


def test_nonprivate_override_is_rejected_without_training(tmp_path):
    proc = run_cli_in_process("run", SMOKE, "--engine", "none", "--out", tmp_path / "o", "--logdir", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("engine.name: engine 'none' trains without privacy but privacy.enabled is true")
    assert not (tmp_path / "o").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "r" / "result.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_infinite_epsilon_is_written_as_text(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"epsilon": float("inf")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"epsilon": "inf"}


@pytest.mark.full
def test_engine_override_gets_its_own_files(tmp_path):
    """The tutorial's own engine end to end (10 slow steps, 40 s); written beside, not over, the default."""
    proc = run_cli_in_process("run", SMOKE, "--engine", "tutorial", "--out", tmp_path, "--logdir", tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "smoke" / "v1" / "result-tutorial.json").read_text())
    assert r["run"]["engine"] == "tutorial" and r["seeds"][0]["steps"] == 10
    assert r["test_accuracy"]["mean"] > 0.15
    assert not (tmp_path / "smoke" / "v1" / "result.json").exists()
    assert (tmp_path / "logs" / "smoke" / "v1" / "seed-0-tutorial" / "seed.json").exists()


def test_nonprivate_run_end_to_end(write_spec, tmp_path):
    """The smoke data with plain SGD: no epsilon block, a note saying so, no epsilon scalars."""
    raw = raw_spec("smoke")
    raw.update(name="smoke-nonprivate", privacy={"enabled": False}, engine={"name": "none"})
    proc = run_cli_in_process("run", write_spec(raw), "--out", tmp_path, "--logdir", tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr
    assert "non-private (no epsilon)" in proc.stdout
    r = json.loads((tmp_path / "smoke-nonprivate" / "v1" / "result.json").read_text())
    assert r["epsilon"] is None and r["epsilon_note"].startswith("non-private run")
    assert 0.0 < r["test_accuracy"]["mean"] <= 1.0 and r["seeds"][0]["steps"] == 10
    (event_file,) = (tmp_path / "logs" / "smoke-nonprivate" / "v1" / "seed-0").glob("events.out.tfevents.*")
    assert not [t for t in EventAccumulator(str(event_file)).Reload().Tags()["tensors"] if t.startswith("epsilon/")]


@pytest.mark.full
def test_xla_run_end_to_end(write_spec, tmp_path):
    """XLA on: the run works (op determinism off, said on stderr and in the result). A process of its
    own: op determinism, once on in a process (as in this one), stays on, and XLA has no deterministic
    MaxPool gradient."""
    raw = raw_spec("smoke")
    raw["engine"]["use_xla"] = True
    proc = run_cli("run", write_spec(raw), "--out", tmp_path, "--logdir", tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "engine.use_xla is true" in proc.stderr
    r = json.loads((tmp_path / "smoke" / "v1" / "result.json").read_text())
    assert r["run"]["op_determinism"] is False and r["run"]["engine"] == "fast"
    assert 0.0 < r["test_accuracy"]["mean"] <= 1.0 and r["seeds"][0]["steps"] == 10


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git (the Docker image has none)")
def test_git_state_counts_inputs_not_outputs(tmp_path, monkeypatch):
    """A rewritten pinned result is an output; an edited source file makes the run dirty."""
    import subprocess

    from dprepro.records.environment import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text("{}")
    (tmp_path / "model.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "r.json").write_text('{"new": 1}')
    (tmp_path / "fresh.json").write_text("{}")
    assert git_state()["dirty"] is False and git_state()["changed"] == []
    (tmp_path / "model.py").write_text("x = 2\n")
    state = git_state()
    assert state["dirty"] is True and state["changed"] == ["model.py"]


def test_poisson_run_end_to_end(write_spec, tmp_path):
    """Poisson sampling through the CLI, 2 epochs of the smoke data: 10 steps per epoch, the epsilon
    of record holds (pld), the labels are in the result and on the screen, the epochs see other
    batches, the same seed repeats exactly, and engine vectorized runs it too."""
    raw = raw_spec("smoke")
    raw.update(name="smoke-poisson")
    raw["data"]["sampling"] = "poisson"
    raw["training"]["epochs"] = 2
    path = write_spec(raw)
    runs = []
    for engine_name, out in (("fast", tmp_path / "a"), ("fast", tmp_path / "b"), ("vectorized", tmp_path / "c")):
        proc = run_cli_in_process("run", path, "--engine", engine_name, "--out", out, "--logdir", out / "logs")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append((proc, json.loads(next(out.glob("smoke-poisson/v1/result*.json")).read_text())))
    proc, r = runs[0]
    assert "2 epochs of 10 steps, poisson sampling" in proc.stdout
    assert "eps of record" in proc.stdout and "(pld, at delta 1e-05): holds for this run" in proc.stdout
    assert "eps(rdp)" in proc.stdout and "the tutorial's: holds for this run" in proc.stdout
    block = r["epsilon"]
    assert block["sampling"] == "poisson" and block["of_record"] == "pld" and block["steps"] == 20
    assert r["seeds"][0]["steps"] == 20
    history = r["seeds"][0]["history"]
    assert history["train_loss"][0] != history["train_loss"][1]
    assert runs[1][1]["seeds"][0]["history"] == history
    assert runs[2][1]["test_accuracy"]["mean"] > 0.15        # vectorized (its own noise stream) learns too
    (event_file,) = (tmp_path / "a" / "logs" / "smoke-poisson" / "v1" / "seed-0").glob("events.out.tfevents.*")
    assert "epsilon/of_record" in EventAccumulator(str(event_file)).Reload().Tags()["tensors"]


def test_shuffled_run_names_the_bound_that_holds(smoke_runs):
    _, proc, r = smoke_runs[0]
    assert "eps of record" in proc.stdout and "(statement_once_per_epoch" in proc.stdout
    assert "the tutorial's: assumes Poisson sampling; this run used shuffling" in proc.stdout
    assert r["epsilon"]["of_record"] == "statement_once_per_epoch"
    assert r["epsilon"]["accountants"]["rdp"]["label"] == "assumes Poisson sampling; this run used shuffling"
    assert ("dprepro: randomness reproducible: every draw (sampling, noise, private releases) is a function of the "
            "seed in this file: each epsilon here holds only against an adversary who does not know the seed") in proc.stdout


def test_batch_that_does_not_divide_n_is_accounted_as_trained(write_spec, tmp_path):
    """Smoke data (2,500 examples) in batches of 240: 10 steps are trained (the last 100 examples
    dropped), and the epsilon block counts those 10, not ceil(2500 / 240) = 11."""
    raw = raw_spec("smoke")
    raw["training"]["batch_size"] = 240
    raw["privacy"]["num_microbatches"] = 240
    proc = run_cli_in_process("run", write_spec(raw), "--out", tmp_path, "--logdir", tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "smoke" / "v1" / "result.json").read_text())
    assert r["seeds"][0]["steps"] == r["epsilon"]["steps"] == r["epsilon"]["accountants"]["rdp"]["steps"] == 10
    assert r["epsilon"]["accountants"]["statement_poisson"]["steps"] == 11      # tf-privacy's own count

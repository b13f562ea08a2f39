"""Nothing lost, nothing clobbered: kill -9 and resume, one writer per folder, saved models, with
real processes (the installed `dprepro` command) on the smoke data."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import CLI, raw_spec, run_cli, run_cli_in_process
from dprepro.training import checkpoint


def smoke3(write_spec, name="smoke-resume", seeds=(0, 1), **sections):
    """The smoke spec with 3 epochs (10 steps each) and two seeds; `sections` update its sections."""
    raw = raw_spec("smoke")
    raw.update(name=name, seeds=list(seeds))
    raw["training"]["epochs"] = 3
    for section, fields in sections.items():
        raw[section].update(fields)
    return write_spec(raw, f"{name}.yaml")


def start(spec, out):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([str(CLI), "run", str(spec), "--out", str(out), "--logdir", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=300):
    """Poll until `path` exists (the process must still be running)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def folder(out, name="smoke-resume"):
    return out / name / "v1"


@pytest.mark.full
def test_kill_9_then_rerun_equals_an_uninterrupted_run(write_spec, tmp_path):
    """Seed 1 is killed (SIGKILL) right after its first checkpoint; the rerun keeps seed 0,
    resumes seed 1 after epoch 1, and ends with the uninterrupted run's histories and weights, bit
    for bit. The spec carries optimizer state and a step-driven rate (momentum 0.9, a linear
    schedule; tanh), which the resumed optimizer must pick up where it stopped."""
    spec = smoke3(write_spec, model={"activation": "tanh"},
                  training={"momentum": 0.9, "learning_rate_schedule": "linear", "final_learning_rate": 0.05})
    full = run_cli_in_process("run", spec, "--out", tmp_path / "full", "--logdir", tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]

    cut = tmp_path / "cut"
    proc = start(spec, cut)
    began = time.monotonic()
    wait_for(folder(cut) / "seed-1" / checkpoint.FILE, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = time.monotonic() - began
    assert not (folder(cut) / "result.json").exists()
    assert (folder(cut) / "seed-0" / "seed.json").exists() and (folder(cut) / ".lock").exists()

    again = run_cli("run", spec, "--out", cut, "--logdir", cut)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "seed 0: finished earlier, kept" in again.stdout
    assert "seed 1: resuming after epoch 1/3 from" in again.stdout
    assert "taking over the stale lock" in again.stderr
    print(f"killed {killed_after:.1f} s after the start; rerun took the rest")

    a = json.loads((folder(tmp_path / "full") / "result.json").read_text())
    b = json.loads((folder(cut) / "result.json").read_text())
    assert [s["history"] for s in a["seeds"]] == [s["history"] for s in b["seeds"]]
    # the resumed seed's ledger continues the checkpoint's: one entry, steps 1-30, none repeated or skipped
    assert [s["ledger"] for s in a["seeds"]] == [s["ledger"] for s in b["seeds"]]
    assert [(e["first_step"], e["steps"]) for e in b["seeds"][1]["ledger"]["steps"]] == [(1, 30)]
    for seed in (0, 1):
        for x, y in zip(weights(folder(tmp_path / "full") / f"seed-{seed}" / "model.npz"),
                        weights(folder(cut) / f"seed-{seed}" / "model.npz")):
            np.testing.assert_array_equal(x, y)
    assert not list(cut.rglob(checkpoint.FILE)) and not (folder(cut) / ".lock").exists()
    assert not list(cut.rglob("*.tmp"))

    # the saved models give the recorded numbers exactly
    evaluated = run_cli_in_process("evaluate", folder(cut) / "result.json")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert evaluated.stdout.count("EXACT") == 2
    recorded = json.loads((folder(cut) / "result.json").read_text())["seeds"][1]["model"]
    assert recorded["sha256"] == __import__("hashlib").sha256(
        (folder(cut) / "seed-1" / "model.npz").read_bytes()).hexdigest()
    np.savez(folder(cut) / "seed-1" / "model.npz", *[w + 1e-3 for w in weights(folder(cut) / "seed-1" / "model.npz")])
    tampered = run_cli_in_process("evaluate", folder(cut) / "result.json")
    assert tampered.returncode == 2 and "is not the recorded" in tampered.stderr.strip().splitlines()[-1]


@pytest.mark.full
def test_a_second_run_into_the_same_folder_stops_and_touches_nothing(write_spec, tmp_path):
    spec = smoke3(write_spec, seeds=(0,))
    out = tmp_path / "out"
    first = start(spec, out)
    wait_for(folder(out) / ".lock", first)
    second = run_cli("run", spec, "--out", out, "--logdir", out)
    other = run_cli("run", spec, "--out", tmp_path / "other", "--logdir", tmp_path / "other")
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert second.returncode == 3
    message = second.stderr.strip()
    assert "\n" not in message and f"pid {first.pid} on " in message and "another dprepro run" in message
    assert message.startswith(str((folder(out) / ".lock").resolve()))
    assert other.returncode == 0, other.stderr[-3000:]       # another folder: runs alongside
    a = json.loads((folder(out) / "result.json").read_text())
    b = json.loads((folder(tmp_path / "other") / "result.json").read_text())
    assert a["seeds"][0]["history"] == b["seeds"][0]["history"]
    assert "resuming" not in stdout and not (folder(out) / ".lock").exists()


def test_checkpoint_of_another_run_is_refused(tmp_path):
    ident = checkpoint.identity("a" * 64, "fast", 4, 0)
    checkpoint.save(tmp_path, ident, 1, [np.ones(3)], [np.int64(10)], {"history": {}})
    assert checkpoint.load(tmp_path, ident)["epoch"] == 1
    for field, value in (("spec_sha256", "b" * 64), ("engine", "none"), ("engine_version", 5), ("seed", 1)):
        with pytest.raises(Exception) as e:
            checkpoint.load(tmp_path, {**ident, field: value})
        message = str(e.value)
        assert type(e.value).__name__ == "InputError" and "\n" not in message
        assert f"checkpoint of another run: {field}" in message and "--restart" in message
    (tmp_path / checkpoint.FILE).write_bytes(b"truncated")
    with pytest.raises(Exception, match="unreadable checkpoint"):
        checkpoint.load(tmp_path, ident)


def test_cli_refuses_a_foreign_checkpoint_and_restart_discards_it(write_spec, tmp_path):
    raw = raw_spec("smoke")
    spec = write_spec(raw)
    seed_dir = tmp_path / "smoke" / "v1" / "seed-0"
    checkpoint.save(seed_dir, checkpoint.identity("f" * 64, "fast", 4, 0), 1, [np.ones(3)], [], {})
    proc = run_cli_in_process("run", spec, "--out", tmp_path, "--logdir", tmp_path)
    assert proc.returncode == 2 and "checkpoint of another run: spec_sha256" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(str(seed_dir / checkpoint.FILE) + ": checkpoint of")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "smoke" / "v1" / "result.json").exists()
    proc = run_cli_in_process("run", spec, "--out", tmp_path, "--logdir", tmp_path, "--restart")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (seed_dir / checkpoint.FILE).exists() and (seed_dir / "model.npz").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    from dprepro.lock import FILE, RunLock, process_start

    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / FILE
    lock.write_text(json.dumps({"pid": dead.pid, "pid_start": "1", "host": os.uname().nodename,
                                "started": "then", "command": ["dprepro", "run"]}))
    with RunLock([tmp_path], "test") as held:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert json.loads(lock.read_text())["pid_start"] == process_start(os.getpid())
        assert held.held == [lock.resolve()]
    assert not lock.exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    from dprepro.lock import FILE, Busy, RunLock

    (tmp_path / FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now", "command": []}))
    with pytest.raises(Busy, match="pid 1 on elsewhere.*delete the lock file"):
        with RunLock([tmp_path], "test"):
            pass
    assert json.loads((tmp_path / FILE).read_text())["host"] == "elsewhere"


def test_an_unwritable_output_folder_is_one_line_before_any_training(write_spec, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli_in_process("run", write_spec(raw_spec("smoke")), "--out", blocker / "out", "--logdir", tmp_path / "logs")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "cannot write: Not a directory" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "logs").exists()


def test_a_full_output_folder_leaves_no_partial_result_and_keeps_the_seeds(write_spec, tmp_path):
    """`--out` on a 4 KiB tmpfs (one page): the lock fits, the result file does not. One line,
    exit 2, no result.json and no temporary file in OUT, the seed's seed.json and model kept."""
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(full)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        proc = run_cli_in_process("run", write_spec(raw_spec("smoke")), "--out", full, "--logdir", tmp_path / "logs")
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert "cannot write: No space left on device" in line and "Traceback" not in proc.stderr
        assert "finished seeds are kept" in line
        assert not list(full.rglob("*.json")) and not list(full.rglob("*.tmp"))
        assert (tmp_path / "logs" / "smoke" / "v1" / "seed-0" / "seed.json").exists()
        assert (tmp_path / "logs" / "smoke" / "v1" / "seed-0" / "model.npz").exists()
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)

"""Sweeps that survive their cluster (sweep/ray_runner.py), on real Ray with real processes: a task's
worker killed mid-training is retried and resumes from its checkpoint, with the uninterrupted
history; a killed driver's rerun trains only what is missing; a second sweep of the same folders
is refused while the first runs. (An error of the training itself is not retried:
test_sweep_ray.py, the failing cell.)"""

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from conftest import CLI, EXPERIMENTS

pytestmark = [pytest.mark.full, pytest.mark.xdist_group("ray")]   # one pytest worker runs every Ray test
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}


def sweep_file(tmp_path, grid=None) -> object:
    """Two cells of the smoke spec made longer (6 epochs of 20 steps): several checkpoints to kill between."""
    base = yaml.safe_load((EXPERIMENTS / "smoke.yaml").read_text())
    base["training"]["epochs"] = 6
    base["data"]["train_examples"] = 5000
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump({"schema": 1, "name": "pair", "version": 1, "base": str(tmp_path / "base.yaml"),
                                    "grid": grid or {"privacy.noise_multiplier": [1.3, 2.0]}, "seeds": [0]}))
    return path


def start(path, out, tasks):
    env = {**os.environ, **QUIET, "DPREPRO_TASK_DIR": str(tasks)}
    return subprocess.Popen([str(CLI), "sweep", str(path), "--out", str(out), "--logdir", str(out / "logs")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=900):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(find, timeout=300, every=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = find()
        if found:
            return found
        time.sleep(every)
    raise AssertionError("timed out waiting")


def histories(out) -> dict:
    root = out / "sweeps" / "pair" / "v1"
    return {p.parts[-3]: json.loads(p.read_text())["seeds"][0]["history"] for p in root.glob("*/v1/result.json")}


def seed_record(out, cell) -> dict:
    return json.loads((out / "logs" / "sweeps" / "pair" / "v1" / cell / "v1" / "seed-0" / "seed.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep-whole")
    code, out, err = finish(start(sweep_file(tmp), tmp / "out", tmp / "tasks"))
    assert code == 0, err[-3000:]
    found = histories(tmp / "out")
    assert len(found) == 2
    assert not list((tmp / "tasks").rglob("checkpoint.npz"))     # finished tasks leave no scratch behind
    return found


def test_a_killed_worker_is_retried_and_resumes_with_the_same_history(uninterrupted, tmp_path):
    path, out, tasks = sweep_file(tmp_path), tmp_path / "out", tmp_path / "tasks"
    proc = start(path, out, tasks)
    checkpoint = wait_for(lambda: next(tasks.rglob("checkpoint.npz"), None))     # a task after its first epoch
    task = json.loads((checkpoint.parents[4] / "task.json").read_text())
    os.kill(task["pid"], signal.SIGKILL)                                        # what an OOM kill does
    code, stdout, stderr = finish(proc)
    assert code == 0, stderr[-3000:]
    assert "retry 1/3 of cell pair-sigma" in stdout and "worker died" in stdout, stdout[-3000:]
    assert "resumed after epoch" in stdout
    assert histories(out) == uninterrupted                                      # bit for bit: same machine, same seeds
    attempts = sorted(seed_record(out, cell)["worker"]["attempts"] for cell in uninterrupted)
    assert attempts == [1, 2]


def test_a_killed_driver_is_resumed_and_a_second_sweep_is_refused(uninterrupted, tmp_path):
    path, out, tasks = sweep_file(tmp_path), tmp_path / "out", tmp_path / "tasks"
    proc = start(path, out, tasks)
    wait_for(lambda: (out / "sweeps" / "pair" / "v1" / ".lock").exists(), every=0.1)
    env = {**os.environ, **QUIET, "DPREPRO_TASK_DIR": str(tasks)}
    second = subprocess.run([str(CLI), "sweep", str(path), "--out", str(out), "--logdir", str(out / "logs")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 3 and len(second.stderr.strip().splitlines()) == 1
    assert "is being written by another dprepro run" in second.stderr
    wait_for(lambda: next((out / "logs").rglob("seed.json"), None), every=0.05)   # one seed stored by the driver
    proc.kill()                                                                 # kill -9 of the driver
    proc.communicate(timeout=60)
    time.sleep(5)                                                               # its Ray processes go with it
    code, stdout, stderr = finish(start(path, out, tasks))
    assert code == 0, stderr[-3000:]
    assert "finished earlier, kept" in stdout and "1 task(s) to run" in stdout, stdout[-3000:]
    assert histories(out) == uninterrupted


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_head(port: int, tasks):
    """A one-machine cluster on loopback; its workers keep their scratch folders under `tasks`."""
    ray = CLI.with_name("ray")
    return subprocess.run([str(ray), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                           "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats"],
                          env={**os.environ, **QUIET, "DPREPRO_TASK_DIR": str(tasks)},
                          capture_output=True, text=True, timeout=180)


def ray_stop():
    subprocess.run([str(CLI.with_name("ray")), "stop", "--force"], env={**os.environ, **QUIET},
                   capture_output=True, timeout=180)


def test_a_lost_head_is_one_line_and_a_new_cluster_resumes(uninterrupted, tmp_path):
    path, out, tasks = sweep_file(tmp_path), tmp_path / "out", tmp_path / "tasks"
    port = free_port()
    try:
        assert ray_head(port, tasks).returncode == 0
        env = {**os.environ, **QUIET, "DPREPRO_TASK_DIR": str(tasks)}
        proc = subprocess.Popen([str(CLI), "sweep", str(path), "--out", str(out), "--logdir", str(out / "logs"),
                                 "--address", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: next(tasks.rglob("checkpoint.npz"), None))      # training on the cluster
        ray_stop()                                                        # the head (and its worker) lost
        code, stdout, stderr = finish(proc, timeout=300)
        assert code == 1, stderr[-3000:]
        line, = [ln for ln in stderr.splitlines() if ln.startswith("--address")]
        assert f"--address 127.0.0.1:{port}: the Ray cluster's head at 127.0.0.1:{port} stopped answering" in line
        port = free_port()
        assert ray_head(port, tasks).returncode == 0                      # a new cluster
        env = {**os.environ, **QUIET, "DPREPRO_TASK_DIR": str(tasks)}
        again = subprocess.run([str(CLI), "sweep", str(path), "--out", str(out), "--logdir", str(out / "logs"),
                                "--address", f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        ray_stop()
    assert histories(out) == uninterrupted

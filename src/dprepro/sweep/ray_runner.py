"""Run a sweep on Ray: one task per (cell, seed), on this machine or on a cluster.

Each task is an ordinary `dprepro run` of one seed of one cell, in a scratch folder of the worker
that runs it (a fresh worker process per task, like a fresh command). It returns the seed's files
(seed.json, model.npz, TensorBoard events, the run's output) and the driver puts them where a local
run would: LOGDIR/<cell>/v<version>/seed-<k>/. No shared file system is needed. When a cell's seeds
are all in, the driver writes the cell's result.json with `dprepro run`'s own code (which keeps the
finished seeds and trains nothing). A re-run skips cells whose result.json matches the cell's content
hash, and seeds whose seed.json matches their identity.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dprepro import files
from dprepro.errors import InputError
from dprepro.sweep.sweep_spec import Sweep, cell_yaml


RETRIES = 3           # a (cell, seed) whose worker or node is lost is submitted again up to this many times
TASK_DIR_VARIABLE = "DPREPRO_TASK_DIR"


def task_folder(spec_sha256: str, seed: int) -> Path:
    """The worker-side scratch folder of one (cell, seed): $DPREPRO_TASK_DIR (default: the system's
    temporary folder)/dprepro-tasks/<content hash>-seed-<k>. The same for every attempt, so a retry
    that lands on the same machine finds the seed's last per-epoch checkpoint and resumes from it."""
    root = Path(os.environ.get(TASK_DIR_VARIABLE) or tempfile.gettempdir())
    return root / "dprepro-tasks" / f"{spec_sha256[:16]}-seed-{seed}"


def train_one_seed(spec_text: str, spec_name: str, seed: int, data_dir: str, strict: bool) -> dict:
    """The Ray task: `dprepro run` of one seed of one cell in its scratch folder (task_folder);
    returns its files. Resumes from a checkpoint an earlier, killed attempt left on this machine.
    `data_dir` is the driver's MNIST folder; unless `strict` (given explicitly), a worker without that
    folder reads its own default ($DPREPRO_DATA_DIR, else data/mnist: the image sets the variable)."""
    import shutil

    from dprepro import data
    from dprepro.spec import load_spec
    from dprepro.training import checkpoint, pipeline

    start = time.perf_counter()
    spec_file = Path(tempfile.mkdtemp(prefix="dprepro-spec-")) / f"{spec_name}.yaml"
    spec_file.write_text(spec_text)   # not an output: the task's own scratch folder
    spec = load_spec(spec_file)
    scratch = task_folder(spec.sha256, seed)
    scratch.mkdir(parents=True, exist_ok=True)
    files.write_json(scratch / "task.json", {"pid": os.getpid(), "host": socket.gethostname(), "seed": seed})
    plan = pipeline.plan_run(spec, scratch / "out", scratch / "logs", seeds=[seed])
    try:
        resumed = checkpoint.load(plan.seed_dir(seed), plan.identity(seed))
    except InputError:      # unreadable or foreign: pipeline.run_spec would refuse it; start afresh
        checkpoint.discard(plan.seed_dir(seed))
        resumed = None
    log = scratch / "run.log"
    where = Path(data_dir) if strict or Path(data_dir).is_dir() else data.data_dir(None)
    try:
        with open(log, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):  # not an output
            result, _ = pipeline.run_spec(spec, where, scratch / "out", scratch / "logs", seeds=[seed])
        seed_dir = plan.seed_dir(seed)
        seed_files = {str(p.relative_to(seed_dir)): p.read_bytes() for p in seed_dir.rglob("*") if p.is_file()}
        seed_files["run.log"] = log.read_bytes()
    finally:     # finished, or failed by its own error: nothing to resume (a killed task never gets here)
        shutil.rmtree(spec_file.parent, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return {"files": seed_files, "host": socket.gethostname(), "seconds": time.perf_counter() - start,
            "test_accuracy": result["seeds"][0]["test_accuracy"],
            "resumed_after_epoch": resumed["epoch"] if resumed else None,
            "environment": result["environment"], "git": result["git"]}


def lost_worker(error: Exception) -> str | None:
    """Why a task's process, node or result was lost (then it is retried); None for an error raised
    by the training itself (bad data, a spec error: reported at once, never retried)."""
    import ray.exceptions as rx

    if isinstance(error, rx.RayTaskError):
        return None
    for kind, why in ((rx.WorkerCrashedError, "worker died"), (rx.NodeDiedError, "node died"),
                      (rx.LocalRayletDiedError, "raylet died"), (rx.OutOfMemoryError, "worker killed for memory"),
                      (rx.ObjectLostError, "result lost with its node")):
        if isinstance(error, kind):
            return why
    return None


def store_seed(seed_dir: Path, returned: dict) -> None:
    """Write a task's files into `seed_dir` (seed.json last, with the model's new path and the worker)."""
    returned_files = dict(returned["files"])
    seed_json = json.loads(returned_files.pop("seed.json"))
    for name, content in returned_files.items():
        files.write_bytes(seed_dir / name, content)
    seed_json["model"]["path"] = str(seed_dir / "model.npz")
    seed_json["worker"] = {"host": returned["host"], "seconds": returned["seconds"],
                           "arithmetic": returned["environment"]["arithmetic"],
                           "attempts": returned.get("attempts", 1),
                           "resumed_after_epoch": returned.get("resumed_after_epoch")}
    files.write_json(seed_dir / "seed.json", seed_json)


def connect(address: str | None):
    """Start Ray here (this machine's resources) or join the cluster at `address`."""
    import warnings

    import ray

    # Ray 2.52 warns that it will stop hiding GPUs from tasks that ask for none; it still hides them (wanted)
    warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
    quiet = {"log_to_driver": False, "logging_level": "ERROR"}
    tries = 2 if address and address.startswith("ray://") else 1   # Ray Client's proxy can fail to start a server once
    for attempt in range(1, tries + 1):
        try:
            if address:
                ray.init(address=address, **({} if address.startswith("ray://") else quiet))
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
            return ray
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
            if attempt == tries:
                raise InputError(f"--address: cannot start or reach Ray at {address or 'this machine'}: "
                                 f"{last_line(e)}") from None
            print(f"sweep: Ray at {address}: {last_line(e)}; trying once more", flush=True)


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class SweepPlan:
    """The cells of a sweep with their specs, and the (cell, seed) tasks still to run."""

    root: Path                                    # OUT/sweeps/<name>/v<version>: cell specs and results
    logs: Path                                    # LOGDIR/sweeps/<name>/v<version>: the seeds' folders
    cells: dict = field(default_factory=dict)     # name -> (Cell, Spec, spec file text)
    todo: list = field(default_factory=list)      # (cell name, seed)
    kept: list = field(default_factory=list)      # cells whose result matches their content hash


def plan_sweep(sweep: Sweep, out: Path, logdir: Path) -> SweepPlan:
    """Write each cell's spec file; skip cells with a current result and seeds finished earlier."""
    from dprepro.spec import load_spec
    from dprepro.training import pipeline

    plan = SweepPlan(files.sweep_folder(out, sweep.name, sweep.version), files.sweep_folder(logdir, sweep.name, sweep.version))
    for cell in sweep.cells:
        path = plan.root / "specs" / f"{cell.name}.yaml"
        text = cell_yaml(cell)
        if not path.exists() or path.read_text() != text:
            files.write_text(path, text)
        spec = load_spec(path)
        plan.cells[cell.name] = (cell, spec, text)
        run = pipeline.plan_run(spec, plan.root, plan.logs)
        try:            # a cell's result that cannot be read is not done: the cell runs again
            done = run.result_path.is_file() and \
                files.read_json(run.result_path, "a cell's result").get("spec_sha256") == spec.sha256
        except (InputError, AttributeError):
            done = False
        if done:
            plan.kept.append(cell.name)
            continue
        for seed in sweep.seeds:
            if run.finished(seed):
                print(f"sweep: {cell.name} seed {seed}: finished earlier, kept", flush=True)
                continue
            plan.todo.append((cell.name, seed))
    return plan


HEAD_CHECK_SECONDS, HEAD_MISSES = 2.0, 3   # the cluster's head is lost after 3 failed connections 2 s apart


def watch_head(address: str, where: str) -> None:
    """A daemon thread that ends the sweep (exit 1, one line naming the address) once the head at
    `where` (host:port) stops taking connections: without it Ray's driver waits on a lost head for a
    minute and then aborts with a log of its own. Stored seeds are kept; a rerun against a new cluster
    resumes."""
    import threading

    host, _, port = where.rpartition(":")

    def watch():
        misses = 0
        while True:
            time.sleep(HEAD_CHECK_SECONDS)
            try:
                socket.create_connection((host, int(port)), timeout=HEAD_CHECK_SECONDS).close()
                misses = 0
            except OSError:
                misses += 1
            if misses >= HEAD_MISSES:
                print(f"--address {address}: the Ray cluster's head at {where} stopped answering; the seeds finished "
                      f"so far are kept: run the same command against a new cluster to resume", file=sys.stderr, flush=True)
                os._exit(1)

    threading.Thread(target=watch, name="dprepro-head-watch", daemon=True).start()


def run_tasks(plan: SweepPlan, data_dir: Path, address: str | None, cpus_per_run: float, gpus_per_run: float,
              data_dir_given: bool) -> list:
    """One Ray task per (cell, seed) of the plan; each returned seed stored where a local run puts
    it; a progress line per finished task. Returns the failures."""
    ray = connect(address)
    if address:
        watch_head(address, ray.get_runtime_context().gcs_address if address == "auto" else address.removeprefix("ray://"))
    print(f"sweep: Ray {ray.__version__} at {ray.get_runtime_context().gcs_address}, resources "
          f"{ {k: v for k, v in ray.cluster_resources().items() if k in ('CPU', 'GPU')} }, "
          f"{cpus_per_run:g} CPU and {gpus_per_run:g} GPU per task", flush=True)
    task = ray.remote(max_calls=1)(train_one_seed).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                                                           max_retries=0)
    pending, attempts = {}, {}

    def submit(name, seed):
        cell, spec, text = plan.cells[name]
        data_for_cell = str(Path(cell.data_dir or data_dir).resolve())
        attempts[name, seed] = attempts.get((name, seed), 0) + 1
        pending[task.remote(text, spec.name, seed, data_for_cell, bool(cell.data_dir) or data_dir_given)] = (name, seed)

    for name, seed in plan.todo:
        submit(name, seed)
    failures, done, start, total = [], 0, time.perf_counter(), len(plan.todo)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        name, seed = pending.pop(ready[0])
        spec = plan.cells[name][1]
        try:
            returned = ray.get(ready[0])
            returned["attempts"] = attempts[name, seed]
            store_seed(files.seed_folder(plan.logs, spec.name, spec.version, seed), returned)
            resumed = returned.get("resumed_after_epoch")
            what = (f"test accuracy {returned['test_accuracy']:.4f}, {returned['seconds']:.0f} s on {returned['host']}"
                    + (f", resumed after epoch {resumed}" if resumed else ""))
        except Exception as e:   # noqa: BLE001  a failed task is reported; the others go on
            why = lost_worker(e)
            if why and attempts[name, seed] <= RETRIES:
                print(f"sweep: retry {attempts[name, seed]}/{RETRIES} of cell {name} seed {seed}: {why} "
                      f"(resumes from its last checkpoint if it lands on the same machine, else restarts)", flush=True)
                submit(name, seed)
                continue
            failures.append({"cell": name, "seed": seed, "error": last_line(e)
                             + (f" (after {attempts[name, seed]} attempts)" if why else "")})
            what = f"FAILED: {failures[-1]['error']}"
        done += 1
        elapsed = time.perf_counter() - start
        print(f"sweep: [{done}/{total}] {name} seed {seed}: {what} | failures {len(failures)} | "
              f"elapsed {clock(elapsed)}, about {clock(elapsed / done * (total - done))} left", flush=True)
    ray.shutdown()
    return failures


def assemble_cells(plan: SweepPlan, data_dir: Path, failures: list) -> list:
    """Each cell without a failed seed gets its result.json by `dprepro run`'s own code (which keeps
    the finished seeds and trains nothing); returns [(cell, result, path)]."""
    from dprepro.training import pipeline

    finished, failed_cells = [], {f["cell"] for f in failures}
    for name, (cell, spec, _) in plan.cells.items():
        if name in failed_cells:
            continue
        if name not in plan.kept:
            print(f"sweep: {name}: writing its result.json (every accountant's epsilon; a PLD can take a minute)",
                  flush=True)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            result, path = pipeline.run_spec(spec, Path(cell.data_dir or data_dir), plan.root, plan.logs)
        finished.append((cell, result, path))
    return finished


def run_sweep(sweep: Sweep, out: Path, logdir: Path, data_dir: Path, address: str | None = None,
              cpus_per_run: float = 2, gpus_per_run: float = 0, data_dir_given: bool = False) -> dict:
    """Run every (cell, seed) not finished yet; assemble each cell's result.json; return the summary.
    `data_dir_given`: the folder was named by the user, so workers must use it (else they may fall
    back to their own default)."""
    plan = plan_sweep(sweep, out, logdir)
    for name in plan.kept:
        print(f"sweep: {name}: result exists and matches the cell's content hash, skipped", flush=True)
    print(f"sweep: {sweep.name} v{sweep.version}: {len(sweep.cells)} cells x {len(sweep.seeds)} seeds; "
          f"{len(plan.todo)} task(s) to run, {len(plan.kept)} cell(s) done earlier", flush=True)
    start = time.perf_counter()
    failures = run_tasks(plan, data_dir, address, cpus_per_run, gpus_per_run, data_dir_given) if plan.todo else []
    finished = assemble_cells(plan, data_dir, failures)
    return {"root": plan.root, "finished": finished, "failures": failures, "tasks": len(plan.todo),
            "wall_seconds": time.perf_counter() - start}


def last_line(error: Exception) -> str:
    """The last non-empty line of a (Ray-wrapped) error: what went wrong, without the traceback."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__

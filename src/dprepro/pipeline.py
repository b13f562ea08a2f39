"""Run one spec end to end: data -> accounting -> training per seed -> logs and result file.

Nothing is lost on an interruption: the run holds a lock on its folders (lock.py); each seed is
checkpointed after every epoch (checkpoint.py) and, when it finishes, leaves its model and its
seed.json. Re-running the same command keeps the finished seeds that match (same spec content,
engine and engine version), resumes the seed in progress from its last epoch, and trains the rest;
`restart=True` discards both.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import tensorflow as tf

from dprepro import accounting, checkpoint, engine, results
from dprepro.data import load_mnist
from dprepro.lock import RunLock
from dprepro.model import save_weights
from dprepro.spec import ENGINE_VERSIONS, Spec
from dprepro.tensorboard import TensorBoardLog


class EpochLine(tf.keras.callbacks.Callback):
    """One progress line per epoch."""

    def __init__(self, label: str, epochs: int, epsilon_curve: dict, of_record: str | None = None):
        super().__init__()
        self.label, self.epochs, self.curve, self.of_record = label, epochs, epsilon_curve, of_record

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        names = dict.fromkeys(n for n in ("rdp", self.of_record) if n in self.curve)
        eps = "".join(f"  eps({n}) {self.curve[n][epoch]:.4f}" for n in names)
        print(f"  {self.label}  epoch {epoch + 1}/{self.epochs}  "
              f"train loss {logs['loss']:.4f} acc {logs['accuracy']:.4f}  "
              f"test loss {logs['val_loss']:.4f} acc {logs['val_accuracy']:.4f}{eps}  "
              f"{time.perf_counter() - self.start:.1f} s", flush=True)


def describe_devices(found: dict) -> str:
    if found["gpus"]:
        return (f"GPU: {', '.join(found['gpus'])} (CUDA {found['cuda_version']}, "
                f"cuDNN {found['cudnn_version']})")
    return "WARNING: no GPU visible to TensorFlow; falling back to the CPU"


def describe_arithmetic(path: dict) -> str:
    """One line naming the arithmetic path, e.g. `4f1c0a9e2b7d (AMD EPYC, avx512f, oneDNN on)`."""
    simd = next((f for f in ("amx_tile", "avx512f", "avx2", "avx") if f in path["cpu_flags"]), "no AVX")
    onednn = {True: "oneDNN on", False: "oneDNN off", None: "oneDNN unknown"}[path["onednn"]]
    limit = f", ISA limit {path['onednn_max_cpu_isa']}" if path["onednn_max_cpu_isa"] else ""
    gpus = f", {', '.join(path['gpus'])}" if path["gpus"] else ""
    return f"{path['id']} ({path['cpu']}, {simd}, {onednn}{limit}{gpus})"


def describe_epsilon(block: dict) -> str:
    """Two lines: the epsilon that holds for the run, and the tutorial's (rdp) with its label."""
    best, rdp = block["of_record"], block["accountants"]["rdp"]
    held = block["accountants"][best]
    return (f"dprepro: eps of record {held['epsilon']:.4f} ({best}, at delta {block['delta']:g}): {held['label']}\n"
            f"dprepro: eps(rdp) {rdp['epsilon']:.4f}, the tutorial's: "
            + ("holds for this run" if rdp["holds_for_this_run"] else rdp["label"]))


def finished_seed(path: Path, ident: dict) -> dict | None:
    """The outcome in a seed.json left by an earlier run of the same seed, spec content and engine
    version; None if there is none or it belongs to something else."""
    try:
        outcome = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return outcome if outcome.get("identity") == ident else None


def run_seed(s: dict, data, seed: int, seed_dir: Path, ident: dict, make_callbacks, resume: dict | None) -> dict:
    """One seed: kept if finished earlier, resumed from `resume` (its loaded checkpoint), or trained
    (with the Keras callbacks `make_callbacks()` returns); its model and seed.json written, its
    checkpoint removed."""
    seed_json, epochs, name = seed_dir / "seed.json", s["training"]["epochs"], ident["engine"]
    done = finished_seed(seed_json, ident)
    if done:
        print(f"  seed {seed}: finished earlier, kept ({seed_json}; --restart trains it again)", flush=True)
        checkpoint.discard(seed_dir)
        return done
    on_epoch = None
    if name in checkpoint.RESUMABLE:
        def on_epoch(epochs_done, model, state):
            checkpoint.save(seed_dir, ident, epochs_done, model.get_weights(), model.optimizer.get_weights(), state)
    elif (seed_dir / checkpoint.FILE).exists():
        print(f"  seed {seed}: engine {name} cannot resume exactly (tf-privacy draws its noise from TensorFlow's "
              f"stateful generator); training it again", flush=True)
        checkpoint.discard(seed_dir)
    if resume:
        print(f"  seed {seed}: resuming after epoch {resume['epoch']}/{epochs} from {seed_dir / checkpoint.FILE}",
              flush=True)
    outcome, model = engine.train(s, data, seed, make_callbacks(), resume=resume, on_epoch=on_epoch)
    model_path = seed_dir / "model.npz"
    outcome["model"] = {"path": str(model_path), "sha256": save_weights(model_path, model.get_weights()),
                        "format": "numpy .npz of the weights in layer order; rebuild: dprepro.model.load_model"}
    outcome["identity"] = ident
    results.write_json_atomic(seed_json, outcome)  # kept if a later seed fails
    checkpoint.discard(seed_dir)
    return outcome


def run_spec(spec: Spec, data_dir: Path, out_dir: Path, logdir: Path,
             seeds=None, engine_name: str | None = None, restart: bool = False) -> tuple[dict, Path]:
    """Train every seed of `spec`; write TensorBoard logs and the result file; return both."""
    resolved = spec.with_overrides(seeds=seeds, engine=engine_name)
    s = resolved.data
    data = load_mnist(data_dir, s["data"]["url"], s["data"]["train_examples"], s["data"]["test_examples"])
    found = engine.devices()
    print(f"dprepro: {describe_devices(found)}", file=sys.stderr if not found["gpus"] else sys.stdout)
    env = results.environment(found, engine.onednn_enabled())
    print(f"dprepro: arithmetic path {describe_arithmetic(env['arithmetic'])}", flush=True)
    if s["engine"]["use_xla"]:
        print("dprepro: WARNING: engine.use_xla is true: XLA has no deterministic MaxPool gradient, so op "
              "determinism is off and the same seed may not give bit-identical runs", file=sys.stderr)
    epsilon = accounting.epsilon_block(s)
    curve = accounting.epsilon_curve(s)
    name, version, engine_used = spec.name, spec.version, s["engine"]["name"]
    override = engine_used if engine_used != spec.data["engine"]["name"] else None
    print(f"dprepro: {name} v{version}, engine {engine_used}, seeds {s['seeds']}, "
          f"{s['training']['epochs']} epochs of {resolved.steps_per_epoch} steps, {resolved.sampling} sampling"
          + (f"\n{describe_epsilon(epsilon)}" if epsilon else ", non-private (no epsilon)"), flush=True)
    result = {
        "result_schema": results.RESULT_SCHEMA,
        "name": name, "version": version,
        "spec_path": spec.path, "spec_sha256": spec.sha256, "spec": spec.data,
        "run": {"engine": engine_used, "engine_version": ENGINE_VERSIONS[engine_used],
                "op_determinism": not s["engine"]["use_xla"], "seeds": s["seeds"], "command": ["dprepro", *sys.argv[1:]],
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "git": results.git_state(),
        "environment": env,
        "data": {"dir": str(data_dir), "files_sha256": data.files,
                 "train_examples": len(data.x_train), "test_examples": len(data.x_test)},
        "epsilon": epsilon,
        "epsilon_note": None if epsilon else "non-private run: no privacy guarantee, no epsilon",
        "seeds": [],
    }
    path = results.result_path(out_dir, name, version, override)
    folder = Path(logdir) / name / f"v{version}"
    with RunLock([path.parent, folder], f"{name} v{version}"):
        def seed_dir_and_identity(seed):
            return (folder / (f"seed-{seed}" + (f"-{override}" if override else "")),
                    checkpoint.identity(spec.sha256, engine_used, ENGINE_VERSIONS[engine_used], seed))

        resumes = {}
        for seed in s["seeds"]:
            seed_dir, ident = seed_dir_and_identity(seed)
            if restart:
                checkpoint.discard(seed_dir)
                (seed_dir / "seed.json").unlink(missing_ok=True)
            elif engine_used in checkpoint.RESUMABLE:   # a foreign checkpoint is refused before any training
                resumes[seed] = checkpoint.load(seed_dir, ident)
        for seed in s["seeds"]:
            seed_dir, ident = seed_dir_and_identity(seed)
            def make_callbacks(seed=seed, seed_dir=seed_dir):
                return [EpochLine(f"seed {seed}", s["training"]["epochs"], curve, epsilon and epsilon["of_record"]),
                        TensorBoardLog(seed_dir, s, seed, engine_used,
                                       {**curve, "of_record": curve[epsilon["of_record"]]} if epsilon else {})]
            outcome = run_seed(s, data, seed, seed_dir, ident, make_callbacks, resumes.get(seed))
            if epsilon and outcome["steps"] != epsilon["steps"]:   # the accountant must count what was trained
                raise RuntimeError(f"trained {outcome['steps']} steps, accounted {epsilon['steps']}")
            result["seeds"].append(outcome)
        result["run"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for key in ("test_accuracy", "train_accuracy", "wall_seconds"):
            result[key] = results.summary([r[key] for r in result["seeds"]])
        results.write_json_atomic(path, result)
    return result, path

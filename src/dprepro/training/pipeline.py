"""Run one spec end to end, in three steps: plan (the spec with the command line's seeds and
engine, its folders and each seed's identity), train (each seed: kept, resumed or trained), assemble
(the result file from the seeds' outcomes).

Nothing is lost on an interruption: the run holds a lock on its folders (lock.py); each seed is
checkpointed after every epoch (checkpoint.py) and, when it finishes, leaves its model and its
seed.json. Re-running the same command keeps the finished seeds that match (same spec content,
engine and engine version), resumes the seed in progress from its last epoch, and trains the rest;
`restart=True` discards both.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dprepro import accounting, files, ledger
from dprepro.errors import InputError, RunCheckFailed
from dprepro.features import load_data
from dprepro.lock import RunLock
from dprepro.records import environment, write
from dprepro.records.result import EpsilonBlock, Result, SeedOutcome
from dprepro.spec import ENGINE_VERSIONS, Spec
from dprepro.training import checkpoint
from dprepro.training.callbacks import EpochLine, TensorBoardLog
from dprepro.training.fit import train
from dprepro.training.model import save_weights


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


def at_least_line(block: EpsilonBlock) -> str:
    """"eps of record U (name); this run's eps is at least L (what)": the interval in one line."""
    name = block.interval["lower_from"]
    what = {"shuffled_chua": "shuffled, Chua et al. 2024", "pld_optimistic": "the PLD rounded down"}.get(name, name)
    return (f"eps of record {block.value_of_record:.4f} ({block.of_record}); this run's eps is at least "
            f"{block.at_least:.4f} ({what})")


def describe_epsilon(block: dict) -> str:
    """Two lines: the epsilon that holds for the run, and the tutorial's (rdp) with its label."""
    typed, rdp = EpsilonBlock.from_json(block), block["accountants"]["rdp"]
    if typed.of_record is None:
        first = "dprepro: no eps holds for this run (each value's label in the result says why)\n"
    else:
        first = (f"dprepro: eps of record {typed.value_of_record:.4f} ({typed.of_record}, at delta {typed.delta:g}): "
                 f"{typed.record['label']}\n")
        if typed.interval:
            first += f"dprepro: {at_least_line(typed)}\n"
    return (first + f"dprepro: eps(rdp) {rdp['epsilon']:.4f}, the tutorial's: "
            + ("holds for this run" if rdp["holds_for_this_run"] else rdp["label"])
            + f"\ndprepro: randomness {block['randomness']['mode']}: {block['randomness']['statement']}")


def finished_seed(path: Path, ident: dict) -> dict | None:
    """The outcome in a seed.json left by an earlier run of the same seed, spec content and engine
    version; None if there is none, it belongs to something else, or it predates the privacy ledger."""
    if not path.is_file():
        return None
    try:                # a seed record that cannot be read is not a finished seed: it trains again
        outcome = files.read_json(path, "a seed record")
    except InputError:
        return None
    return outcome if isinstance(outcome, dict) and outcome.get("identity") == ident and "ledger" in outcome else None


@dataclass(frozen=True)
class RunPlan:
    """What one `dprepro run` of one spec will do and where it writes."""

    spec: Spec               # as written: its content hash identifies the run
    resolved: Spec           # with the command line's seeds and engine
    override: str | None     # the engine, when the command line changed it
    result_path: Path        # OUT/<name>/v<version>/result[-<engine>].json
    logdir: Path             # LOGDIR

    @property
    def engine(self) -> str:
        return self.resolved.engine.name

    @property
    def log_folder(self) -> Path:
        """LOGDIR/<name>/v<version>: the seeds' folders."""
        return files.run_folder(self.logdir, self.spec.name, self.spec.version)

    def seed_dir(self, seed: int) -> Path:
        return files.seed_folder(self.logdir, self.spec.name, self.spec.version, seed, self.override)

    def identity(self, seed: int) -> dict:
        return checkpoint.identity(self.spec.sha256, self.engine, ENGINE_VERSIONS[self.engine], seed)

    def finished(self, seed: int) -> dict | None:
        """The outcome of `seed` if an earlier run of the same identity finished it."""
        return finished_seed(self.seed_dir(seed) / "seed.json", self.identity(seed))


def plan_run(spec: Spec, out_dir: Path, logdir: Path, seeds=None, engine_name: str | None = None) -> RunPlan:
    resolved = spec.with_overrides(seeds=seeds, engine=engine_name)
    override = resolved.engine.name if resolved.engine.name != spec.engine.name else None
    return RunPlan(spec, resolved, override, files.result_path(out_dir, spec.name, spec.version, override),
                   Path(logdir))


def run_seed(plan: RunPlan, data, seed: int, make_callbacks, resume: dict | None) -> dict:
    """One seed: kept if finished earlier, resumed from `resume` (its loaded checkpoint), or trained
    (with the Keras callbacks `make_callbacks()` returns); its model and seed.json written, its
    checkpoint removed."""
    seed_dir, ident, name = plan.seed_dir(seed), plan.identity(seed), plan.engine
    seed_json, epochs = seed_dir / "seed.json", plan.resolved.training.epochs
    done = plan.finished(seed)
    if done:
        print(f"  seed {seed}: finished earlier, kept ({seed_json}; --restart trains it again)", flush=True)
        checkpoint.discard(seed_dir)
        return done
    on_epoch = None
    if name in checkpoint.RESUMABLE:
        def on_epoch(epochs_done, model, state, secret=None, averages=None):
            checkpoint.save(seed_dir, ident, epochs_done, model.get_weights(), model.optimizer.get_weights(), state,
                            secret, averages)
    elif (seed_dir / checkpoint.FILE).exists():
        print(f"  seed {seed}: engine {name} cannot resume exactly (tf-privacy draws its noise from TensorFlow's "
              f"stateful generator); training it again", flush=True)
        checkpoint.discard(seed_dir)
    if resume:
        print(f"  seed {seed}: resuming after epoch {resume['epoch']}/{epochs} from {seed_dir / checkpoint.FILE}",
              flush=True)
    try:
        outcome, model = train(plan.resolved, data, seed, make_callbacks(), resume=resume, on_epoch=on_epoch)
    except RunCheckFailed as failed:      # a re-run would resume the same checkpoint and fail the same way
        if (seed_dir / checkpoint.FILE).exists():
            raise RunCheckFailed(f"{failed}; its checkpoint {seed_dir / checkpoint.FILE} is kept: "
                                 f"`dprepro run --restart` trains it from scratch") from None
        raise
    model_path = seed_dir / "model.npz"
    outcome["model"] = {"path": str(model_path), "sha256": save_weights(model_path, model.get_weights()),
                        "format": "numpy .npz of the weights in layer order; rebuild: dprepro.training.model.load_model"}
    outcome["identity"] = ident
    files.write_json(seed_json, SeedOutcome.from_json(outcome).to_json())  # kept if a later seed fails
    checkpoint.discard(seed_dir)
    return outcome


def checkpoints(plan: RunPlan, restart: bool) -> dict:
    """{seed: loaded checkpoint or None}, every one read (and a foreign one refused) before any
    training; with `restart`, each seed's checkpoint and seed.json discarded instead."""
    resumes = {}
    for seed in plan.resolved.seeds:
        if restart:
            checkpoint.discard(plan.seed_dir(seed))
            (plan.seed_dir(seed) / "seed.json").unlink(missing_ok=True)
        elif plan.engine in checkpoint.RESUMABLE:
            resumes[seed] = checkpoint.load(plan.seed_dir(seed), plan.identity(seed))
    return resumes


def assemble(plan: RunPlan, data_dir: Path, data, env: dict, epsilon: dict | None, outcomes: list,
             started: str) -> dict:
    """The result file's content: the spec, how and where it ran, the data, the epsilon block, the seeds."""
    resolved = plan.resolved
    result = {
        "result_schema": write.RESULT_SCHEMA,
        "name": plan.spec.name, "version": plan.spec.version,
        "spec_path": plan.spec.path, "spec_sha256": plan.spec.sha256, "spec": plan.spec.to_dict(),
        "run": {"engine": plan.engine, "engine_version": ENGINE_VERSIONS[plan.engine],
                "op_determinism": not resolved.engine.use_xla, "seeds": list(resolved.seeds),
                "command": ["dprepro", *sys.argv[1:]], "started": started,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "git": environment.git_state(),
        "environment": env,
        "data": {"dir": str(data_dir), "files_sha256": data.files,
                 "train_examples": len(data.x_train), "test_examples": len(data.x_test),
                 **({} if data.x_val is None else {"validation_examples": len(data.x_val),
                                                    "validation": "the training file's last examples, never trained on"})},
        "epsilon": epsilon,
        "epsilon_note": None if epsilon else "non-private run: no privacy guarantee, no epsilon",
        "seeds": outcomes,
    }
    for key in ("test_accuracy", "train_accuracy", "wall_seconds"):
        result[key] = write.summary([r[key] for r in outcomes])
    if data.x_val is not None:
        result["validation_accuracy"] = write.summary([r["validation_accuracy"] for r in outcomes])
    return result


def run_spec(spec: Spec, data_dir: Path, out_dir: Path, logdir: Path,
             seeds=None, engine_name: str | None = None, restart: bool = False) -> tuple[dict, Path]:
    """Train every seed of `spec`; write TensorBoard logs and the result file; return both."""
    plan = plan_run(spec, out_dir, logdir, seeds, engine_name)
    s = plan.resolved
    data = load_data(s, data_dir)
    env = environment.this_machine()
    found = env["devices"]
    print(f"dprepro: {describe_devices(found)}", file=sys.stderr if not found["gpus"] else sys.stdout)
    print(f"dprepro: arithmetic path {describe_arithmetic(env['arithmetic'])}", flush=True)
    if s.engine.use_xla:
        print("dprepro: WARNING: engine.use_xla is true: XLA has no deterministic MaxPool gradient, so op "
              "determinism is off and the same seed may not give bit-identical runs", file=sys.stderr)
    epsilon, curve = accounting.epsilon_block(s), accounting.epsilon_curve(s)
    print(f"dprepro: {s.name} v{s.version}, engine {plan.engine}, seeds {list(s.seeds)}, "
          f"{s.training.epochs} epochs of {s.steps_per_epoch} steps, {s.sampling} sampling"
          + (", each step tested and kept or rolled back (DPSUR; its tests composed for every step)" if s.selective else "")
          + (f"\n{describe_epsilon(epsilon)}" if epsilon else ", non-private (no epsilon)"), flush=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    of_record = epsilon and EpsilonBlock.from_json(epsilon).of_record
    with RunLock([plan.result_path.parent, plan.log_folder], f"{s.name} v{s.version}"):
        resumes = checkpoints(plan, restart)
        outcomes = []
        for seed in s.seeds:
            def make_callbacks(seed=seed):
                return [EpochLine(f"seed {seed}", s.training.epochs, curve, of_record),
                        TensorBoardLog(plan.seed_dir(seed), s, seed, plan.engine,
                                       {**curve, "of_record": curve[of_record]} if of_record else {})]
            outcomes.append(run_seed(plan, data, seed, make_callbacks, resumes.get(seed)))
        if s.private:       # the block of record: from what the seeds' ledgers say ran
            ran = ledger.agreed({o["seed"]: o["ledger"] for o in outcomes})
            epsilon = accounting.epsilon_block(s, ledger.schedule(ran, s))
        result = assemble(plan, data_dir, data, env, epsilon, outcomes, started)
        # the one writer: the typed record, checked as every reader checks it
        files.write_json(plan.result_path, Result.from_json(result, plan.result_path).to_json())
    return result, plan.result_path


def summary(finished: list) -> str:
    """The table `dprepro run` prints at the end: one line per (result, path)."""
    lines = ["\nsummary", f"{'experiment':<28} {'engine':<9} {'seeds':>5} {'test accuracy':>22} {'eps rdp':>9} "
                          f"{'eps of record (holds)':>38}  result"]
    for result, path in finished:
        acc, eps = result["test_accuracy"], EpsilonBlock.from_json(result["epsilon"])
        rdp, record = "-", "-"
        if eps:
            rdp = f"{eps.value('rdp'):.4f}" + ("" if eps.accountants["rdp"]["holds_for_this_run"] else "*")
            record = f"{eps.value_of_record:.4f} ({eps.of_record})" if eps.of_record else "none holds"
        lines.append(f"{result['name'] + ' v' + str(result['version']):<28} {result['run']['engine']:<9} "
                     f"{acc['n']:>5} {acc['mean']:>12.4f} ± {acc['std']:.4f} {rdp:>9} {record:>38}  {path}")
    if any(r["epsilon"] and not r["epsilon"]["accountants"]["rdp"]["holds_for_this_run"] for r, _ in finished):
        lines.append("* the tutorial's eps (rdp) assumes Poisson sampling (and sensitivity l2_norm_clip); it does not "
                     "hold for this run: see its label in the result")
    return "\n".join(lines)

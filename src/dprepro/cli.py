"""The `dprepro` command: a thin layer over the library. Bad input: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from pathlib import Path

from dprepro.audit import PLANTED_BUGS
from dprepro.errors import InputError, RunCheckFailed
from dprepro.files import run_folder, sweep_folder, write_text
from dprepro.lock import Busy, RunLock
from dprepro.spec import ENGINES, load_spec
from dprepro.tf_startup import startup_noise_filtered

NEEDS_TENSORFLOW = {"run", "audit", "sweep", "bench", "report", "epsilon", "calibrate", "evaluate", "select"}


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's info and warning chatter out
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. vectorized_map's while_loop notes
    args = parser().parse_args(argv)
    try:
        with contextlib.ExitStack() as held:
            if args.command_name == "run":   # the folders are ours before TensorFlow takes seconds to load
                held.enter_context(lock_run_folders(args))
            if hasattr(args, "precheck"):     # bad input is refused before TensorFlow takes seconds to load
                args.precheck(args)
            if args.command_name in NEEDS_TENSORFLOW:
                with startup_noise_filtered():
                    import tensorflow  # noqa: F401  (loaded once here, without its harmless start-up errors)
            return args.command(args) or 0
    except (InputError, Busy, RunCheckFailed) as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except OSError as e:      # e.g. an unwritable or full output folder: nothing partial is left
        where = f"{e.filename}: " if e.filename else ""
        print(f"{where}cannot write: {e.strerror or e}; finished seeds are kept in their seed.json files",
              file=sys.stderr)
        return InputError.exit_code
    except KeyboardInterrupt:
        print("dprepro: interrupted; finished seeds are kept in their seed.json files", file=sys.stderr)
        return 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dprepro", description="Reproduce DP-SGD on MNIST from versioned specs.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    c = sub.add_parser("validate", help="check specs without running them")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.set_defaults(command=cmd_validate, command_name="validate")

    c = sub.add_parser("run", help="train every seed of each spec; write logs and result.json")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("--seeds", type=int, nargs="+", help="override the spec's seeds")
    c.add_argument("--engine", choices=ENGINES, help="override the spec's engine")
    c.add_argument("--out", type=Path, default=Path("runs"),
                   help="where OUT/<name>/v<version>/result.json goes (default: runs)")
    c.add_argument("--logdir", type=Path, default=Path("runs"),
                   help="TensorBoard logs: LOGDIR/<name>/v<version>/seed-<k>/ (default: runs)")
    c.add_argument("--data-dir", help="MNIST folder (default: $DPREPRO_DATA_DIR, else data/mnist)")
    c.add_argument("--compare", type=Path, metavar="PINNED_DIR",
                   help="then compare each result with PINNED_DIR/<name>/v<version>/; exit 1 on any FAIL")
    c.add_argument("--restart", action="store_true",
                   help="discard checkpoints and finished seeds of an earlier, interrupted run (default: resume)")
    c.set_defaults(command=cmd_run, command_name="run")

    c = sub.add_parser("evaluate", help="re-evaluate each seed's saved model of RESULT on the test set; "
                                        "exit 1 unless all match the recorded numbers exactly")
    c.add_argument("result", type=Path, metavar="RESULT")
    c.add_argument("--data-dir", help="MNIST folder (default: $DPREPRO_DATA_DIR, else data/mnist)")
    c.set_defaults(command=cmd_evaluate, command_name="evaluate")

    c = sub.add_parser("audit", help="train once with canaries and measure an epsilon lower bound beside the "
                                     "accountant's upper bound; exit 1 on a privacy bug (or no power)")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--seeds", type=int, nargs="+", help="seeds to audit (default: the spec's first)")
    c.add_argument("--canaries", type=int, default=None, metavar="M",
                   help="number of canaries (default 1000; with --white-box 5000, at most the model's parameters)")
    c.add_argument("--canary-kind", choices=("synthetic", "mislabelled"), default="synthetic",
                   help="random binary images with random labels (default), or test images with a wrong label")
    c.add_argument("--confidence", type=float, default=0.95, help="confidence of the lower bound (default 0.95)")
    c.add_argument("--power", action="store_true",
                   help="also audit a twin trained without noise and clipping: its bound must be clearly higher")
    c.add_argument("--plant-bug", nargs="?", const=True, default=False,
                   choices=PLANTED_BUGS, metavar="BUG",
                   help="train a broken DP-SGD but judge by the spec's claim: the bug check must fire. Alone: "
                        f"without noise and clipping; BUG (engine fast): {', '.join(PLANTED_BUGS)}")
    c.add_argument("--white-box", action="store_true",
                   help="gradient canaries in the fast engine's step, scored from every step's noisy sum less the "
                        "training examples' clipped sum")
    c.add_argument("--held-out", type=int, default=10_000, metavar="N",
                   help="membership inference: N images of the training file, drawn at random per seed, are kept "
                        "out of training as non-members of the same distribution; the claim accounts the n trained (default 10000; "
                        "0: non-members are the test images)")
    c.add_argument("--out", type=Path, default=Path("runs"), help="audit.json (audit-whitebox.json with --white-box) goes to "
                                                                  "OUT/<name>/v<version>/ (default: runs)")
    c.add_argument("--logdir", type=Path, default=Path("runs"),
                   help="TensorBoard scalars: LOGDIR/<name>/v<version>/audit/ (audit-whitebox/ with "
                        "--white-box; default: runs)")
    c.add_argument("--data-dir", help="MNIST folder (default: $DPREPRO_DATA_DIR, else data/mnist)")
    c.set_defaults(command=cmd_audit, command_name="audit", precheck=precheck_audit)

    c = sub.add_parser("sweep", help="run every cell of a sweep file on Ray (locally or on a cluster); write "
                                     "each cell's result.json and the frontier table and figure")
    c.add_argument("sweep", metavar="SWEEP", help="a sweep file, e.g. experiments/sweeps/frontier.yaml")
    c.add_argument("--address", default=None,
                   help="Ray cluster to submit to: auto, HOST:PORT or ray://HOST:PORT (default: start Ray here)")
    c.add_argument("--cpus-per-run", type=float, default=2, help="CPUs Ray reserves per task (default 2)")
    c.add_argument("--gpus-per-run", type=float, default=0, help="GPUs (or a fraction) per task (default 0)")
    c.add_argument("--out", type=Path, default=Path("runs"),
                   help="OUT/sweeps/<name>/v<version>/: cell specs, results, frontier (default: runs)")
    c.add_argument("--logdir", type=Path, default=Path("runs"),
                   help="TensorBoard logs: LOGDIR/sweeps/<name>/v<version>/<cell>/ (default: runs)")
    c.add_argument("--data-dir", help="MNIST folder (default: $DPREPRO_DATA_DIR, else data/mnist)")
    c.set_defaults(command=cmd_sweep, command_name="sweep", precheck=precheck_sweep)

    c = sub.add_parser("select", help="choose from a finished tuning sweep: per target epsilon, the cell with the "
                                      "best validation accuracy; write selection.json (and the tuned specs)")
    c.add_argument("sweep", metavar="SWEEP", help="a sweep file whose base spec holds validation examples out")
    c.add_argument("--out", type=Path, default=Path("runs"), help="where the sweep wrote its results (default: runs)")
    c.add_argument("--write-specs", type=Path, metavar="DIR",
                   help="also write each choice as DIR/<sweep>-eps<target>.yaml, an ordinary spec to pin")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the tuned specs' seeds (default 0 1 2)")
    c.add_argument("--record", type=Path, metavar="DIR",
                   help="also write selection.json to DIR/sweeps/<name>/v<version>/ (the search's record, e.g. results)")
    c.add_argument("--refit", action="store_true",
                   help="also the chosen schedules trained on the whole training file (validation examples back in, "
                        "noise calibrated again): recorded in selection.json, written as <sweep>-refit-eps<target>.yaml")
    c.set_defaults(command=cmd_select, command_name="select", precheck=precheck_select)

    c = sub.add_parser("compare", help="a fresh result.json against a pinned one; exit 1 on any FAIL")
    c.add_argument("fresh", type=Path, metavar="FRESH")
    c.add_argument("pinned", type=Path, metavar="PINNED")
    c.set_defaults(command=cmd_compare, command_name="compare")

    c = sub.add_parser("bench", help="time the engines and a plain-Keras anchor side by side; write results/bench/")
    c.add_argument("spec", nargs="?", default="experiments/tutorial-3ep.yaml", metavar="SPEC",
                   help="model and batch size to time (default: experiments/tutorial-3ep.yaml)")
    c.add_argument("--engines", nargs="+", metavar="ROW", default=None,
                   help="rows to time, of: anchor none fast fast-poisson vectorized vectorized-poisson tutorial "
                        "(default: all but vectorized-poisson)")
    c.add_argument("--batch-size", type=int, help="time at this batch size instead of the spec's")
    c.add_argument("--steps", type=int, default=20, help="timed steps per repetition (default 20)")
    c.add_argument("--repeats", type=int, default=5, help="repetitions, rows alternating (default 5)")
    c.add_argument("--tutorial-steps", type=int, default=2, help="timed tutorial steps per repetition")
    c.add_argument("--no-epoch", action="store_true", help="skip the real-epoch timing")
    c.add_argument("--no-breakdown", action="store_true", help="skip the breakdown of the fast step")
    c.add_argument("--paths", action="store_true",
                   help="run on each arithmetic path (default, oneDNN held to AVX2, oneDNN off) and print one table")
    c.add_argument("--label", default=None, help="file name in OUT (default: the host name)")
    c.add_argument("--out", type=Path, default=Path("results/bench"), help="default: results/bench")
    c.add_argument("--data-dir", help="MNIST folder (default: $DPREPRO_DATA_DIR, else data/mnist)")
    c.set_defaults(command=cmd_bench, command_name="bench")

    c = sub.add_parser("report", help="regenerate RESULTS/README.md and RESULTS/figures/ from pinned results")
    c.add_argument("--results", type=Path, default=Path("results"), help="default: results")
    c.set_defaults(command=cmd_report, command_name="report")

    c = sub.add_parser("epsilon", help="epsilon of each spec under every accountant, without training")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--epochs-range", action="store_true", help="the curve: epsilon after each epoch")
    c.set_defaults(command=cmd_epsilon, command_name="epsilon")

    c = sub.add_parser("calibrate", help="noise multiplier that reaches a target epsilon")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--target-epsilon", type=float, required=True)
    c.add_argument("--accountant", default="rdp", choices=("rdp_legacy", "rdp", "pld"))
    c.set_defaults(command=cmd_calibrate, command_name="calibrate")
    return p


def load_all(paths) -> list:
    """Validate every spec before doing anything with any of them."""
    return [load_spec(p) for p in paths]


def cmd_validate(args) -> None:
    for spec in load_all(args.specs):
        print(f"{spec.path}: ok ({spec.name} v{spec.version}, sha256 {spec.sha256[:12]})")


def lock_run_folders(args) -> RunLock:
    """The lock of every folder the run will write: OUT/<name>/v<version> and LOGDIR/<name>/v<version>."""
    specs = load_all(args.specs)
    for spec in specs:  # the overrides must make a valid spec too, before anything trains or is written
        spec.with_overrides(seeds=args.seeds, engine=args.engine)
    folders = [run_folder(root, spec.name, spec.version) for spec in specs for root in (args.out, args.logdir)]
    return RunLock(folders, ", ".join(f"{s.name} v{s.version}" for s in specs))


def cmd_run(args) -> int:
    specs = load_all(args.specs)
    for spec in specs:  # the overrides must make a valid spec too, before anything trains
        spec.with_overrides(seeds=args.seeds, engine=args.engine)
    from dprepro import data  # TensorFlow loads here, not for validate/epsilon
    from dprepro.training import pipeline

    folder = data.data_dir(args.data_dir)
    finished = []
    for spec in specs:
        result, path = pipeline.run_spec(spec, folder, args.out, args.logdir, args.seeds, args.engine, args.restart)
        finished.append((result, path))
    print(pipeline.summary(finished))
    if args.compare is None:
        return 0
    from dprepro.records import compare

    text, passed = compare.against_pins(finished, args.out, args.compare)
    print(text)
    return 0 if passed else 1


def precheck_audit(args) -> None:
    spec = load_spec(args.spec)
    spec.with_overrides(seeds=args.seeds)
    if not 0 < args.confidence < 1:
        raise InputError(f"--confidence: must be between 0 and 1, got {args.confidence}")
    if args.canaries is None:
        args.canaries = 5000 if args.white_box else 1000
    if args.canaries < 2:
        raise InputError(f"--canaries: need at least 2, got {args.canaries}")
    if args.plant_bug and not spec.private:
        raise InputError(f"{spec.path}: privacy.enabled: --plant-bug needs a private spec (a claim to break)")
    if args.power and not spec.private:
        print(f"dprepro audit: {spec.name} is non-private: it is itself the no-noise case; --power ignored")
        args.power = False
    args.spec_loaded = spec


def cmd_audit(args) -> int:
    spec = args.spec_loaded
    from dprepro import data
    from dprepro.audit import audit_run

    audit, path = audit_run.run_audit(spec, data.data_dir(args.data_dir), args.out, args.logdir, args.seeds,
                                      args.canaries, args.confidence, args.power, args.plant_bug,
                                      args.canary_kind, args.white_box, args.held_out)
    print(audit_run.screen(audit, path))
    return 1 if audit_run.failed(audit) else 0


def precheck_sweep(args) -> None:
    from dprepro.sweep.sweep_spec import load_sweep

    if not args.cpus_per_run > 0 or args.gpus_per_run < 0:
        raise InputError(f"--cpus-per-run / --gpus-per-run: need a positive CPU share and a GPU share >= 0, "
                         f"got {args.cpus_per_run} / {args.gpus_per_run}")
    args.sweep_loaded = load_sweep(args.sweep, written=args.out)     # a rerun reuses the cells' checked noise


def cmd_sweep(args) -> int:
    sweep = args.sweep_loaded
    from dprepro import data
    from dprepro.sweep import ray_runner

    from dprepro.records import frontier

    root = sweep_folder(args.out, sweep.name, sweep.version)
    with RunLock([root, sweep_folder(args.logdir, sweep.name, sweep.version)], f"sweep {sweep.name}"):
        summary = ray_runner.run_sweep(sweep, args.out, args.logdir, data.data_dir(args.data_dir), args.address,
                                       args.cpus_per_run, args.gpus_per_run, args.data_dir is not None)
        rows, table = frontier.write_frontier(root, sweep.name, sweep.version) if summary["finished"] else ([], None)
    print(f"\nsweep {sweep.name} v{sweep.version}: {len(summary['finished'])} of {len(sweep.cells)} cells finished, "
          f"{summary['tasks']} task(s) run, {len(summary['failures'])} failed, "
          f"{ray_runner.clock(summary['wall_seconds'])} wall time")
    if rows:
        print(frontier.table(rows))
        print(f"written: {table}, {root / 'frontier.png'}, {root / 'frontier.json'}")
    for f in summary["failures"]:
        print(f"FAILED: {f['cell']} seed {f['seed']}: {f['error']}", file=sys.stderr)
    return 1 if summary["failures"] else 0


def precheck_select(args) -> None:
    from dprepro.sweep.sweep_spec import load_sweep

    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise InputError(f"--seeds: distinct integers >= 0, got {' '.join(map(str, args.seeds))}")
    args.sweep_loaded = load_sweep(args.sweep, written=args.out)     # the sweep's cells' checked noise


def cmd_select(args) -> None:
    from dprepro.sweep import selection

    sweep = args.sweep_loaded
    choices = selection.select(sweep, args.out, refits=args.refit)
    cells = {c.name: c for c in sweep.cells}
    specs = {}
    if args.write_specs:       # made before anything is written: a refit that cannot be made writes nothing
        for choice in choices:
            chosen = cells[choice["chosen"]].spec
            specs[args.write_specs / f"{selection.tuned_name(sweep, choice)}.yaml"] = selection.tuned_spec(
                sweep, choice, chosen, args.seeds)
            if args.refit:
                specs[args.write_specs / f"{choice['refit']['name']}.yaml"] = selection.tuned_spec(
                    sweep, choice, chosen, args.seeds, refitted=selection.refit(
                    choice, chosen, choice['refit']['noise_multiplier']))
    written = [selection.write_selection(sweep, out, choices) for out in (args.out, args.record) if out]
    for path, text in specs.items():
        write_text(path, text)
        written.append(path)
    print(selection.table(choices))
    print("eps of record: the chosen run alone (excludes the search); eps with search: every trial and one run of "
          "the chosen schedule composed")
    print("written: " + ", ".join(map(str, written)))


def cmd_bench(args) -> None:
    from dprepro import bench, data

    spec, ROWS = load_spec(args.spec), bench.ROWS
    for flag in ("steps", "repeats", "tutorial_steps"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')}: must be >= 1, got {getattr(args, flag)}")
    if args.batch_size is not None and not 1 <= args.batch_size <= spec.train_examples:
        raise InputError(f"--batch-size: must be from 1 to {spec.train_examples} (the training set), got {args.batch_size}")
    spec = bench.with_batch_size(spec, args.batch_size)
    rows = args.engines or list(bench.DEFAULT_ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown or len(set(rows)) != len(rows):
        raise InputError(f"--engines: each of {' '.join(ROWS)} at most once, got {' '.join(rows)}")
    import socket

    from dprepro.files import write_json

    label = args.label or socket.gethostname()
    if args.paths:
        argv = [args.spec, "--engines", *rows, "--steps", str(args.steps), "--repeats", str(args.repeats),
                "--tutorial-steps", str(args.tutorial_steps)] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
        argv += ["--no-epoch"] * args.no_epoch + ["--no-breakdown"] * args.no_breakdown
        argv += ["--data-dir", args.data_dir] if args.data_dir else []
        combined = bench.bench_paths(argv, args.out, label)
        path = args.out / f"{label}-paths.json"
        write_json(path, combined)
        print(bench.format_paths_table(combined))
        print(f"wrote {path}")
        return
    record = bench.bench(spec, data.data_dir(args.data_dir), args.steps, args.repeats,
                         args.tutorial_steps, epoch=not args.no_epoch, engines=rows,
                         breakdown=not args.no_breakdown)
    path = args.out / f"{label}.json"
    write_json(path, record)
    print(bench.format_table(record))
    print(f"wrote {path}")


def cmd_report(args) -> None:
    from dprepro.records import report

    try:
        path = report.write_report(args.results)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    print(f"wrote {path} and {args.results / 'figures'}/")


def cmd_compare(args) -> int:
    from dprepro.records import compare

    text, passed = compare.compare_files(args.fresh, args.pinned)
    print(text)
    return 0 if passed else 1


def cmd_evaluate(args) -> int:
    from dprepro import data
    from dprepro.training import evaluate

    text, exact = evaluate.evaluate_result(args.result, data.data_dir(args.data_dir))
    print(text)
    return 0 if exact else 1


def cmd_epsilon(args) -> None:
    from dprepro import epsilon_table

    rows = [epsilon_table.row(spec, args.epochs_range) for spec in load_all(args.specs)]
    if args.json:
        from dprepro.files import finite_json

        print(json.dumps(finite_json(rows), indent=2))
        return
    for row in rows:
        print(epsilon_table.text(row))


def cmd_calibrate(args) -> None:
    from dprepro import accounting

    spec = load_spec(args.spec)
    if not spec.private:
        raise InputError(f"{spec.path}: privacy.enabled: a non-private spec has no noise to calibrate")
    if not args.target_epsilon > 0 or not math.isfinite(args.target_epsilon):
        raise InputError(f"--target-epsilon: must be positive, got {args.target_epsilon}")
    try:
        sigma = accounting.calibrate(spec, args.target_epsilon, args.accountant)
    except ValueError as e:
        raise InputError(f"--target-epsilon: {e}") from None
    doubled = " (twice the noise of one example per microbatch: sensitivity 2 x l2_norm_clip)" \
        if spec.microbatch_size > 1 else ""
    print(f"{spec.path}: noise_multiplier {sigma:.6f} reaches epsilon {args.target_epsilon:g} "
          f"({args.accountant}) at delta {spec.privacy.delta:g} over {spec.training.epochs} epochs, "
          f"{spec.microbatch_size} example(s) per microbatch{doubled}")


if __name__ == "__main__":
    sys.exit(main())

"""`dprepro sweep` and `select`: a sweep's cells on Ray, and the choice from a tuning sweep."""

from __future__ import annotations

import sys
from pathlib import Path

from dprepro.errors import InputError
from dprepro.files import sweep_folder, write_bytes, write_text
from dprepro.lock import RunLock


def add_sweep(sub) -> None:
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


def precheck_sweep(args) -> None:
    from dprepro.sweep.sweep_spec import load_sweep

    if not args.cpus_per_run > 0 or args.gpus_per_run < 0:
        raise InputError(f"--cpus-per-run / --gpus-per-run: need a positive CPU share and a GPU share >= 0, "
                         f"got {args.cpus_per_run} / {args.gpus_per_run}")
    args.sweep_loaded = load_sweep(args.sweep, written=args.out,     # a rerun reuses the cells' checked noise
                                   progress=lambda line: print(f"sweep: {line}", flush=True))


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


def add_select(sub) -> None:
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


def precheck_select(args) -> None:
    from dprepro.sweep.sweep_spec import load_sweep

    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise InputError(f"--seeds: distinct integers >= 0, got {' '.join(map(str, args.seeds))}")
    args.sweep_loaded = load_sweep(args.sweep, written=args.out,     # the sweep's cells' checked noise
                                   progress=lambda line: print(f"select: {line}", flush=True))


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
    if args.record:             # the grid's table beside the choice: what `dprepro frontier` reads the trials from
        for name in ("frontier.json", "frontier.md", "frontier.png"):
            source = sweep_folder(args.out, sweep.name, sweep.version) / name
            if source.is_file():
                target = sweep_folder(args.record, sweep.name, sweep.version) / name
                write_bytes(target, source.read_bytes())
                written.append(target)
    for path, text in specs.items():
        write_text(path, text)
        written.append(path)
    print(selection.table(choices))
    print("eps of record: the chosen run alone (excludes the search); eps with search: every trial and one run of "
          "the chosen schedule composed")
    print("written: " + ", ".join(map(str, written)))

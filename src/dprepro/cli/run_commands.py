"""`dprepro run`, `evaluate`, `compare` and `report`: training the specs and checking and reporting
the results."""

from __future__ import annotations

import sys
from pathlib import Path

from dprepro.cli.spec_commands import load_all
from dprepro.errors import InputError
from dprepro.files import run_folder
from dprepro.lock import RunLock
from dprepro.spec import ENGINES


def add_run(sub) -> None:
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
        if args.seeds and spec.private and spec.privacy.randomness == "secret":
            print(f"dprepro: {spec.path}: privacy.randomness secret: --seeds {' '.join(map(str, args.seeds))} "
                  f"chooses the seed folders and the weight initialisation only; sampling and noise come from a "
                  f"new secret key per seed whatever the seed", file=sys.stderr)
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


def add_evaluate(sub) -> None:
    c = sub.add_parser("evaluate", help="re-evaluate each seed's saved model of RESULT on the test set; "
                                        "exit 1 unless all match the recorded numbers exactly")
    c.add_argument("result", type=Path, metavar="RESULT")
    c.add_argument("--data-dir", help="MNIST folder (default: $DPREPRO_DATA_DIR, else data/mnist)")
    c.set_defaults(command=cmd_evaluate, command_name="evaluate")


def cmd_evaluate(args) -> int:
    from dprepro import data
    from dprepro.training import evaluate

    text, exact = evaluate.evaluate_result(args.result, data.data_dir(args.data_dir))
    print(text)
    return 0 if exact else 1


def add_compare(sub) -> None:
    c = sub.add_parser("compare", help="a fresh result.json against a pinned one; exit 1 on any FAIL")
    c.add_argument("fresh", type=Path, metavar="FRESH")
    c.add_argument("pinned", type=Path, metavar="PINNED")
    c.set_defaults(command=cmd_compare, command_name="compare")


def cmd_compare(args) -> int:
    from dprepro.records import compare

    text, passed = compare.compare_files(args.fresh, args.pinned)
    print(text)
    return 0 if passed else 1


def add_report(sub) -> None:
    c = sub.add_parser("report", help="regenerate RESULTS/README.md and RESULTS/figures/ from pinned results")
    c.add_argument("--results", type=Path, default=Path("results"), help="default: results")
    c.set_defaults(command=cmd_report, command_name="report")


def cmd_report(args) -> None:
    from dprepro.records import report

    try:
        path = report.write_report(args.results)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    print(f"wrote {path} and {args.results / 'figures'}/")

"""`dprepro bench`: the engines and a plain-Keras anchor timed side by side."""

from __future__ import annotations

from pathlib import Path

from dprepro.errors import InputError
from dprepro.spec import load_spec


def add_bench(sub) -> None:
    c = sub.add_parser("bench", help="time the engines and a plain-Keras anchor side by side; write results/bench/")
    c.add_argument("spec", nargs="?", default="experiments/tutorial-3ep.yaml", metavar="SPEC",
                   help="model and batch size to time (default: experiments/tutorial-3ep.yaml)")
    c.add_argument("--engines", nargs="+", metavar="ROW", default=None,
                   help="rows to time, of: anchor none fast fast-ledger fast-secret fast-poisson vectorized "
                        "vectorized-poisson tutorial (default: all but fast-ledger, fast-secret and vectorized-poisson)")
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

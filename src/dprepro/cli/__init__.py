"""The `dprepro` command: a thin layer over the library, one module per group of commands and one
small parser function per command. Bad input: one line on stderr, exit 2; a run that did not do what
its spec says: one line, exit 1."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from dprepro.cli import audit_command, bench_command, frontier_command, run_commands, spec_commands, sweep_commands
from dprepro.errors import InputError, RunCheckFailed
from dprepro.files import WriteFailed
from dprepro.lock import Busy
from dprepro.tf_startup import startup_noise_filtered

NEEDS_TENSORFLOW = {"run", "audit", "sweep", "bench", "report", "epsilon", "calibrate", "evaluate", "select"}
# The commands in the order `dprepro --help` lists them.
COMMANDS = (spec_commands.add_validate, run_commands.add_run, run_commands.add_evaluate, audit_command.add_audit,
            sweep_commands.add_sweep, sweep_commands.add_select, frontier_command.add_frontier,
            run_commands.add_compare, bench_command.add_bench,
            run_commands.add_report, spec_commands.add_epsilon, spec_commands.add_calibrate)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's info and warning chatter out
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. vectorized_map's while_loop notes
    args = parser().parse_args(argv)
    try:
        with contextlib.ExitStack() as held:
            if args.command_name == "run":   # the folders are ours before TensorFlow takes seconds to load
                held.enter_context(run_commands.lock_run_folders(args))
            if hasattr(args, "precheck"):     # bad input is refused before TensorFlow takes seconds to load
                args.precheck(args)
            if args.command_name in NEEDS_TENSORFLOW:
                with startup_noise_filtered():
                    import tensorflow  # noqa: F401  (loaded once here, without its harmless start-up errors)
            return args.command(args) or 0
    except (InputError, Busy, RunCheckFailed) as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except WriteFailed as e:  # an unwritable or full output folder: nothing partial is left
        print(f"{e.filename}: cannot write: {e.strerror}; finished seeds are kept in their seed.json files",
              file=sys.stderr)
        return InputError.exit_code
    except OSError as e:      # anything else the system refused (a read, a device): what and where, no claim
        where = f"{e.filename}: " if e.filename else ""
        print(f"{where}{e.strerror or e} ({type(e).__name__}); nothing was written by this failure",
              file=sys.stderr)
        return InputError.exit_code
    except KeyboardInterrupt:
        print("dprepro: interrupted; finished seeds are kept in their seed.json files", file=sys.stderr)
        return 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dprepro", description="Reproduce DP-SGD on MNIST from versioned specs.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p

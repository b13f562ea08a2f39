"""`dprepro validate`, `epsilon` and `calibrate`: what a spec says, without training."""

from __future__ import annotations

import json
import math

from dprepro.errors import InputError
from dprepro.spec import CALIBRATABLE, load_spec


def load_all(paths) -> list:
    """Validate every spec before doing anything with any of them."""
    return [load_spec(p) for p in paths]


def add_validate(sub) -> None:
    c = sub.add_parser("validate", help="check specs without running them")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.set_defaults(command=cmd_validate, command_name="validate")


def cmd_validate(args) -> None:
    for spec in load_all(args.specs):
        print(f"{spec.path}: ok ({spec.name} v{spec.version}, sha256 {spec.sha256[:12]})")


def add_epsilon(sub) -> None:
    c = sub.add_parser("epsilon", help="epsilon of each spec under every accountant, without training")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--epochs-range", action="store_true", help="the curve: epsilon after each epoch")
    c.set_defaults(command=cmd_epsilon, command_name="epsilon")


def cmd_epsilon(args) -> None:
    from dprepro import epsilon_table

    rows = [epsilon_table.row(spec, args.epochs_range) for spec in load_all(args.specs)]
    if args.json:
        from dprepro.files import finite_json

        print(json.dumps(finite_json(rows), indent=2))
        return
    for row in rows:
        print(epsilon_table.text(row))


def add_calibrate(sub) -> None:
    c = sub.add_parser("calibrate", help="noise multiplier that reaches a target epsilon")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--target-epsilon", type=float, required=True)
    c.add_argument("--accountant", default="rdp", choices=CALIBRATABLE)
    c.add_argument("--below-lower-bound", action="store_true",
                   help="instead: the noise below which a shuffled spec provably misses the target (its lower "
                        "bound, Chua et al. 2024, exceeds it), whatever an accountant prints")
    c.set_defaults(command=cmd_calibrate, command_name="calibrate")


def cmd_calibrate(args) -> None:
    from dprepro import accounting, calibration

    spec = load_spec(args.spec)
    if not spec.private:
        raise InputError(f"{spec.path}: privacy.enabled: a non-private spec has no noise to calibrate")
    if not args.target_epsilon > 0 or not math.isfinite(args.target_epsilon):
        raise InputError(f"--target-epsilon: must be positive, got {args.target_epsilon}")
    if args.below_lower_bound:
        if spec.sampling != "shuffle":
            raise InputError(f"{spec.path}: data.sampling: {spec.sampling}: --below-lower-bound is for shuffled "
                             f"batches (a Poisson spec's interval is the PLD rounded down and up: dprepro epsilon)")
        try:
            sigma = calibration.lower_bound_noise(spec, args.target_epsilon)
        except ValueError as e:
            raise InputError(f"--target-epsilon: {e}") from None
        print(f"{spec.path}: below noise_multiplier {sigma:.4f} this spec provably misses epsilon "
              f"{args.target_epsilon:g} at delta {spec.privacy.delta:g} (its shuffled lower bound, Chua et al. 2024, "
              f"zero-out adjacency, exceeds it over {spec.training.epochs} epochs, {spec.microbatch_size} example(s) "
              f"per microbatch); at or above it the target is not disproved, nor proved: `dprepro calibrate` without "
              f"--below-lower-bound gives the noise that proves it under Poisson sampling")
        return
    try:
        sigma = calibration.calibrate(spec, args.target_epsilon, args.accountant)
    except ValueError as e:
        raise InputError(f"--target-epsilon: {e}") from None
    doubled = " (twice the noise of one example per microbatch: sensitivity 2 x l2_norm_clip)" \
        if accounting.microbatch_sensitivity(spec.microbatch_size) == 2 else ""
    print(f"{spec.path}: noise_multiplier {sigma:.6f} reaches epsilon {args.target_epsilon:g} "
          f"({args.accountant}) at delta {spec.privacy.delta:g} over {spec.training.epochs} epochs, "
          f"{spec.microbatch_size} example(s) per microbatch{doubled}")

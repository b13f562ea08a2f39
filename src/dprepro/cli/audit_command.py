"""`dprepro audit`: a spec trained with canaries, its epsilon lower bound beside the accountant's."""

from __future__ import annotations

from pathlib import Path

from dprepro.audit import PLANTED_BUGS, PlantedBug
from dprepro.errors import InputError
from dprepro.spec import load_spec


def add_audit(sub) -> None:
    c = sub.add_parser("audit", help="train once with canaries and measure an epsilon lower bound beside the "
                                     "accountant's upper bound; exit 1 on a privacy bug (or no power)",
                       description="What each audit can catch (docs/audits.md, \"What each audit can and cannot "
                                   "catch\"). Black box (default): whatever reaches the final model (missing noise "
                                   "or clipping show only when large). White box (--white-box, Poisson specs, engine "
                                   "fast): the noise scale, the clipping applied to canaries and the sampling rate of "
                                   "every step; its bound does not depend on the data or the model (it scores the "
                                   "noise plus the canaries), so it cannot see a wrong per-example norm of a real "
                                   "example: the unit tests against TensorFlow's per-example gradients do.")
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
                        "training examples' clipped sum (Poisson specs only: its canaries are Poisson-sampled)")
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

    bug = None if not args.plant_bug else \
        PlantedBug.NOISE_AND_CLIP_OFF if args.plant_bug is True else PlantedBug(args.plant_bug)
    config = audit_run.AuditConfig(
        seeds=tuple(args.seeds) if args.seeds else None, canaries=args.canaries, confidence=args.confidence,
        power=args.power, bug=bug, bug_as_twin=args.plant_bug is True and not args.white_box,
        kind=args.canary_kind, white_box=args.white_box, held_out=args.held_out)
    audit, path = audit_run.run_audit(spec, data.data_dir(args.data_dir), args.out, args.logdir, config)
    print(audit_run.screen(audit, path))
    return 1 if audit_run.failed(audit) else 0

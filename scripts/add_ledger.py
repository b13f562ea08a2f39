"""Give every pinned result the privacy ledger (issue 32), checking every number it touches.

The pinned seeds ran before the engine kept a ledger, so what their steps used was not recorded. For
each result.json under RESULTS this script
1. builds the ledger the spec plans (ledger.planned) and requires each seed's recorded step count to
   be its step count;
2. computes the epsilon block from that ledger (accounting.epsilon_block(spec, ledger.schedule(...)))
   and requires every accountant's value, verdict and every under_published_conventions value to be
   the pin's (float rounding only, 1e-9 relative, as relabel_epsilon.py): otherwise it stops, having
   written nothing for that file;
3. with `--fresh DIR` (results of fresh runs of the same specs, `dprepro run ... --out DIR`): requires
   the ledger each fresh seed's steps recorded to equal the reconstructed one, and the fresh epsilon
   block (computed from the fresh ledgers) to give the pinned values;
4. writes each seed's `ledger`, a `ledger_source` saying how it was obtained and what checked it, and
   the block's `computed_from`, atomically. Run twice, it changes nothing.

    .venv/bin/python scripts/add_ledger.py results [--fresh runs/ledger-check]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dprepro import accounting, files, ledger
from dprepro.records.result import as_float
from dprepro.records.read import load_result
from dprepro.records.result import Result

RECONSTRUCTED = ("reconstructed from the spec's plan by scripts/add_ledger.py: this seed was pinned before the "
                 "engine recorded what its steps used; the epsilon block recomputed from it equals the pinned one")
CHECKED_FRESH = "; a fresh run of the spec ({}) recorded this same ledger for every seed"
COMPUTED_FROM = "the spec's plan (pinned before the ledger); scripts/add_ledger.py recomputed it from the ledger"


def same(a, b) -> bool:
    a, b = as_float(a), as_float(b)
    return a == b or math.isclose(a, b, rel_tol=1e-9)


def check_block(path: Path, pinned: dict, fresh: dict, what: str) -> None:
    """Every value and verdict of `fresh` is the pin's, or exit naming the file and the value."""
    for name, value in pinned["accountants"].items():
        new = fresh["accountants"].get(name)
        if new is None or not same(value["epsilon"], new["epsilon"]):
            sys.exit(f"{path}: epsilon {name}: pinned {value['epsilon']!r}, from {what} "
                     f"{new and new['epsilon']!r}; nothing written")
        if "holds_for_this_run" in value and new["holds_for_this_run"] != value["holds_for_this_run"]:   # (pre-0.4 pins have none)
            sys.exit(f"{path}: epsilon {name}: the verdict from {what} differs; nothing written")
    # a block pinned before an accountant existed (rdp_once_per_epoch) lacks it: the pin keeps its values
    for quantity, value in (pinned.get("under_published_conventions") or {}).items():
        if not same(value["epsilon"], fresh["under_published_conventions"][quantity]["epsilon"]):
            sys.exit(f"{path}: epsilon.under_published_conventions.{quantity} differs; nothing written")
    for key in ("delta", "q", "steps", "noise_multiplier", "n", "microbatch_size", "of_record"):
        if key in pinned and pinned[key] != fresh[key]:
            sys.exit(f"{path}: epsilon.{key}: pinned {pinned[key]!r}, from {what} {fresh[key]!r}; nothing written")


def fresh_ledgers(path: Path, fresh_root: Path | None, plan: dict) -> str | None:
    """The fresh run's description if it exists and every seed recorded `plan`; exit if one differs."""
    if fresh_root is None:
        return None
    twin = fresh_root / path.relative_to(path.parents[2])
    if not twin.exists():
        return None
    fresh = Result.load(twin)
    for seed in fresh.seeds:
        difference = ledger.first_difference(seed.ledger, plan)
        if difference:
            sys.exit(f"{path}: the fresh run's seed {seed.seed} ({twin}): {difference}; nothing written")
    if fresh.epsilon:
        check_block(path, json.loads(path.read_text())["epsilon"], fresh.epsilon.to_json(),
                    f"the fresh run's ledgers ({twin})")
    return f"{fresh.run['finished'][:10]}, {fresh.arithmetic}, engine {fresh.engine}"


def add_ledger(path: Path, fresh_root: Path | None) -> str:
    pinned = json.loads(path.read_text())
    spec = load_result(path).spec
    plan = ledger.planned(spec)
    for seed in pinned["seeds"]:
        if seed.get("steps", spec.steps_trained) != spec.steps_trained:
            sys.exit(f"{path}: seed {seed['seed']}: {seed['steps']} steps recorded, the plan has "
                     f"{spec.steps_trained}; nothing written")
    if pinned["epsilon"]:
        check_block(path, pinned["epsilon"], accounting.epsilon_block(spec, ledger.schedule(plan, spec)),
                    "the reconstructed ledger")
        pinned["epsilon"]["computed_from"] = COMPUTED_FROM
    checked = fresh_ledgers(path, fresh_root, plan)
    source = RECONSTRUCTED + (CHECKED_FRESH.format(checked) if checked else "")
    for seed in pinned["seeds"]:
        if seed.get("ledger") not in (None, plan):
            sys.exit(f"{path}: seed {seed['seed']} already holds another ledger; nothing written")
        seed["ledger"] = plan
        if checked or "ledger_source" not in seed or CHECKED_FRESH[:20] not in seed["ledger_source"]:
            seed["ledger_source"] = source
    before = path.read_text()
    files.write_json(path, pinned)
    return ("checked against a fresh run, " if checked else "") + \
        ("unchanged" if path.read_text() == before else "ledger added")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--fresh", type=Path, help="results of fresh runs of the same specs")
    args = parser.parse_args()
    for path in pinned_results(args.results):
        print(f"{path}: {add_ledger(path, args.fresh)}", flush=True)


def pinned_results(root: Path) -> list[Path]:
    """Every results/<name>/v<k>/result*.json under `root` (not the sweeps' cells)."""
    return [p for p in sorted(root.rglob("result*.json")) if p.parent.name.startswith("v") and p.parents[2] == root]


if __name__ == "__main__":
    main()

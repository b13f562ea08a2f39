"""Bring the verdicts of pinned results up to date after accounting.py changes how a value is
labelled (not what it is): every result.json under RESULTS gets each value's label, adjacency and
verdict from a fresh `accounting.epsilon_block` of its own spec, and every audit.json the adjacency
of its value of record. The numbers stay the pin's: the script stops, writing nothing further,
when a fresh value differs from a pinned one beyond float rounding (then the change is arithmetic,
and the spec must be pinned again instead).

    .venv/bin/python scripts/relabel_epsilon.py results
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from dprepro import accounting, files
from dprepro.records.result import as_float
from dprepro.records.read import load_result

VERDICT = ("adjacency", "description", "holds_for_this_run", "label")


def relabel_result(path: Path) -> bool:
    pinned = json.loads(path.read_text())
    if not pinned.get("epsilon"):
        return False
    fresh = accounting.epsilon_block(load_result(path).spec)
    changed = False
    for name, value in pinned["epsilon"]["accountants"].items():
        new = fresh["accountants"][name]
        old, now = as_float(value["epsilon"]), new["epsilon"]
        if not (old == now or math.isclose(old, now, rel_tol=1e-9)):
            sys.exit(f"{path}: epsilon {name}: pinned {old!r}, computed now {now!r}: an arithmetic change; pin again")
        if new["holds_for_this_run"] != value["holds_for_this_run"]:
            sys.exit(f"{path}: epsilon {name}: the verdict changed; pin again")
        merged = {k: (value[k] if k in value and k not in VERDICT else new[k]) for k in new}
        changed |= merged != value
        pinned["epsilon"]["accountants"][name] = merged
    if changed:
        files.write_json(path, pinned)
    return changed


def relabel_audit(path: Path) -> bool:
    audit = json.loads(path.read_text())
    changed = False
    for seed in audit.get("seeds", []):
        claim = seed.get("accountant")
        if not claim or not claim["label"].startswith("holds for this run (") or "adjacency" in claim["label"]:
            continue
        adjacency = accounting.ADJACENCY["poisson" if claim["sampling"] == "poisson" else "once_per_epoch"]
        head, rest = claim["label"].split(")", 1)
        claim["label"] = f"{head}, {accounting.ADJACENCY_TEXT[adjacency]}){rest}"
        claim["adjacency"] = adjacency
        changed = True
    if changed:
        files.write_json(path, audit)
    return changed


def main(root: str) -> None:
    for path in sorted(Path(root).rglob("result.json")):
        print(f"{path}: {'relabelled' if relabel_result(path) else 'unchanged'}", flush=True)
    for path in sorted(Path(root).rglob("audit*.json")):
        print(f"{path}: {'relabelled' if relabel_audit(path) else 'unchanged'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")

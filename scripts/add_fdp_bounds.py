"""Give audits made before the f-DP bound existed their f-DP bound, read from the guesses they
recorded: every audit*.json under RESULTS gets, per seed (and per no-noise twin), the bound of each
guess count tried (audit/fdp.py, at the confidence per test it recorded), the best of them, and the
summaries' maxima. Nothing is trained again; the guesses are the audit's own. The script first
recomputes Steinke et al.'s bound of every recorded guess count and stops, writing nothing further,
when one differs from the recorded value beyond float rounding (then the record is not what this
code reads it as).

    .venv/bin/python scripts/add_fdp_bounds.py results
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from dprepro import files
from dprepro.audit import bounds, fdp
from dprepro.audit.audit_run import BOUND_TEXT, summarise


def add_to_entry(path: Path, entry: dict) -> None:
    c = entry["canaries"]
    for row in c["tries"]:
        again = bounds.epsilon_lower_bound(c["canaries"], row["guesses"], row["correct"], c["delta"],
                                           c["confidence_per_test"])
        if not math.isclose(again, row["epsilon_lower_bound"], rel_tol=1e-9, abs_tol=1e-12):
            sys.exit(f"{path}: seed {entry['seed']}, k {row['k']}: recorded bound {row['epsilon_lower_bound']!r}, "
                     f"recomputed {again!r}: not the record this script reads")
        row["fdp_epsilon_lower_bound"] = fdp.epsilon_lower_bound(c["canaries"], row["guesses"], row["correct"],
                                                                 c["delta"], c["confidence_per_test"])
    c.update(bounds.fdp_best(c["tries"]))


def add_to_audit(path: Path) -> bool:
    audit = json.loads(path.read_text())
    if "fdp_epsilon_lower_bound" in audit["summary"]:
        return False
    for entry in [*audit["seeds"], *(audit.get("no_noise") or [])]:
        add_to_entry(path, entry)
    for key, entries in (("summary", audit["seeds"]), ("no_noise_summary", audit.get("no_noise"))):
        if entries:
            fresh = summarise(entries)
            audit[key].update(fdp_epsilon_lower_bound=fresh["fdp_epsilon_lower_bound"],
                              fdp_lower_bound_seed=fresh["fdp_lower_bound_seed"])
    audit["method"]["bound"] = BOUND_TEXT
    files.write_json(path, audit)
    return True


def main(root: str) -> None:
    for path in sorted(Path(root).rglob("audit*.json")):
        print(f"{path}: {'f-DP bound added' if add_to_audit(path) else 'unchanged'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")

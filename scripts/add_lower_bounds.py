"""Give every pinned result its epsilon interval (issue 33), checking every number it touches.

For each result*.json under RESULTS (results/<name>/v<k>/) with an epsilon block this script
1. takes the one ledger every seed recorded (ledger.agreed) and recomputes the whole epsilon block from
   it, as `dprepro run` does (accounting.epsilon_block(spec, ledger.schedule(...)));
2. requires every accountant's value and verdict, every under_published_conventions value and the
   block's inputs to be the pin's (float rounding only, 1e-9 relative: add_ledger.check_block);
   otherwise it stops, having written nothing for that file;
3. writes the recomputed `lower_bounds` and `interval` (its upper end the pin's own value of record),
   atomically. No training arithmetic is touched: models, seeds and hashes stay as they are. Run twice,
   it changes nothing.

    .venv/bin/python scripts/add_lower_bounds.py results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_ledger import check_block, pinned_results  # noqa: E402  (the same checks as the ledger's pins)

from dprepro import accounting, files, ledger  # noqa: E402
from dprepro.records.read import load_result  # noqa: E402


def add_interval(path: Path) -> str:
    pinned = json.loads(path.read_text())
    if not pinned.get("epsilon"):
        return "non-private: no interval"
    result = load_result(path)
    ran = ledger.agreed({s.seed: dict(s.ledger) for s in result.seeds})
    fresh = accounting.epsilon_block(result.spec, ledger.schedule(ran, result.spec))
    check_block(path, pinned["epsilon"], fresh, "the seeds' ledgers")
    block = pinned["epsilon"]
    interval = fresh["interval"]
    if interval is not None:
        # a block pinned before dprepro 0.4 has no of_record: the recomputed one, checked equal above
        interval["upper"] = block["accountants"][block.get("of_record") or fresh["of_record"]]["epsilon"]
    for key, new in (("lower_bounds", fresh["lower_bounds"]), ("interval", interval)):
        if key in block and json.loads(json.dumps(block[key])) != json.loads(json.dumps(new)):
            old = block[key]
            if key == "lower_bounds" and all(math.isclose(old[n]["epsilon"], new[n]["epsilon"], rel_tol=1e-9)
                                             for n in new):
                continue
            sys.exit(f"{path}: epsilon.{key} is pinned already and differs from the recomputation; nothing written")
        block.setdefault(key, new)
    before = path.read_text()
    files.write_json(path, pinned)
    return "unchanged" if path.read_text() == before else \
        f"interval [{interval['lower']:.4f}, {as_text(interval['upper'])}] added" if interval else "lower bound added"


def as_text(x) -> str:
    return x if isinstance(x, str) else f"{x:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    for path in pinned_results(parser.parse_args().results):
        print(f"{path}: {add_interval(path)}", flush=True)


if __name__ == "__main__":
    main()

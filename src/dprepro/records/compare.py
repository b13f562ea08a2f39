"""A fresh result against the pinned one (and the published values): rows of PASS/FAIL/INFO.

Rules (docs/reproduction.md, "Self-checking reproduction"):
- the spec's content hash must be the pinned one's (else the two runs are not the same experiment),
  and so must the engine version when both used the same engine;
- every accountant's epsilon must match within its own relative tolerance (EPSILON_RTOL: chosen
  from the accountant's numerics, far above the last-digit noise of another machine's arithmetic
  and far below the smallest real change: one training step more, the noise multiplier changed in
  its 5th digit, another discretization; tests/test_compare.py measures both sides);
- the fresh mean test accuracy must be within
  max(3 * s_pinned * sqrt(1/n_pinned + 1/n_fresh), 0.005) of the pinned mean,
  s_pinned being the sample standard deviation over the pinned seeds;
- published epsilons must match to the precision they were published with; published
  accuracies are approximate ("about 95%") and are shown as INFO, never FAIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Mapping

from dprepro.files import result_path
from dprepro.records.read import load_result
from dprepro.records.result import EpsilonBlock, Result, as_float
from dprepro.spec import ENGINE_VERSIONS, Spec

# Relative tolerance of each accountant's epsilon against a pin (docs/reproduction.md, "Self-checking reproduction").
# Smallest real change measured (n 60000, batch 250, 1-20 epochs): 8.7e-5 relative (noise multiplier
# + 1e-4); one step more: >= 1.1e-4; PLD discretization 2e-4 instead of 1e-4: >= 1.1e-4.
CLOSED_FORM_RTOL = 1e-9   # RDP sums of a few hundred float64 terms: rounding ~1e-14, 1e5x below
PLD_RTOL = 1e-6           # FFT convolutions over ~1e5 bins: 4e-10..3.6e-9 measured, 1e-6 is 100x below a change
EPSILON_RTOL = {
    "rdp_legacy": CLOSED_FORM_RTOL,
    "rdp": CLOSED_FORM_RTOL,
    "pld": PLD_RTOL,
    "statement_once_per_epoch": CLOSED_FORM_RTOL,
    "statement_poisson": CLOSED_FORM_RTOL,
    "shuffled_chua": PLD_RTOL,    # lower_bounds.py, FFT compositions too: numpy's AVX-512 and AVX2 paths 6e-12..1.6e-11
    "pld_optimistic": PLD_RTOL,
}
ACCURACY_FLOOR = 0.005
ACCURACY_SIGMAS = 3.0


@dataclass(frozen=True)
class Row:
    quantity: str
    reference: object   # pinned or published value
    fresh: object
    tolerance: str
    status: str         # PASS, FAIL or INFO


def accuracy_tolerance(pinned_std: float, n_pinned: int, n_fresh: int) -> float:
    return max(ACCURACY_SIGMAS * pinned_std * math.sqrt(1 / n_pinned + 1 / n_fresh), ACCURACY_FLOOR)


def epsilon_tolerance(accountant: str) -> float:
    """Relative tolerance for one accountant's epsilon (`<name>_doubled` as `<name>`; an unknown one
    is held to the closed form's)."""
    return EPSILON_RTOL.get(accountant.removesuffix("_doubled"), CLOSED_FORM_RTOL)


def arithmetic_row(fresh: Result, pinned: Result) -> Row:
    """INFO: whether the two runs share an arithmetic path, i.e. whether their per-seed numbers
    should be bit-identical (same path) or agree statistically (another path)."""
    p, f = pinned.arithmetic, fresh.arithmetic
    same = p == f and p != "not recorded" and fresh.engine == pinned.engine \
        and fresh.engine_version == pinned.engine_version
    return Row("arithmetic path", p, f, "bit-identical" if same else "statistical", "INFO")


def against_pinned(fresh: Result, pinned: Result) -> list[Row]:
    rows = [Row("spec content hash", pinned.spec_sha256[:12], fresh.spec_sha256[:12], "equal",
                "PASS" if fresh.spec_sha256 == pinned.spec_sha256 else "FAIL")]
    if fresh.engine == pinned.engine:
        p, f = pinned.engine_version, fresh.engine_version
        rows.append(Row(f"{fresh.engine} engine version", p, f, "equal", "PASS" if p == f else "FAIL"))
    pinned_eps, fresh_eps = pinned.epsilon, fresh.epsilon
    if (pinned_eps is None) != (fresh_eps is None):
        rows.append(Row("epsilon block", "present" if pinned_eps else "none",
                        "present" if fresh_eps else "none", "equal", "FAIL"))
    elif pinned_eps:
        for name, p in pinned_eps.accountants.items():
            f = fresh_eps.accountants.get(name, {}).get("epsilon")
            rtol = epsilon_tolerance(name)
            ok = f is not None and math.isclose(as_float(f), as_float(p["epsilon"]), rel_tol=rtol)
            rows.append(Row(f"epsilon {name}", p["epsilon"], f, f"{rtol:g} rel", "PASS" if ok else "FAIL"))
        for name, p in pinned_eps.lower_bounds.items():
            f = fresh_eps.lower_bounds.get(name, {}).get("epsilon")
            ok = f is not None and math.isclose(as_float(f), as_float(p["epsilon"]), rel_tol=PLD_RTOL)
            rows.append(Row(f"epsilon at least ({name})", p["epsilon"], f, f"{PLD_RTOL:g} rel",
                            "PASS" if ok else "FAIL"))
    p_acc, f_acc = pinned.test_accuracy, fresh.test_accuracy
    tol = accuracy_tolerance(p_acc["std"], p_acc["n"], f_acc["n"])
    rows.append(Row(f"test accuracy mean (pinned n={p_acc['n']}, fresh n={f_acc['n']})",
                    p_acc["mean"], f_acc["mean"], f"±{tol:.4f}",
                    "PASS" if abs(f_acc["mean"] - p_acc["mean"]) <= tol else "FAIL"))
    rows.append(arithmetic_row(fresh, pinned))
    return rows


def published_precision(value: float) -> float:
    """Half a unit in the last published digit: 0.942 -> 0.0005, 1.1799007 -> 5e-8."""
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    return 0.5 * 10.0 ** min(exponent, 0)


def against_published(spec: Spec, epsilon: EpsilonBlock | None, summaries: Mapping) -> list[Row]:
    """The spec's `expected` values (with their sources) against a fresh result's epsilon block and
    its summaries over seeds ({"test_accuracy": {"mean", ...}, ...})."""
    rows = []
    for quantity, entry in spec.expected.items():
        if quantity.startswith("epsilon_"):
            convention = epsilon.under_published_conventions.get(quantity) if epsilon else None
            if convention:     # published under another convention: computed under that one
                value, how = convention["epsilon"], (
                    f" (as published: used_microbatching {str(convention['used_microbatching']).lower()})")
            else:
                value, how = (epsilon.accountants.get(quantity[len("epsilon_"):], {}).get("epsilon")
                              if epsilon else None), ""
            tol = published_precision(entry.value)
            ok = value is not None and abs(as_float(value) - entry.value) <= tol * (1 + 1e-9)
            rows.append(Row(f"published {quantity}{how}", entry.value, value, f"±{tol:g}",
                            "PASS" if ok else "FAIL"))
        else:
            value = summaries[quantity]["mean"]
            rows.append(Row(f"published {quantity} ({entry.source[:40]}…)", entry.value, value,
                            f"Δ {value - entry.value:+.4f}", "INFO"))
    return rows


def format_rows(title: str, rows: list[Row]) -> str:
    def show(x):
        return f"{x:.7g}" if isinstance(x, float) else str(x)
    width = max([len(r.quantity) for r in rows] + [8])
    lines = [title, f"  {'quantity':<{width}}  {'reference':>12}  {'fresh':>12}  {'tolerance':>12}  status"]
    lines += [f"  {r.quantity:<{width}}  {show(r.reference):>12}  {show(r.fresh):>12}  {r.tolerance:>12}  {r.status}"
              for r in rows]
    return "\n".join(lines)


def compare_files(fresh_path, pinned_path) -> tuple[str, bool]:
    """The printed comparison of two result files and whether everything passed."""
    fresh, pinned = load_result(fresh_path), load_result(pinned_path)
    rows = against_pinned(fresh, pinned)
    text = format_rows(f"{fresh.name} v{fresh.version} ({fresh.engine}): "
                       f"fresh {fresh_path} vs pinned {pinned_path}", rows)
    if fresh.engine != pinned.engine:
        text += (f"\n  note: engines differ (fresh {fresh.engine}, pinned "
                 f"{pinned.engine}); same DP-SGD step, different arithmetic order")
    published = against_published(fresh.spec, fresh.epsilon,
                                   {"test_accuracy": fresh.test_accuracy, "train_accuracy": fresh.train_accuracy})
    if published:
        text += "\n" + format_rows("  against published values:", published)
    return text, all(r.status != "FAIL" for r in rows + published)


def pin_problem(spec, results_dir) -> str | None:
    """Why `spec` (a Spec) has no valid pinned result in `results_dir`, or None if it has one."""
    path = result_path(results_dir, spec.name, spec.version)
    if not path.exists():
        return f"{spec.path}: no pinned result at {path} (run `make pin` and commit it)"
    pinned = load_result(path)
    if pinned.spec_sha256 != spec.sha256:
        return (f"{spec.path}: content changed since {path} was pinned (hash {spec.sha256[:12]} != "
                f"{pinned.spec_sha256[:12]}): bump `version` and re-pin (make pin)")
    name = pinned.engine
    if pinned.engine_version != ENGINE_VERSIONS[name]:
        return (f"{spec.path}: {path} was made with engine {name} v{pinned.engine_version}, "
                f"the current one is v{ENGINE_VERSIONS[name]}: re-pin (make pin)")
    return None


def against_pins(finished: list, out_dir: Path, pinned_dir: Path) -> tuple[str, bool]:
    """`dprepro run --compare`: each fresh (result, path) against PINNED_DIR's file of the same
    place; the printed comparisons and whether all passed (a spec without a pin is said, not failed)."""
    blocks, all_passed = [], True
    for result, path in finished:
        pinned = Path(pinned_dir) / Path(path).relative_to(out_dir)
        if not pinned.exists():
            blocks.append(f"{result['name']} v{result['version']}: no pinned result at {pinned}; nothing to compare")
            continue
        text, passed = compare_files(path, pinned)
        blocks.append(text)
        all_passed &= passed
    verdict = (f"reproduction {'PASSED' if all_passed else 'FAILED'}: fresh results "
               f"{'match' if all_passed else 'do not match'} the pinned ones in {pinned_dir}")
    return "".join(f"\n{b}" for b in blocks) + f"\n\n{verdict}", all_passed

"""DPSUR in the report: each pinned run with `privacy.selective_update` beside Fu et al.'s published
point; per seed, the steps it kept and what Fu et al.'s accounting (kept steps only) says of it; the
ε that holds (every step and test); and what the published setting costs when every step is counted.

The last column is a bound, not a run: with threshold -1 the clipped difference is at least -C_v, so a
step is kept only if the test's noise is negative, with probability at most 1/2. A run that keeps the
T steps Fu et al.'s accounting allows at ε therefore proposes at least 2 T in expectation; its ε with
every step and test composed is at least that of 2 T steps (pld, the releases composed).
"""

from __future__ import annotations

import dataclasses

from dprepro import accounting
from dprepro.mechanisms import dpsur_published_epsilon
from dprepro.records.result import Result


def published_kept_steps(schedule: accounting.Schedule, target: float) -> int:
    """The most kept steps whose Fu et al. ε stays below `target` (their run stops there)."""
    sigma = schedule.noise_multiplier / schedule.sensitivity

    def theirs(kept: int) -> float:
        return dpsur_published_epsilon(schedule.q, sigma, kept, schedule.delta, schedule.releases, schedule.tests)
    low, high = 0, 1
    while theirs(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if theirs(middle) < target else (low, middle)
    return low


def published_setting_cost(result: Result, target: float) -> tuple[int, float]:
    """(T, the pld ε of 2 T steps with their tests): Fu et al.'s run at `target` kept T steps and
    proposed at least 2 T in expectation."""
    schedule = accounting.Schedule.planned(result.spec)
    kept = published_kept_steps(schedule, target)
    return kept, dataclasses.replace(schedule, steps=2 * kept).poisson_epsilon("pld")


def published_target(result: Result) -> float | None:
    """The ε Fu et al. published for this setting, from the spec's name (dpsur-...-eps<ε>)."""
    tail = result.name.rsplit("-eps", 1)
    return float(tail[1]) if len(tail) == 2 else None


def table(results: list[Result]) -> list[str]:
    """The report's DPSUR section (empty when nothing pinned has a selective update)."""
    rows = [r for r in results if r.spec.selective is not None and r.epsilon]
    if not rows:
        return []
    lines = ["## Selective update (DPSUR)", "",
             "Fu et al. 2024 keep a DP-SGD step only if a noisy test of the validation loss says it helped, and compose "
             "only the kept steps and their tests. dprepro composes every step and every test (the ε of record, which "
             "holds) and records what their accounting says of each seed (†: does not hold). The last column is what "
             "the published setting costs with every step counted: their run keeps T steps, each kept with "
             "probability at most 1/2, so it proposes at least 2 T (docs/privacy.md, \"Selective update (DPSUR)\").", "",
             "| spec | published: ε, accuracy | steps proposed | kept per seed | Fu et al.'s ε per seed † | "
             "ε of record (every step) | test accuracy, mean ± std (n) | published setting, every step: T, ε at 2 T |",
             "|" + " --- |" * 8]
    for r in rows:
        block, acc = r.epsilon, r.test_accuracy
        summaries = [s.get("selective_update") for s in r.seeds]
        kept = " / ".join(str(s["steps_kept"]) for s in summaries)
        theirs = " / ".join(f"{s['published_accounting']['epsilon']:.2f}" for s in summaries)
        target = published_target(r)
        expected = r.spec.expected.get("test_accuracy")
        published = "–" if target is None or expected is None else f"{target:g}, {100 * expected.value:.2f} %"
        cost = "–"
        if target is not None:
            steps, eps = published_setting_cost(r, target)
            cost = f"{steps}, ≥ {eps:.2f}"
        lines.append(f"| {r.name} v{r.version} | {published} | {summaries[0]['steps_proposed']} | {kept} | {theirs} | "
                     f"{block.value_of_record:.3f} ({block.of_record}) | "
                     f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % ({acc['n']}) | {cost} |")
    return [*lines, ""]

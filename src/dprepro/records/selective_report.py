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
import statistics

from dprepro import accounting
from dprepro.mechanisms import dpsur_published_kept_steps
from dprepro.records.result import Result


def published_setting_cost(result: Result, target: float) -> tuple[int, float]:
    """(T, the pld ε of 2 T steps with their tests): Fu et al.'s run at `target` kept T steps and
    proposed at least 2 T in expectation."""
    schedule = accounting.Schedule.planned(result.spec)
    kept = dpsur_published_kept_steps(schedule, target)
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
             "holds) and records what their accounting says of each seed (†: does not hold). The `dpsur-published-*` runs "
             "also score the model where their run stops (their accounting reaches the published ε) and what the steps "
             "proposed until then cost with every step and test counted. The last column bounds that cost from below: "
             "their run keeps T steps, each kept with probability at most 1/2, so it proposes at least 2 T in "
             "expectation (docs/privacy.md, \"Selective update (DPSUR)\").", "",
             "| spec | published: ε, accuracy | steps proposed | kept per seed | Fu et al.'s ε per seed † | "
             "ε of record (every step) | test accuracy, mean ± std (n) | at Fu et al.'s stop: steps proposed, "
             "accuracy, ε (pld) every step | published setting, every step: T, ε at 2 T |",
             "|" + " --- |" * 9]
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
                     f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % ({acc['n']}) | {stop_cell(summaries)} | {cost} |")
    return [*lines, ""]


def stop_cell(summaries: list) -> str:
    """Where each seed got to Fu et al.'s stopping point: steps proposed, the model's accuracy then
    (mean ± std), the pld ε of those steps with their tests; "–" when the spec does not ask."""
    stops = [s.get("published_stop") for s in summaries]
    if not all(stops):
        return "–"
    if not all(stop["reached"] for stop in stops):
        return f"not reached by {sum(not stop['reached'] for stop in stops)} seed(s)"
    accuracies = [stop["test_accuracy"] for stop in stops]
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    steps = " / ".join(str(stop["step"]) for stop in stops)
    costs = " / ".join(f"{stop['epsilon_every_step']:.2f}" for stop in stops)
    return f"{steps}; {100 * statistics.fmean(accuracies):.2f} ± {100 * spread:.2f} %; {costs}"

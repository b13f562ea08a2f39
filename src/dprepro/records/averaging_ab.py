"""The parameter average's A/B in the report: for every pinned run with `training.ema_decay`, each
seed's released average against its own last iterate (same training, same noise: a paired
comparison), and that last iterate against the pin of the same spec without the average, which
training it repeats."""

from __future__ import annotations

import statistics

from dprepro.records.result import Result

SUFFIX = "-ema"      # tuned-scatternet-linear-ema-eps2 averages tuned-scatternet-linear-eps2


def base_name(name: str) -> str:
    """The spec an averaged spec repeats the training of: its name without "-ema"."""
    return name.replace(SUFFIX + "-", "-", 1) if SUFFIX + "-" in name else name.removesuffix(SUFFIX)


def rows(results: list[Result]) -> list[dict]:
    """One row per averaged pin: per seed, the average's and the last iterate's test accuracy and
    their difference; and whether the base pin's seeds have the same last-iterate accuracy."""
    by_name = {r.name: r for r in results}
    out = []
    for result in results:
        decay = result.spec.training.ema_decay
        if decay is None:
            continue
        averaged = [s.test_accuracy for s in result.seeds]
        iterate = [s.get("parameter_average")["iterate_test_accuracy"] for s in result.seeds]
        base = by_name.get(base_name(result.name))
        base_acc = None if base is None else {s.seed: s.test_accuracy for s in base.seeds}
        same = None if base_acc is None else all(base_acc.get(s.seed) == i for s, i in zip(result.seeds, iterate))
        out.append({"name": result.name, "version": result.version, "ema_decay": decay,
                    "epsilon": result.epsilon.value_of_record if result.epsilon else None,
                    "of_record": result.epsilon.of_record if result.epsilon else None,
                    "averaged": averaged, "iterate": iterate,
                    "gain": [a - i for a, i in zip(averaged, iterate)],
                    "base": base and base.name, "same_training": same})
    return out


def mean_std(values: list) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * spread:.2f}"


def table(results: list[Result]) -> list[str]:
    """The report's section (empty when nothing pinned has an average)."""
    found = rows(results)
    if not found:
        return []
    lines = ["## Parameter average (A/B)", "",
             "Each seed releases an exponential moving average of its parameters (`training.ema_decay`; "
             "post-processing, no privacy cost) and keeps its last iterate's score beside it: the gain is paired, "
             "same training, same noise. \"Same training\" checks each seed's last iterate against the pin of the "
             "spec without the average (equal to the last digit on one arithmetic path). Test accuracy in %, "
             "mean ± std over seeds; gain in percentage points, per seed.", "",
             "| spec | ema_decay | ε of record | seeds | last iterate | average | gain per seed | same training as |",
             "|---|---|---|---|---|---|---|---|"]
    for row in found:
        eps = "-" if row["epsilon"] is None else f"{row['epsilon']:.2f} ({row['of_record']})"
        same = "-" if row["same_training"] is None else f"{row['base']}: {'yes' if row['same_training'] else 'NO'}"
        gains = " / ".join(f"{100 * g:+.2f}" for g in row["gain"])
        lines.append(f"| {row['name']} v{row['version']} | {row['ema_decay']:g} | {eps} | {len(row['averaged'])} | "
                     f"{mean_std(row['iterate'])} | {mean_std(row['averaged'])} | {gains} | {same} |")
    return [*lines, ""]

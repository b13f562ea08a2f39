"""Choosing from a finished sweep: for each target epsilon, the cell with the best validation accuracy.

A tuning sweep is an ordinary sweep whose base spec holds validation examples out
(`data.validation_examples`): every cell is scored on them, never on the test set. `select` reads
the cells' results, groups them by target epsilon (one group when the grid has no target), and
picks the best mean validation accuracy in each group (ties: the smaller epsilon of record, then
the cell's name). The search's privacy cost is stated twice for each choice:

- `epsilon_of_record`: the chosen run alone, as for any run; it excludes the search over the
  group's N configurations, and says so;
- `epsilon_with_search`: every trial of the group (its releases and its training, each seed) and one
  more run of the chosen schedule, composed (RDP, dp_accounting, the orders of `rdp`). Every trial's
  validation score is recorded and may be published, so nothing less than the composition of all of
  them holds. (Papernot & Steinke 2022's bound for a random number of trials, releasing only the best,
  is tighter; it needs the trial count drawn at random and kept secret, which a recorded grid is not.)
  It holds only if every trial was Poisson-sampled and trained a part of the chosen run's examples:
  a run on a fixed part of the data set is DP for the whole with the same epsilon (an example outside
  the part changes nothing), so trials on the first 55,000 compose with a refit on all 60,000.

`tuned_spec` turns a choice into an ordinary experiment spec (the chosen cell with the pin's seeds),
its description naming the search, so that `dprepro run` pins it like any other spec. `refit` is the
same schedule trained on every training example (the validation examples back in) with its noise
calibrated again for the larger set. The validation examples chose the schedule without noise: no
epsilon here covers that choice for them, and each choice's search record says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import dp_accounting
import yaml

from dprepro import accounting, calibration, files, mechanisms
from dprepro.errors import InputError
from dprepro.records.read import load_result
from dprepro.spec import Spec
from dprepro.spec.schema import DATASETS
from dprepro.sweep.sweep_spec import TARGET, Sweep

SEARCH_ACCOUNTANT = "rdp"


def cell_results(sweep: Sweep, out: Path) -> dict:
    """{cell name: (Cell, Result)} of a finished sweep; InputError naming the first missing, unreadable
    (read.py's checks), changed or unscored cell."""
    if sweep.base.data.validation_examples is None:
        raise InputError(f"{sweep.path}: base: {sweep.base.path} has no data.validation_examples: a sweep "
                         f"chooses on validation examples, never on the test set")
    root = files.sweep_folder(out, sweep.name, sweep.version)
    found = {}
    for cell in sweep.cells:
        if cell.values.get("nonprivate"):
            continue
        path = files.result_path(root, cell.name, sweep.version)
        if not path.is_file():
            raise InputError(f"{path}: no result of cell {cell.name}: run the sweep first "
                             f"(`dprepro sweep {sweep.path} --out {out}`)")
        result = load_result(path)
        if result.spec_sha256 != cell.spec.sha256:
            raise InputError(f"{path}: cell {cell.name} changed since this result was written: run the sweep again")
        if result.get("validation_accuracy") is None:
            raise InputError(f"{path}: validation_accuracy: missing: the cell was not scored on validation examples")
        if not isinstance(result.get("validation_accuracy"), Mapping) or \
                not isinstance(result.get("validation_accuracy").get("mean"), (int, float)):
            raise InputError(f"{path}: validation_accuracy.mean: missing or not a number")
        found[cell.name] = (cell, result)
    return found


def search_epsilon(trials: list[Spec], seeds_per_trial: int, chosen: Spec, delta: float) -> dict:
    """The composition of every trial (each seed a release) and one more run of `chosen`."""
    events = []
    for spec in [*trials] * seeds_per_trial + [chosen]:
        events.append(accounting.Schedule.planned(spec).poisson_event())
    value = mechanisms.FRESH[SEARCH_ACCOUNTANT]().compose(dp_accounting.ComposedDpEvent(events)).get_epsilon(delta)
    # every run trains the file's first train_examples, so a smaller set is a part of the larger one
    holds = all(s.poisson and s.train_examples <= chosen.train_examples for s in [*trials, chosen])
    held_out = max(s.data.validation_examples or 0 for s in trials)
    return {"epsilon": float(value), "accountant": SEARCH_ACCOUNTANT, "delta": delta,
            "runs_composed": len(trials) * seeds_per_trial + 1,
            "holds": holds,
            "label": (f"the {len(trials)} configuration(s) tried x {seeds_per_trial} seed(s), then one run of the "
                      f"chosen one, composed ({SEARCH_ACCOUNTANT})"
                      + ("" if holds else "; does not hold: a trial was not Poisson-sampled or trained examples "
                                          "the chosen run does not")
                      + (f"; it covers the training examples, not the {held_out} validation examples that chose "
                         f"without noise" if held_out else ""))}


def refit(choice: dict, chosen: Spec, noise_multiplier: float | None = None) -> Spec:
    """The chosen schedule trained on the whole training file: the validation examples back in
    (data.train_examples the file's size), the noise calibrated again (rounded up like the sweep's) so
    that the run alone reaches the target at the larger set's sampling rate; without a target the
    noise stays and the run's epsilon falls. InputError when the trials' training and validation
    examples are not the whole file together (the refit would add examples nobody looked at).
    `noise_multiplier`: the one already calibrated (choice["refit"]), to skip the calibration."""
    held_out, size = chosen.data.validation_examples, DATASETS[chosen.data.dataset]["train"]
    if not held_out or chosen.train_examples + held_out != size:
        raise InputError(f"{chosen.path}: data.train_examples: --refit needs the trials' training and validation "
                         f"examples to be the whole training file ({size}), got {chosen.train_examples} + "
                         f"{held_out or 0}")
    spec = chosen.replace({"data.train_examples": size, "data.validation_examples": None})
    if noise_multiplier is not None:
        spec = spec.replace({"privacy.noise_multiplier": noise_multiplier})
    elif choice["target"] and spec.private:
        spec = spec.replace({"privacy.noise_multiplier": calibration.calibrated_noise(
            spec, choice["target"]["epsilon"], choice["target"]["accountant"])})
    return spec


def select(sweep: Sweep, out: Path, refits: bool = False) -> list[dict]:
    """One choice per target epsilon (ascending), each with its candidates and both epsilons; with
    `refits`, also the chosen schedule refitted on the whole training file (`refit`) and its search
    epsilon, under the choice's "refit"."""
    results = cell_results(sweep, out)
    groups = {}
    for name, (cell, result) in results.items():
        groups.setdefault(cell.values.get(TARGET), []).append((cell, result))
    choices = []
    for target, members in sorted(groups.items(), key=lambda kv: (kv[0] or ("", 0))[1]):
        def record(result):
            return result.epsilon.value_of_record if result.epsilon and result.epsilon.of_record else math.inf

        def key(member):
            cell, result = member
            return (-result.get("validation_accuracy")["mean"], record(result), cell.name)

        best_cell, best = min(members, key=key)
        trials = [c.spec for c, _ in members]
        eps = best.epsilon
        choices.append({
            "target": None if target is None else {"accountant": target[0], "epsilon": target[1]},
            "chosen": best_cell.name,
            "values": {k: v for k, v in best_cell.values.items() if k != TARGET},
            "noise_multiplier": best_cell.spec.privacy.noise_multiplier,
            "validation_accuracy": best.get("validation_accuracy")["mean"],
            "test_accuracy_of_the_trial": best.test_accuracy["mean"],
            "configurations": len(members),
            "epsilon_of_record": {"accountant": eps.of_record, "epsilon": record(best),
                                  "label": f"this run alone; excludes the search over {len(members)} configurations"}
            if eps else None,
            "epsilon_with_search": search_epsilon(trials, len(sweep.seeds), best_cell.spec, best_cell.spec.privacy.delta)
            if best_cell.spec.private else None,
            "candidates": sorted(({"cell": c.name, "validation_accuracy": r.get("validation_accuracy")["mean"],
                                   "test_accuracy": r.test_accuracy["mean"]} for c, r in members),
                                 key=lambda c: -c["validation_accuracy"]),
        })
        if refits:
            spec = refit(choices[-1], best_cell.spec)
            choices[-1]["refit"] = {
                "name": tuned_name(sweep, choices[-1], refitted=True), "train_examples": spec.train_examples,
                "noise_multiplier": spec.privacy.noise_multiplier if spec.private else None,
                "epsilon_with_search": search_epsilon(trials, len(sweep.seeds), spec, spec.privacy.delta)
                if spec.private else None}
    return choices


def tuned_name(sweep: Sweep | str, choice: dict, refitted: bool = False) -> str:
    """`<sweep>-eps<target>` (`<sweep>-best` without a target); `<sweep>-refit-eps<target>` refitted."""
    target, name = choice["target"], sweep if isinstance(sweep, str) else sweep.name
    name += "-refit" if refitted else ""
    return f"{name}-eps{target['epsilon']:g}" if target else f"{name}-best"


def tuned_spec(sweep: Sweep, choice: dict, chosen: Spec, seeds: list, refitted: Spec | None = None) -> str:
    """The chosen cell as an experiment spec file of its own: name `<sweep>-eps<target>`, version 1,
    the pin's seeds, the search named in its description and source. With `refitted` (`refit` of the
    chosen cell, recorded in choice["refit"]), that spec instead: `<sweep>-refit-eps<target>`."""
    search = choice["refit"]["epsilon_with_search"] if refitted else choice["epsilon_with_search"]
    raw = (refitted or chosen).to_dict()
    raw.update(name=tuned_name(sweep, choice, refitted=bool(refitted)), version=1, seeds=list(seeds), expected={})
    raw["description"] = (
        f"The schedule chosen by sweep {sweep.name} v{sweep.version} ({sweep.path}) for "
        + (f"target {choice['target']['accountant']} epsilon {choice['target']['epsilon']:g}" if choice["target"]
           else "its grid")
        + f": cell {choice['chosen']} ({', '.join(f'{k} {v}' for k, v in choice['values'].items()) or 'the base'}; "
        f"noise multiplier {choice['noise_multiplier']} calibrated), the best validation accuracy "
        f"({choice['validation_accuracy']:.4f}, on the training file's last {chosen.data.validation_examples} "
        f"examples, never trained on) of {choice['configurations']} configurations."
        + (f" Refitted: trained on all {refitted.train_examples} training examples (the validation examples back "
           f"in), noise multiplier {refitted.privacy.noise_multiplier} calibrated again for them. The validation "
           f"examples chose the schedule without noise; no epsilon covers that choice for them." if refitted else "")
        + " Its epsilon of record excludes that search"
        + (f"; with it (every trial and one run of this schedule composed, {search['accountant']}) epsilon is "
           f"{search['epsilon']:.3f} at delta {search['delta']:g}." if search else "."))
    raw["source"] = f"dprepro's own search: `dprepro select {sweep.path}` (results/sweeps/{sweep.name}/v{sweep.version}/selection.json)."
    header = f"# Written by `dprepro select {sweep.path}`: the tuned schedule for one target; pin it with `dprepro run`.\n"
    return header + yaml.safe_dump(raw, sort_keys=False, width=100)


def write_selection(sweep: Sweep, out: Path, choices: list[dict]) -> Path:
    path = files.sweep_folder(out, sweep.name, sweep.version) / "selection.json"
    files.write_json(path, {"sweep": sweep.name, "version": sweep.version, "sweep_file": sweep.path,
                            "chosen_on": "validation accuracy (mean over the sweep's seeds)",
                            "search_accountant": SEARCH_ACCOUNTANT, "choices": choices})
    return path


def table(choices: list[dict]) -> str:
    lines = [f"{'target':>10}  {'chosen cell':<44} {'val acc':>8} {'test acc':>8}  {'eps of record':>18}  "
             f"{'eps with search':>16}  configs"]
    for c in choices:
        target = f"{c['target']['epsilon']:g} {c['target']['accountant']}" if c["target"] else "-"
        rec = c["epsilon_of_record"]
        record = f"{rec['epsilon']:.3f} ({rec['accountant']})" if rec else "-"
        search = f"{c['epsilon_with_search']['epsilon']:.3f}" if c["epsilon_with_search"] else "-"
        lines.append(f"{target:>10}  {c['chosen']:<44} {c['validation_accuracy']:>8.4f} "
                     f"{c['test_accuracy_of_the_trial']:>8.4f}  {record:>18}  {search:>16}  {c['configurations']}")
        if c.get("refit"):
            r = c["refit"]
            search = f"{r['epsilon_with_search']['epsilon']:.3f}" if r["epsilon_with_search"] else "-"
            lines.append(f"{'':>10}  refit: {r['train_examples']} examples, noise {r['noise_multiplier']}"
                         f"{'':<14} {'':>8} {'':>8}  {'':>18}  {search:>16}  ({r['name']})")
    return "\n".join(lines)

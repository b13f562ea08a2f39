"""The tuned frontier: one choice per target epsilon over every recorded search on one validation split.

A frontier design file (experiments/sweeps/tuned-frontier.yaml) names the searches (sweep files whose
records, `results/sweeps/<name>/v<version>/selection.json` and `frontier.json`, are committed) and the
targets, as epsilons of record:

    schema: 1
    name: tuned-frontier
    version: 1
    description: ...
    searches: [tuned-scatternet-linear.yaml, tuned-scatternet-cnn.yaml]   # relative to this file
    targets: [0.5, 1, 2, 3, 4, 8]

Every trial of every search is a candidate at each target its own epsilon of record is within; the
choice is the best mean validation accuracy (ties: the smaller epsilon, then the name). The candidate
sets grow with the target, so the chosen validation accuracy never falls as the target rises: the
frontier is monotone by construction on what it chooses with. The test set is never read to choose.

The trials are rebuilt from the sweep files with the noise the record holds, and each must hash to the
recorded content (no calibration, no training: the choice is remade from committed files in seconds).
All searches must hold out the same validation examples: scores on different splits do not compare.

The privacy cost of the search, per target: every candidate (each seed a release) and one more run of
the chosen schedule, composed (rdp), as `dprepro select` states it; and once for the whole design,
every trial of every search composed. Both cover the training examples, not the validation examples,
which chose without noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from dprepro import files
from dprepro.errors import InputError, shown
from dprepro.files import read_yaml
from dprepro.spec import Spec, load_spec
from dprepro.spec.schema import MAX_VERSION, check_kind
from dprepro.sweep.selection import SEARCH_ACCOUNTANT, search_epsilon
from dprepro.sweep.sweep_spec import Sweep, load_sweep, read_document

SCHEMA = 1
FIELDS = {"schema", "name", "version", "description", "searches", "targets"}


@dataclass(frozen=True)
class Trial:
    """One configuration of one search, as its record states it."""
    search: str
    cell: str
    spec: Spec
    seeds: int                  # seeds it was trained with (each one a release)
    epsilon: float              # its epsilon of record (pld), the run alone
    validation_accuracy: float  # mean over its seeds
    test_accuracy: float        # mean over its seeds: recorded, never used to choose


@dataclass(frozen=True)
class FrontierDesign:
    path: str
    name: str
    version: int
    description: str
    searches: list              # of Sweep, cells rebuilt from their records
    targets: list               # of float, ascending


def load_design(path, results: Path) -> FrontierDesign:
    """Read and validate a design file and rebuild its searches' trials from the records under
    `results`; InputError naming the file and the field on any fault."""
    path = str(path)
    raw, fail = read_document(path, "frontier design", FIELDS, ("schema", "name", "version", "searches", "targets"),
                              SCHEMA)
    check_kind(raw["name"], "name", "name", fail)
    check_kind(raw["version"], "int", "version", fail)
    if not 1 <= raw["version"] <= MAX_VERSION:
        fail("version", f"must be an integer from 1 to {MAX_VERSION}")
    targets = raw["targets"]
    if not isinstance(targets, list) or not targets:
        fail("targets", "a non-empty list of epsilons of record")
    for i, t in enumerate(targets):
        check_kind(t, "num", f"targets[{i}]", fail)
        if t <= 0:
            fail(f"targets[{i}]", f"must be > 0, got {shown(t)}")
    if sorted(targets) != targets or len(set(targets)) != len(targets):
        fail("targets", "must be distinct and ascending")
    searches = raw["searches"]
    if not isinstance(searches, list) or not searches or not all(isinstance(s, str) for s in searches):
        fail("searches", "a non-empty list of sweep files, relative to this file")
    sweeps = []
    for i, relative in enumerate(searches):
        sweep_path = Path(path).parent / relative
        try:
            recorded = recorded_noises(results, read_yaml(sweep_path, "sweep"), str(sweep_path))
            sweeps.append(load_sweep(sweep_path, recorded=recorded))
        except InputError as e:
            fail(f"searches[{i}]", str(e))
        splits = {(s.base.train_examples, s.base.data.validation_examples) for s in sweeps}
        if len(splits) > 1 or None in {v for _, v in splits}:
            fail(f"searches[{i}]", f"{relative} does not hold out the same validation examples as the searches "
                                   f"before it (training, validation examples: {sorted(splits, key=str)})")
    return FrontierDesign(path, raw["name"], raw["version"], raw.get("description", ""), sweeps,
                          [float(t) for t in targets])


def recorded_noises(results: Path, raw: dict, where: str) -> dict:
    """{cell: (noise, spec_sha256)} of a search's committed frontier.json; InputError when there is
    none (the frontier chooses from records: it never calibrates or trains)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("version"), int):
        raise InputError(f"{where}: name / version: missing or not a name and an integer")
    path = files.sweep_folder(results, raw["name"], raw["version"]) / "frontier.json"
    if not path.is_file():
        raise InputError(f"{path}: missing: the search {where} has no record under {results} "
                         f"(`make tune TUNE={raw['name']}` writes it)")
    with files.reading(path, "a search's record"):
        cells = files.read_json(path, "a search's record")["cells"]
        return {c["cell"]: (c["noise_multiplier"], c["spec_sha256"]) for c in cells if c.get("private")}


def trials(sweep: Sweep, results: Path) -> list[Trial]:
    """Every private cell of a search with its recorded scores; InputError when its record is missing."""
    folder = files.sweep_folder(results, sweep.name, sweep.version)
    cells_path, chosen_path = folder / "frontier.json", folder / "selection.json"
    for p in (cells_path, chosen_path):
        if not p.is_file():
            raise InputError(f"{p}: missing: the search {sweep.path} has no committed record "
                             f"(`make tune TUNE={sweep.name}` writes it)")
    cells = {c["cell"]: c for c in files.read_json(cells_path, "a search's record")["cells"]}
    scores = {}
    with files.reading(chosen_path, "a search's selection"):
        for choice in files.read_json(chosen_path, "a search's selection")["choices"]:
            for candidate in choice["candidates"]:
                scores[candidate["cell"]] = candidate
    out = []
    for cell in sweep.cells:
        if not cell.spec.private:
            continue
        if cell.name not in cells or cell.name not in scores:
            raise InputError(f"{chosen_path}: cell {cell.name}: not in the record: run `dprepro select` again")
        recorded = cells[cell.name]
        if recorded["of_record"] is None or not math.isfinite(recorded["epsilon_of_record"]):
            raise InputError(f"{cells_path}: cell {cell.name}: epsilon_of_record: none that holds")
        out.append(Trial(sweep.name, cell.name, cell.spec, recorded["test_accuracy"]["n"],
                         recorded["epsilon_of_record"], scores[cell.name]["validation_accuracy"],
                         scores[cell.name]["test_accuracy"]))
    return out


def identity(spec: Spec) -> str:
    """What a schedule trains, without its name, version, seeds and prose: equal for a trial and the
    shipped spec that pins it (the spec's own content hash, those three fields set alike)."""
    return spec.replace({"name": "schedule", "version": 1, "seeds": [0]}).sha256


def shipped_pins(experiments: Path) -> dict:
    """{identity: spec name} of the shipped experiment specs."""
    return {identity(spec): spec.name for spec in map(load_spec, sorted(Path(experiments).glob("*.yaml")))}


def pin_name(design: FrontierDesign, target: float) -> str:
    """A new point's spec name: `<design>-eps<t>`, from version 2 on `<design>-v<version>-eps<t>`, so that
    an earlier version's pin of another trial at the same target keeps its name and its result."""
    return f"{design.name}-eps{target:g}" if design.version == 1 else f"{design.name}-v{design.version}-eps{target:g}"


def choose(design: FrontierDesign, results: Path, experiments: Path) -> dict:
    """The frontier: per target, the chosen trial, its candidates' count, both epsilons and its pin."""
    every = [t for sweep in design.searches for t in trials(sweep, results)]
    pins = shipped_pins(experiments)
    points, named = [], {}           # a trial chosen at several targets is pinned once, by its first name
    for target in design.targets:
        candidates = [t for t in every if t.epsilon <= target]
        if not candidates:
            raise InputError(f"{design.path}: targets: no trial has an epsilon of record within {target:g}")
        best = min(candidates, key=lambda t: (-t.validation_accuracy, t.epsilon, t.cell))
        runs = [t.spec for t in candidates for _ in range(t.seeds)]
        points.append({
            "target": target, "chosen": best.cell, "search": best.search,
            "validation_accuracy": best.validation_accuracy, "test_accuracy_of_the_trial": best.test_accuracy,
            "epsilon_of_record": best.epsilon, "noise_multiplier": best.spec.privacy.noise_multiplier,
            "candidates": len(candidates),
            "epsilon_with_search": search_epsilon(runs, 1, best.spec, best.spec.privacy.delta),
            "pinned_as": pins.get(identity(best.spec)),
            "pin_name": pins.get(identity(best.spec)) or named.setdefault(best.cell, pin_name(design, target))})
    whole = [t.spec for t in every for _ in range(t.seeds)]
    return {"design": design.name, "version": design.version, "design_file": design.path,
            "chosen_on": "validation accuracy (mean over the trial's seeds); the test set is never read to choose",
            "search_accountant": SEARCH_ACCOUNTANT, "trials": len(every),
            "searches": [f"{s.name} v{s.version}" for s in design.searches],
            "epsilon_of_the_whole_design": search_epsilon(whole[:-1], 1, whole[-1], whole[-1].privacy.delta),
            "points": points}


def pin_spec(design: FrontierDesign, point: dict, chosen: Spec, seeds: list, also: tuple = ()) -> str:
    """A chosen trial that no shipped spec pins, as an experiment spec file of its own (`also`: the
    larger targets at which the same trial was chosen again)."""
    raw = chosen.to_dict()
    search = point["epsilon_with_search"]
    raw.update(name=point["pin_name"], version=1, seeds=list(seeds), expected={})
    raw["description"] = (
        f"The tuned frontier's point at epsilon of record {point['target']:g} (design {design.name} v{design.version}, "
        f"{design.path}): trial {point['chosen']} of search {point['search']}, the best validation accuracy "
        f"({point['validation_accuracy']:.4f}, on the training file's last {chosen.data.validation_examples} examples, "
        f"never trained on) of the {point['candidates']} trials whose epsilon of record is within the target. Its "
        f"epsilon of record ({point['epsilon_of_record']:.3f}) excludes that search; with it (every candidate and one "
        f"run of this schedule composed, {search['accountant']}) epsilon is {search['epsilon']:.3f} at delta "
        f"{search['delta']:g}."
        + (f" The same trial is the frontier's point at {' and '.join(f'{t:g}' for t in also)} too (no better "
           f"validation score among the trials added there)." if also else ""))
    raw["source"] = (f"dprepro's own search: `dprepro frontier {design.path}` "
                     f"(results/sweeps/{design.name}/v{design.version}/choice.json).")
    header = f"# Written by `dprepro frontier {design.path}`: the tuned frontier's point at {point['target']:g}.\n"
    return header + yaml.safe_dump(raw, sort_keys=False, width=100)


def write_choice(results: Path, record: dict) -> Path:
    path = files.sweep_folder(results, record["design"], record["version"]) / "choice.json"
    files.write_json(path, record)
    return path


def table(record: dict) -> str:
    width = max([58] + [len(p["chosen"]) for p in record["points"]])      # the columns stay aligned
    lines = [f"{'target':>7}  {'chosen trial':<{width}} {'val acc':>8} {'eps of record':>13} {'eps w/ search':>13} "
             f"{'cands':>5}  pinned as"]
    for p in record["points"]:
        lines.append(f"{p['target']:>7g}  {p['chosen']:<{width}} {p['validation_accuracy']:>8.4f} "
                     f"{p['epsilon_of_record']:>13.3f} {p['epsilon_with_search']['epsilon']:>13.3f} "
                     f"{p['candidates']:>5}  {p['pinned_as'] or p['pin_name'] + ' (to pin)'}")
    whole = record["epsilon_of_the_whole_design"]
    lines.append(f"the whole design: {record['trials']} trials of {', '.join(record['searches'])}; every trial "
                 f"composed ({whole['accountant']}): epsilon {whole['epsilon']:.3f} at delta {whole['delta']:g}")
    return "\n".join(lines)

"""Sweep files (experiments/sweeps/*.yaml): validated as strictly as experiment specs, expanded
into cells. A cell is the base spec with the grid's values put in, named `<sweep>-<values>`,
versioned with the sweep's version, its seeds the sweep's; it is written out as an ordinary spec
file, so `dprepro run` on that file trains exactly what the sweep trains.

    schema: 1
    name: frontier
    version: 1
    description: ...
    base: ../tutorial-15ep-poisson.yaml     # relative to the sweep file
    grid:                                   # the cartesian product, in this order
      target_epsilon: {accountant: rdp, values: [0.5, 1, 2, 4, 8]}   # calibrated noise multipliers
      training.epochs: [3, 15]              # or any field of the base spec, by its dotted name
      training.batch_size: [2048, 4096]     # keeps the base's examples per microbatch (num_microbatches follows)
      data_dir: [data/mnist]                # where a cell's workers read MNIST (not part of the spec)
    nonprivate: true                        # add the base schedule without privacy (engine none)
    seeds: [0, 1, 2]
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from dprepro.errors import InputError, field_name, shown
from dprepro.files import read_yaml
from dprepro.spec import CALIBRATABLE, SECTIONS, Spec, load_spec
from dprepro.spec.schema import MAX_VERSION, check_kind

SCHEMA = 1
FIELDS = {"schema", "name", "version", "description", "base", "grid", "nonprivate", "seeds"}
TARGET = "target_epsilon"
DATA_DIR = "data_dir"
MAX_CELLS = 1000


@dataclass(frozen=True)
class Cell:
    name: str
    values: dict           # the grid's values for this cell, by grid key
    spec: Spec             # the ordinary experiment spec the cell runs
    data_dir: str | None   # where its workers read MNIST (None: the sweep's --data-dir or the default)


@dataclass(frozen=True)
class Sweep:
    path: str
    name: str
    version: int
    description: str
    base: Spec
    grid: dict
    nonprivate: bool
    seeds: list
    cells: list


def load_sweep(path, written: Path | None = None, recorded: dict | None = None, progress=None) -> Sweep:
    """Read, validate and expand a sweep file; InputError naming the file and the field on any fault.
    `written`: the OUT folder of an earlier `dprepro sweep` of it. A cell's noise found in the cell
    spec it wrote there (OUT/sweeps/<name>/v<version>/specs/) is reused when it checks as the
    calibration's (calibration.is_calibration: two epsilon evaluations instead of a search); any
    other cell is calibrated; cells with the same accounted schedule (calibration.schedule_key: a
    learning-rate axis, say) share one noise, calibrated or checked once. `recorded`: {cell name:
    (noise, spec_sha256)} from a search's committed record (frontier.json): such a cell takes that
    noise without an epsilon evaluation, and must then hash to the recorded content (InputError
    otherwise: the sweep changed since the record).
    `progress`: called with one line per calibration started (a PLD search can take minutes a cell)."""
    path = str(path)
    raw, fail = read_document(path, "sweep", FIELDS, ("schema", "name", "version", "base", "grid", "seeds"), SCHEMA)
    for key, kind in (("name", "name"), ("version", "int"), ("seeds", "seeds"), ("nonprivate", "bool")):
        if key in raw:          # the experiment spec's own checks for the fields the two share
            check_kind(raw[key], kind, key, fail)
    if not 1 <= raw["version"] <= MAX_VERSION:
        fail("version", f"must be an integer from 1 to {MAX_VERSION}")
    if not isinstance(raw.get("description", ""), str):
        fail("description", "must be text")
    seeds = raw["seeds"]
    if not isinstance(raw["base"], str):
        fail("base", "must be the path of an experiment spec, relative to the sweep file")

    base_path = Path(path).parent / raw["base"]
    try:
        base = load_spec(base_path)
    except InputError as e:
        fail("base", f"{e}")
    grid = raw["grid"]
    if not isinstance(grid, dict) or not grid:
        fail("grid", "a non-empty mapping of field -> list of values")
    axes = []
    for key, values in grid.items():
        axes.append(_axis(key, values, base, fail))
    cells = list(itertools.product(*axes))
    if len(cells) > MAX_CELLS:
        fail("grid", f"{len(cells)} cells; at most {MAX_CELLS}")
    sweep = {"name": raw["name"], "version": raw["version"], "seeds": seeds,
             "written": written_noises(written, raw["name"], raw["version"]), "recorded": recorded or {},
             "progress": progress or (lambda line: None), "calibrated": {}}
    expanded = [_cell(dict(zip(grid, combo)), base, sweep, path, fail) for combo in cells]
    if raw.get("nonprivate", False):
        expanded.append(_nonprivate_cell(base, sweep, path, fail))
    names = [c.name for c in expanded]
    if len(set(names)) != len(names):
        fail("grid", "two cells get the same name (repeated values?)")
    return Sweep(path, raw["name"], raw["version"], raw.get("description", ""), base, grid,
                 raw.get("nonprivate", False), seeds, expanded)


def read_document(path: str, kind: str, fields: set, required: tuple, schema: int):
    """A versioned YAML document of `kind` (a sweep, a frontier design): its mapping, checked for unknown
    and missing fields and its schema, and the `fail(field, message)` that raises InputError naming
    the file and the field."""
    raw = read_yaml(path, kind)

    def fail(field, message):
        raise InputError(f"{path}: {field}: {message}")

    if not isinstance(raw, dict):
        fail("(top level)", "must be a mapping of fields")
    for key in raw:
        if key not in fields:
            fail(field_name(key), f"unknown field (known: {', '.join(sorted(fields))})")
    for key in required:
        if key not in raw:
            fail(key, "required field missing")
    if raw["schema"] != schema:
        fail("schema", f"unsupported schema {shown(raw['schema'])} (this dprepro reads {kind} schema {schema})")
    return raw, fail


def _axis(key, values, base: Spec, fail) -> list:
    field = f"grid.{field_name(key)}"
    if key == TARGET:
        if not isinstance(values, dict) or set(values) != {"accountant", "values"}:
            fail(field, f"a mapping with `accountant` (one of {', '.join(CALIBRATABLE)}) and `values` (a list)")
        if values["accountant"] not in CALIBRATABLE:
            fail(f"{field}.accountant", f"{shown(values['accountant'])} is not one of {', '.join(CALIBRATABLE)}")
        if not base.private:
            fail(field, "the base spec is non-private: nothing to calibrate")
        targets = values["values"]
        if not isinstance(targets, list) or not targets or any(
                type(t) not in (int, float) or not 0.01 <= t <= 100 for t in targets):
            fail(f"{field}.values", "a non-empty list of numbers from 0.01 to 100")
        return [(values["accountant"], float(t)) for t in targets]
    if not isinstance(values, list) or not values:
        fail(field, "a non-empty list of values")
    if key == DATA_DIR:
        if any(not isinstance(v, str) or not v for v in values):
            fail(field, "folder paths (text)")
        return values
    if not isinstance(key, str) or key.count(".") != 1 or key.split(".")[0] not in SECTIONS \
            or key.split(".")[1] not in SECTIONS[key.split(".")[0]]:
        fail(field, f"not a field of an experiment spec (write section.field, e.g. training.epochs), "
                    f"nor {TARGET} or {DATA_DIR}")
    return values


def _short(key: str, value) -> str:
    if key == TARGET:
        return f"eps{value[1]:g}"
    if key == DATA_DIR:
        return "data-" + hashlib.sha256(value.encode()).hexdigest()[:6]   # keeps names apart; the path is in the cell
    field = key.split(".")[1]
    return f"{ {'noise_multiplier': 'sigma', 'epochs': 'ep'}.get(field, field)}{value}".replace(" ", "")


def _cell(values: dict, base: Spec, sweep: dict, path: str, fail) -> Cell:
    changes, described = {}, []
    for key, value in values.items():
        if key not in (TARGET, DATA_DIR):
            changes[key] = value
            described.append(f"{key} = {value}")
    if "training.batch_size" in changes and "privacy.num_microbatches" not in changes and base.private:
        # a batch-size axis keeps the base's examples per microbatch (one, for Poisson sampling)
        changes["privacy.num_microbatches"] = changes["training.batch_size"] // base.microbatch_size
    name = "-".join([sweep["name"]] + [_short(k, v) for k, v in values.items() if k != DATA_DIR or len(values) == 1])
    changes.update(name=name, version=sweep["version"], seeds=sweep["seeds"],
                   expected={})                   # the base's published values are not the cell's
    where = f"{path}: cell {name}"
    if TARGET in values:
        from dprepro import calibration

        accountant, target = values[TARGET]
        spec = _replaced(base, changes, where)   # the cell's schedule, to calibrate its noise
        noise, recorded_sha = sweep["recorded"].get(name, (sweep["written"].get(name), None))
        if recorded_sha is None:
            # cells that differ only where the accounting does not look (the learning rate, say) share one
            # noise, found (or a written one checked) once
            key = (calibration.schedule_key(spec), target, accountant)
            if key not in sweep["calibrated"]:
                if noise is None or not calibration.is_calibration(spec, noise, target, accountant):
                    sweep["progress"](f"calibrating the noise of {name} to {accountant} epsilon {target:g}")
                    try:
                        noise = calibration.calibrated_noise(spec, target, accountant)
                    except ValueError as e:
                        fail(f"grid.{TARGET}.values", f"cell {name}: {e}")
                sweep["calibrated"][key] = noise
            noise = sweep["calibrated"][key]
        changes["privacy.noise_multiplier"] = noise
        described.append(f"noise_multiplier {noise} (calibrated: {accountant} epsilon {target:g} at delta "
                         f"{spec.privacy.delta:g})")
    changes["description"] = (f"Cell {name} of sweep {sweep['name']} v{sweep['version']} ({path}): base {base.path} "
                              f"with " + "; ".join(described) + ".")
    cell = Cell(name, values, _replaced(base, changes, where), values.get(DATA_DIR))
    if TARGET in values and recorded_sha is not None and cell.spec.sha256 != recorded_sha:
        fail("grid", f"cell {name} is not the one the search recorded (content hash {cell.spec.sha256[:12]}, "
                     f"recorded {recorded_sha[:12]}): the sweep or its base changed since")
    return cell


def written_noises(out: Path | None, name: str, version: int) -> dict:
    """{cell name: noise multiplier} of the cell specs an earlier sweep wrote under `out` (none if
    `out` is None); a file that cannot be read, or holds no number there, is left out."""
    if out is None:
        return {}
    found = {}
    for path in sorted((Path(out) / "sweeps" / name / f"v{version}" / "specs").glob("*.yaml")):   # none if absent
        try:            # the strict reader: a file that cannot be read, or holds no number there, is left out
            noise = read_yaml(path, "a cell spec")["privacy"]["noise_multiplier"]
        except (InputError, TypeError, KeyError):
            continue
        if isinstance(noise, (int, float)) and not isinstance(noise, bool) and math.isfinite(noise):
            found[path.stem] = float(noise)
    return found


def _nonprivate_cell(base: Spec, sweep: dict, path: str, fail) -> Cell:
    name = f"{sweep['name']}-nonprivate"
    changes = {"name": name, "version": sweep["version"], "seeds": sweep["seeds"], "expected": {},
               "privacy": {"enabled": False}, "engine": {"name": "none", "use_xla": False},
               "data.sampling": "shuffle",
               "description": f"Cell {name} of sweep {sweep['name']} v{sweep['version']} ({path}): base {base.path} "
                              f"without privacy (plain SGD, shuffled): the non-private line of the frontier."}
    return Cell(name, {"nonprivate": True}, _replaced(base, changes, f"{path}: cell {name}"), None)


def _replaced(base: Spec, changes: dict, where: str) -> Spec:
    """The base with a cell's changes, validated again (errors name the sweep file and the cell);
    the cell's path is the sweep file's."""
    return dataclasses.replace(base.replace(changes, path=where), path=where.split(": cell ")[0])


def cell_yaml(cell: Cell) -> str:
    """The cell as an ordinary experiment spec file."""
    header = f"# Written by `dprepro sweep` from {cell.spec.path}; run it alone with `dprepro run <this file>`.\n"
    return header + yaml.safe_dump(cell.spec.to_dict(), sort_keys=False)

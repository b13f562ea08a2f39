"""Reading a result file (`compare`, `report`, `evaluate`, the frontier): JSON, then every field
those commands use checked for presence, type and range, so that a truncated or hand-edited file is
one line naming the file and the field (exit 2), never a traceback. The result comes back as a dict
whose `spec` is the resolved, typed `Spec` (defaults filled in: nobody re-defaults a field)."""

from __future__ import annotations

import json
import math

from dprepro.errors import InputError, shown
from dprepro.files import read_text_file
from dprepro.spec import ENGINES, Spec, validate

NUMBER = (int, float)
HISTORY = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def load_result(path):
    """The checked result at `path` as the typed record (records/result.py's Result)."""
    from dprepro.records.result import Result

    return Result.load(path)


def parse_result(path) -> dict:
    """The JSON of the result file at `path`, unchecked (InputError if it is not JSON)."""
    text = read_text_file(str(path), "result")
    try:
        result = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not a result file (invalid JSON at line {e.lineno})") from None
    except RecursionError:
        raise InputError(f"{path}: not a result file (nested too deeply)") from None
    return result


class Fields:
    """Field checks of one result file: each failure is InputError("PATH: field: what is wrong")."""

    def __init__(self, path):
        self.path = path

    def fail(self, field, message):
        raise InputError(f"{self.path}: {field}: {message}")

    def get(self, obj, field, kinds, where, optional=False):
        if not isinstance(obj, dict):
            self.fail(where or "(top level)", "must be a JSON object")
        if field not in obj:
            if optional:
                return None
            self.fail(f"{where}.{field}".lstrip("."), "missing")
        value, allowed = obj[field], kinds if isinstance(kinds, tuple) else (kinds,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            self.fail(f"{where}.{field}".lstrip("."), f"must be {kind_name(kinds)}, got {shown(value)}")
        return value

    def number(self, obj, field, where, low=-math.inf, epsilon=False):
        value = self.get(obj, field, (*NUMBER, str) if epsilon else NUMBER, where)
        if isinstance(value, str) and value != "inf":
            self.fail(f"{where}.{field}", f"must be a number or \"inf\", got {shown(value)}")
        if not isinstance(value, str) and not value >= low:
            self.fail(f"{where}.{field}", f"must be a number >= {low:g}, got {shown(value)}")
        return value


def check_result(r, path) -> Spec:
    """Check every field the commands use; return the result's resolved spec."""
    f = Fields(path)
    spec = check_header(f, r)
    check_epsilon(f, f.get(r, "epsilon", (dict, type(None)), ""), spec)
    check_seeds(f, r, spec)
    return spec


def check_header(f: Fields, r) -> Spec:
    """Name, version, spec (validated and typed), run and environment."""
    f.get(r, "name", str, "")
    f.get(r, "version", int, "")
    f.get(r, "spec_sha256", str, "")
    spec = Spec.from_resolved(f"{f.path}: spec", validate(f.get(r, "spec", dict, ""), f"{f.path}: spec"))
    run = f.get(r, "run", dict, "")
    if f.get(run, "engine", str, "run") not in ENGINES:
        f.fail("run.engine", f"unknown engine {shown(run['engine'])}")
    f.get(run, "engine_version", int, "run", optional=True)
    env = f.get(r, "environment", dict, "")
    f.get(env, "cpu", str, "environment")
    f.get(env, "cpu_count", (int, type(None)), "environment")
    f.get(f.get(env, "devices", dict, "environment"), "gpus", list, "environment.devices")
    arithmetic = f.get(env, "arithmetic", dict, "environment", optional=True)
    if arithmetic is not None:
        f.get(arithmetic, "id", str, "environment.arithmetic")
    return spec


def check_epsilon(f: Fields, block, spec: Spec) -> None:
    """The epsilon block (None for a non-private run): every value, the value of record."""
    if block is None:
        return
    f.number(block, "delta", "epsilon", low=0)
    accountants = f.get(block, "accountants", dict, "epsilon")
    for name, value in accountants.items():
        f.number(value, "epsilon", f"epsilon.accountants.{name}", low=0, epsilon=True)
        f.get(value, "holds_for_this_run", bool, f"epsilon.accountants.{name}", optional=True)
    best = f.get(block, "of_record", (str, type(None)), "epsilon", optional=True)
    if best is not None and best not in accountants:
        f.fail("epsilon.of_record", f"names no accountant of the block: {shown(best)}")
    for name, value in (f.get(block, "lower_bounds", dict, "epsilon", optional=True) or {}).items():
        f.number(value, "epsilon", f"epsilon.lower_bounds.{name}", low=0, epsilon=True)
    interval = f.get(block, "interval", (dict, type(None)), "epsilon", optional=True)
    if interval and not float(interval["lower"]) <= float(interval["upper"]) * (1 + 1e-6):
        f.fail("epsilon.interval", f"its lower end {interval['lower']} is above its upper end {interval['upper']}")
    for quantity, value in (f.get(block, "under_published_conventions", dict, "epsilon", optional=True) or {}).items():
        f.number(value, "epsilon", f"epsilon.under_published_conventions.{quantity}", low=0, epsilon=True)
        if quantity not in spec.expected:
            f.fail(f"epsilon.under_published_conventions.{quantity}", "not among the spec's expected values")


def check_seeds(f: Fields, r, spec: Spec) -> None:
    """The summaries over seeds and every seed's history (one number per epoch) and times."""
    for key in ("test_accuracy", "train_accuracy"):
        summary = f.get(r, key, dict, "")
        f.number(summary, "mean", key)
        f.number(summary, "std", key, low=0)
        if f.get(summary, "n", int, key) < 1:
            f.fail(f"{key}.n", f"must be >= 1, got {summary['n']}")
    seeds = f.get(r, "seeds", list, "")
    if not seeds:
        f.fail("seeds", "must list at least one seed")
    epochs = spec.training.epochs
    for i, seed in enumerate(seeds):
        where = f"seeds[{i}]"
        f.get(seed, "seed", int, where)
        f.number(seed, "test_accuracy", where)
        history = f.get(seed, "history", dict, where)
        for key in ("epoch", *HISTORY):
            values = f.get(history, key, list, f"{where}.history")
            if len(values) != epochs or not all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in values):
                f.fail(f"{where}.history.{key}", f"must be {epochs} numbers (one per epoch)")
        times = f.get(seed, "epoch_seconds", list, where)
        if not times or not all(isinstance(t, NUMBER) and not isinstance(t, bool) for t in times):
            f.fail(f"{where}.epoch_seconds", "must be a non-empty list of numbers")
        check_ledger(f, f.get(seed, "ledger", dict, where, optional=True), f"{where}.ledger", spec)


def check_ledger(f: Fields, book, where: str, spec: Spec) -> None:
    """A seed's privacy ledger (ledger.py; absent from results pinned before it): releases, and
    run-length encoded steps, consecutive from step 1, as many as the spec trains."""
    if book is None:
        return
    for i, release in enumerate(f.get(book, "releases", list, where)):
        f.number(release, "noise_multiplier", f"{where}.releases[{i}]", low=0)
    expected = 1
    for i, entry in enumerate(f.get(book, "steps", list, where)):
        at = f"{where}.steps[{i}]"
        if f.get(entry, "first_step", int, at) != expected:
            f.fail(f"{at}.first_step", f"must be {expected} (the step after the entry before), got {entry['first_step']}")
        expected += f.get(entry, "steps", int, at)
        f.number(entry, "noise_multiplier", at, low=0)
        f.get(entry, "l2_norm_clip", (*NUMBER, type(None)), at)
        f.get(entry, "examples_per_microbatch", int, at)
        f.get(entry, "sampling", str, at)
        f.number(entry, "sampling_rate", at, low=0)
    if expected - 1 != spec.steps_trained:
        f.fail(f"{where}.steps", f"records {expected - 1} steps, the spec trains {spec.steps_trained}")


def kind_name(kinds) -> str:
    names = {dict: "an object", list: "a list", str: "text", int: "an integer", float: "a number",
             bool: "true or false", type(None): "null"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(dict.fromkeys(names[k] for k in kinds))

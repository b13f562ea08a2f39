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


def load_result(path) -> dict:
    """The checked result at `path`, its `spec` typed (a `Spec`)."""
    text = read_text_file(str(path), "result")
    try:
        result = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not a result file (invalid JSON at line {e.lineno})") from None
    except RecursionError:
        raise InputError(f"{path}: not a result file (nested too deeply)") from None
    result["spec"] = check_result(result, path)
    return result


def check_result(r, path) -> Spec:
    """Check every field the commands use; return the result's resolved spec."""
    def fail(field, message):
        raise InputError(f"{path}: {field}: {message}")

    def get(obj, field, kinds, where, optional=False):
        if not isinstance(obj, dict):
            fail(where or "(top level)", "must be a JSON object")
        if field not in obj:
            if optional:
                return None
            fail(f"{where}.{field}".lstrip("."), "missing")
        value, allowed = obj[field], kinds if isinstance(kinds, tuple) else (kinds,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            fail(f"{where}.{field}".lstrip("."), f"must be {kind_name(kinds)}, got {shown(value)}")
        return value

    def number(obj, field, where, low=-math.inf, epsilon=False):
        value = get(obj, field, (*NUMBER, str) if epsilon else NUMBER, where)
        if isinstance(value, str) and value != "inf":
            fail(f"{where}.{field}", f"must be a number or \"inf\", got {shown(value)}")
        if not isinstance(value, str) and not value >= low:
            fail(f"{where}.{field}", f"must be a number >= {low:g}, got {shown(value)}")
        return value

    get(r, "name", str, "")
    get(r, "version", int, "")
    get(r, "spec_sha256", str, "")
    spec = Spec.from_resolved(f"{path}: spec", validate(get(r, "spec", dict, ""), f"{path}: spec"))
    run = get(r, "run", dict, "")
    if get(run, "engine", str, "run") not in ENGINES:
        fail("run.engine", f"unknown engine {shown(run['engine'])}")
    get(run, "engine_version", int, "run", optional=True)
    env = get(r, "environment", dict, "")
    get(env, "cpu", str, "environment")
    get(env, "cpu_count", (int, type(None)), "environment")
    get(get(env, "devices", dict, "environment"), "gpus", list, "environment.devices")
    arithmetic = get(env, "arithmetic", dict, "environment", optional=True)
    if arithmetic is not None:
        get(arithmetic, "id", str, "environment.arithmetic")
    block = get(r, "epsilon", (dict, type(None)), "")
    if block is not None:
        number(block, "delta", "epsilon", low=0)
        accountants = get(block, "accountants", dict, "epsilon")
        for name, value in accountants.items():
            number(value, "epsilon", f"epsilon.accountants.{name}", low=0, epsilon=True)
            get(value, "holds_for_this_run", bool, f"epsilon.accountants.{name}", optional=True)
        best = get(block, "of_record", (str, type(None)), "epsilon", optional=True)
        if best is not None and best not in accountants:
            fail("epsilon.of_record", f"names no accountant of the block: {shown(best)}")
        for quantity, value in (get(block, "under_published_conventions", dict, "epsilon", optional=True) or {}).items():
            number(value, "epsilon", f"epsilon.under_published_conventions.{quantity}", low=0, epsilon=True)
            if quantity not in spec.expected:
                fail(f"epsilon.under_published_conventions.{quantity}", "not among the spec's expected values")
    for key in ("test_accuracy", "train_accuracy"):
        summary = get(r, key, dict, "")
        number(summary, "mean", key)
        number(summary, "std", key, low=0)
        if get(summary, "n", int, key) < 1:
            fail(f"{key}.n", f"must be >= 1, got {summary['n']}")
    seeds = get(r, "seeds", list, "")
    if not seeds:
        fail("seeds", "must list at least one seed")
    epochs = spec.training.epochs
    for i, seed in enumerate(seeds):
        where = f"seeds[{i}]"
        number(seed, "test_accuracy", where)
        history = get(seed, "history", dict, where)
        for key in ("epoch", *HISTORY):
            values = get(history, key, list, f"{where}.history")
            if len(values) != epochs or not all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in values):
                fail(f"{where}.history.{key}", f"must be {epochs} numbers (one per epoch)")
        times = get(seed, "epoch_seconds", list, where)
        if not times or not all(isinstance(t, NUMBER) and not isinstance(t, bool) for t in times):
            fail(f"{where}.epoch_seconds", "must be a non-empty list of numbers")
    return spec


def kind_name(kinds) -> str:
    names = {dict: "an object", list: "a list", str: "text", int: "an integer", float: "a number",
             bool: "true or false", type(None): "null"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(dict.fromkeys(names[k] for k in kinds))

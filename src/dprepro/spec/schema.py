"""The spec schema: every field, its kind, its default and its allowed values, and `validate`,
which turns a raw mapping (from YAML or from a result file) into the resolved mapping (defaults
filled in) or raises `InputError("PATH: field.path: what is wrong")` for the first bad field.

Every field is documented in docs/spec-format.md. The typed view of a resolved spec is `Spec`
(spec/typed.py); nothing else reads these mappings by key.
"""

from __future__ import annotations

import copy
import math
import re

from dprepro.errors import InputError, field_name, shown
from dprepro.spec import selective

SCHEMA = 1
ENGINES = ("tutorial", "fast", "vectorized", "none")
POISSON_ENGINES = ("fast", "vectorized")
# Bumped whenever an engine's arithmetic changes; recorded in every result and checked against the pinned
# one. fast v1 was tf-privacy's DPSequential (now `vectorized`); v2 fast_dp.py, the first Conv2D's per-example
# gradients by a depthwise convolution; v3 by space-to-depth and matmuls. v4 / v2 (dprepro 0.4): batches and
# the fast engine's noise from step-addressed streams (sampling.py; exact resume). v5 / v3 (0.6): Poisson
# batches drawn in float64, padded to size buckets; shuffled training bit for bit as v4 / v2.
ENGINE_VERSIONS = {"tutorial": 2, "fast": 5, "vectorized": 3, "none": 2}
MODELS = ("tutorial_cnn", "scatternet_linear", "scatternet_cnn", "pca_mlp")
FEATURES = ("none", "scatternet", "dp_pca")
MODEL_INPUTS = {"tutorial_cnn": "none", "scatternet_linear": "scatternet", "scatternet_cnn": "scatternet",
                "pca_mlp": "dp_pca"}
PIXELS = 28 * 28
NORMALIZATIONS = ("none", "group", "private")
PRIVATE_NORM_FIELDS = ("norm_noise_multiplier", "norm_clip_mean", "norm_clip_square")
SCATTERNET_CHANNELS = 81
POOLINGS = ("max", "average")
ACTIVATIONS = ("relu", "tanh")
SCHEDULES = ("constant", "linear")
DATASETS = {"mnist": {"train": 60000, "test": 10000}}
CALIBRATABLE = ("rdp_legacy", "rdp", "pld")    # the Poisson accountants a noise can be calibrated for
EXPECTED_QUANTITIES = ("epsilon_rdp_legacy", "epsilon_rdp", "epsilon_pld", "epsilon_statement_once_per_epoch",
                       "epsilon_statement_poisson", "test_accuracy", "train_accuracy")
NOT_HASHED = ("description", "source", "expected")
SAMPLINGS = ("shuffle", "poisson")
# reproducible: every draw from the recorded seed (anyone with the result file can regenerate it);
# secret: sampling, noise and released statistics from 128 bits of the operating system's entropy.
RANDOMNESS = ("reproducible", "secret")
# Fields added after specs were pinned: at these values they describe what every earlier spec did,
# so they are left out of the content hash (a spec's identity does not change with the schema).
HASH_NEUTRAL = {("data", "sampling"): "shuffle", ("data", "features"): "none", ("data", "normalization"): "none",
                ("data", "norm_groups"): None, ("data", "norm_noise_multiplier"): None, ("data", "norm_clip_mean"): None,
                ("data", "norm_clip_square"): None, ("data", "pca_dimensions"): None, ("data", "pca_noise_multiplier"): None,
                ("model", "activation"): "relu", ("data", "validation_examples"): None, ("privacy", "randomness"): "reproducible",
                ("training", "momentum"): 0.0, ("training", "learning_rate_schedule"): "constant",
                ("training", "final_learning_rate"): None, ("training", "decay_epochs"): None,
                ("training", "ema_decay"): None, ("privacy", "selective_update"): None,
                ("privacy", "selective_update", "published_epsilon"): None}
# How an `expected` epsilon was computed when not as dprepro computes the run's own value.
STEP_RULES = ("trained", "ceil", "floor")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

# Field tables: key -> (kind, default). A default of REQUIRED means the key must be given.
REQUIRED = object()
TOP = {
    "schema": ("int", REQUIRED), "name": ("name", REQUIRED), "version": ("int", REQUIRED),
    "description": ("str", REQUIRED), "source": ("str", REQUIRED),
    "data": ("section", REQUIRED), "model": ("section", REQUIRED),
    "training": ("section", REQUIRED), "privacy": ("section", None),
    "engine": ("section", None), "seeds": ("seeds", REQUIRED), "expected": ("expected", {}),
}
SECTIONS = {
    "data": {"dataset": ("str", "mnist"), "sampling": ("str", "shuffle"), "train_examples": ("int?", None),
             "test_examples": ("int?", None), "url": ("str?", None), "features": ("str", "none"),
             "normalization": ("str", "none"), "norm_groups": ("int?", None),
             "norm_noise_multiplier": ("num?", None), "norm_clip_mean": ("num?", None),
             "norm_clip_square": ("num?", None), "pca_dimensions": ("int?", None),
             "pca_noise_multiplier": ("num?", None), "validation_examples": ("int?", None)},
    "model": {"name": ("str", REQUIRED), "pooling": ("str", "max"), "activation": ("str", "relu")},
    "training": {"epochs": ("int", REQUIRED), "batch_size": ("int", REQUIRED),
                 "learning_rate": ("num", REQUIRED), "optimizer": ("str", "sgd"), "momentum": ("num", 0.0),
                 "learning_rate_schedule": ("str", "constant"), "final_learning_rate": ("num?", None),
                 "decay_epochs": ("int?", None), "ema_decay": ("num?", None)},
    "privacy": {"enabled": ("bool", True), "l2_norm_clip": ("num", REQUIRED),
                "noise_multiplier": ("num", REQUIRED), "num_microbatches": ("int", REQUIRED),
                "delta": ("num", REQUIRED), "randomness": ("str", "reproducible"),
                "selective_update": ("section?", None)},   # spec/selective.py
    "engine": {"name": ("str", "fast"), "use_xla": ("bool", False)},
}


MAX_VERSION, MAX_EPOCHS = 10 ** 6, 10 ** 4
MAX_SEED = 2 ** 31 - 1      # what NumPy, Python and TensorFlow all take as a seed
MAX_SCALE = 1e6             # l2_norm_clip, noise_multiplier, learning_rate


# An l2_norm_clip no gradient reaches: clipping off. Only an audit twin may carry it (spec.audit_twin).
UNCLIPPED = 1e12


def validate(raw, path: str, extra_train_examples: int = 0, unclipped: bool = False) -> dict:
    """Return the resolved spec dict, or raise InputError naming the first bad field.

    Two allowances exist for audit twins only (Spec.audit_twin): `extra_train_examples` canaries
    appended to the training set (so train_examples may exceed the data set by that many), and
    `unclipped` (l2_norm_clip may be UNCLIPPED)."""

    def fail(field, message):
        raise InputError(f"{path}: {field}: {message}")

    if not isinstance(raw, dict):
        fail("(top level)", "must be a mapping of fields")
    out = _check_mapping(raw, TOP, "", fail)
    if out["schema"] != SCHEMA:
        fail("schema", f"unsupported schema {shown(out['schema'])} (this dprepro reads schema {SCHEMA})")
    if not 1 <= out["version"] <= MAX_VERSION:
        fail("version", f"must be an integer from 1 to {MAX_VERSION}")
    for section, fields in SECTIONS.items():
        given = out[section]
        if given is None and section in ("privacy", "engine"):
            given = {"enabled": False} if section == "privacy" else {}
        if not isinstance(given, dict):
            fail(section, "must be a mapping")
        if section == "privacy" and given.get("enabled") is False:  # the rest is optional, may be null
            fields = {k: (kind if k == "enabled" or kind.endswith("?") else kind + "?", None if d is REQUIRED else d)
                      for k, (kind, d) in fields.items()}
        out[section] = _check_mapping(given, fields, section + ".", fail)
    if out["privacy"].get("selective_update") is not None:
        out["privacy"]["selective_update"] = selective.resolve(out, fail, _check_mapping)
    _check_values(out, fail, extra_train_examples, unclipped)
    return out


def _check_mapping(given: dict, fields: dict, prefix: str, fail) -> dict:
    out = {}
    for key in given:
        if key not in fields:
            fail(f"{prefix}{field_name(key)}", f"unknown field (known: {', '.join(fields)})")
    for key, (kind, default) in fields.items():
        if key not in given:
            if default is REQUIRED:
                fail(f"{prefix}{key}", "required field is missing")
            out[key] = copy.deepcopy(default)
            continue
        out[key] = check_kind(given[key], kind, f"{prefix}{key}", fail)
    return out


def check_kind(value, kind: str, field: str, fail):
    """`value` checked as one of the schema's kinds (int, num, bool, str, name, seeds, ...), or fail(field, why)."""
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            fail(field, f"must be an integer, got {shown(value)}")
    elif kind == "num":
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e300:
            fail(field, f"must be a finite number, got an integer of {len(str(abs(value)))} digits")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            hint = " (YAML reads 1e-5 as text: write 1.0e-5)" if isinstance(value, str) else ""
            fail(field, f"must be a finite number, got {shown(value)}{hint}")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            fail(field, f"must be true or false, got {shown(value)}")
    elif kind in ("str", "name"):
        if not isinstance(value, str) or not value.strip():
            fail(field, f"must be a non-empty string, got {shown(value)}")
        if kind == "name" and not NAME_RE.match(value):
            fail(field, "must be lower-case letters, digits, '.', '_' or '-'")
    elif kind == "section":
        return value
    elif kind == "seeds":
        if (not isinstance(value, list) or not value
                or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in value)):
            fail(field, f"must be a non-empty list of integers from 0 to {MAX_SEED}")
        if len(set(value)) != len(value):
            fail(field, "must not repeat a seed")
    elif kind == "expected":
        return _check_expected(value, field, fail)
    return value


def _check_expected(value, field: str, fail) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(field, "must be a mapping of quantity -> {value, source}")
    entry_fields = {"value": ("num", REQUIRED), "source": ("str", REQUIRED), "note": ("str?", None),
                    "steps": ("str?", None), "used_microbatching": ("bool?", None)}
    out = {}
    for quantity, entry in value.items():
        if quantity not in EXPECTED_QUANTITIES:
            fail(f"{field}.{field_name(quantity)}", f"unknown quantity (known: {', '.join(EXPECTED_QUANTITIES)})")
        if not isinstance(entry, dict):
            fail(f"{field}.{quantity}", "must be a mapping with value and source")
        checked = _check_mapping(entry, entry_fields, f"{field}.{quantity}.", fail)
        convention = [k for k in ("steps", "used_microbatching") if checked[k] is not None]
        if convention and not quantity.startswith("epsilon_"):
            fail(f"{field}.{quantity}.{convention[0]}", "only an epsilon is computed under a convention")
        if checked["steps"] is not None and quantity.startswith("epsilon_statement"):
            fail(f"{field}.{quantity}.steps", "tf-privacy's statement counts its own steps; "
                                              f"a step rule is for {', '.join(CALIBRATABLE)}")
        if checked["steps"] is not None and checked["steps"] not in STEP_RULES:
            fail(f"{field}.{quantity}.steps", f"must be one of {', '.join(STEP_RULES)}, got {shown(checked['steps'])}")
        # Only conventions that were given are kept: the others are the run's own.
        out[quantity] = {k: v for k, v in checked.items()
                         if v is not None or k not in ("steps", "used_microbatching")}
    return out


def _check_features(data: dict, model: str, fail) -> None:
    """The feature stage, its normalisation, and a model that takes those inputs."""
    if data["features"] not in FEATURES:
        fail("data.features", f"must be one of {', '.join(FEATURES)}, got {shown(data['features'])}")
    if data["normalization"] not in NORMALIZATIONS:
        fail("data.normalization", f"must be one of {', '.join(NORMALIZATIONS)}, got {shown(data['normalization'])}")
    if data["normalization"] != "none" and data["features"] != "scatternet":
        fail("data.normalization", f"{data['normalization']} normalisation is for ScatterNet features "
                                   f"(data.features: scatternet)")
    for key in PRIVATE_NORM_FIELDS:
        if data["normalization"] != "private" and data[key] is not None:
            fail(f"data.{key}", "is for data.normalization: private")
        if data["normalization"] == "private" and not (data[key] is not None and 0 < data[key] <= MAX_SCALE):
            fail(f"data.{key}", f"private normalisation needs it, positive and at most {MAX_SCALE:g}, got {shown(data[key])}")
    if data["normalization"] == "group":
        groups = data["norm_groups"]
        if groups is None or groups < 1 or SCATTERNET_CHANNELS % groups:
            fail("data.norm_groups", f"group normalisation needs a number of groups dividing "
                                     f"{SCATTERNET_CHANNELS} (1, 3, 9, 27, 81), got {shown(groups)}")
    elif data["norm_groups"] is not None:
        fail("data.norm_groups", "is for data.normalization: group")
    for key, what in (("pca_dimensions", "an integer from 1 to 784"), ("pca_noise_multiplier", f"positive, at most {MAX_SCALE:g}")):
        if data["features"] != "dp_pca" and data[key] is not None:
            fail(f"data.{key}", "is for data.features: dp_pca")
        value = data[key]
        if data["features"] == "dp_pca" and not (value is not None and 0 < value <= (PIXELS if key == "pca_dimensions" else MAX_SCALE)):
            fail(f"data.{key}", f"DP-PCA needs it, {what}, got {shown(value)}")
    wants = MODEL_INPUTS.get(model)
    if wants is not None and data["features"] != wants:
        fail("model.name", f"model {model} takes " + {"scatternet": "ScatterNet features (data.features: scatternet)",
                                                      "dp_pca": "the DP-PCA projection (data.features: dp_pca)",
                                                      "none": "the pixels (data.features: none)"}[wants])


def _check_schedule(training: dict, fail) -> None:
    """Momentum in [0, 1), ema_decay in (0, 1); a linear schedule needs its final rate (decay_epochs
    defaults to all epochs); a constant one takes neither."""
    if not 0 <= training["momentum"] < 1:
        fail("training.momentum", f"must be from 0 to below 1, got {training['momentum']}")
    if training["ema_decay"] is not None and not 0 < training["ema_decay"] < 1:
        fail("training.ema_decay", f"must be above 0 and below 1 (or absent: no average), got {training['ema_decay']}")
    schedule = training["learning_rate_schedule"]
    if schedule not in SCHEDULES:
        fail("training.learning_rate_schedule", f"must be one of {', '.join(SCHEDULES)}, got {shown(schedule)}")
    if schedule == "constant":
        for key in ("final_learning_rate", "decay_epochs"):
            if training[key] is not None:
                fail(f"training.{key}", "is for learning_rate_schedule: linear (the schedule is constant)")
        return
    if training["final_learning_rate"] is None:
        fail("training.final_learning_rate", "required by learning_rate_schedule: linear")
    if not 0 <= training["final_learning_rate"] <= MAX_SCALE:
        fail("training.final_learning_rate", f"must be from 0 to {MAX_SCALE:g}, got {training['final_learning_rate']}")
    decay = training["decay_epochs"]
    if decay is not None and not 1 <= decay <= training["epochs"]:
        fail("training.decay_epochs", f"must be from 1 to training.epochs ({training['epochs']}), got {decay}")


def _check_values(s: dict, fail, extra_train_examples: int = 0, unclipped: bool = False) -> None:
    data, training, privacy, engine = s["data"], s["training"], s["privacy"], s["engine"]
    if data["sampling"] not in SAMPLINGS:
        fail("data.sampling", f"must be one of {', '.join(SAMPLINGS)}, got {shown(data['sampling'])}")
    if data["dataset"] not in DATASETS:
        fail("data.dataset", f"unknown dataset {shown(data['dataset'])} (known: {', '.join(DATASETS)})")
    sizes = DATASETS[data["dataset"]]
    held_out = data["validation_examples"]
    if held_out is not None and not 1 <= held_out < sizes["train"]:
        fail("data.validation_examples", f"must be from 1 to {sizes['train'] - 1} (examples of the training file "
                                         f"held out of training), got {held_out}")
    for key, split, extra in (("train_examples", "train", extra_train_examples), ("test_examples", "test", 0)):
        n, size = data[key], sizes[split] - (held_out or 0) * (split == "train")
        if n is None:
            data[key] = size
        elif not 1 <= n <= size + extra:
            fail(f"data.{key}", f"must be between 1 and {size + extra}"
                 + (f" (the training file's {sizes[split]} less the {held_out} validation examples)"
                    if split == "train" and held_out else "") + f", got {n}")
    if s["model"]["name"] not in MODELS:
        fail("model.name", f"unknown model {shown(s['model']['name'])} (known: {', '.join(MODELS)})")
    if s["model"]["pooling"] not in POOLINGS:
        fail("model.pooling", f"must be one of {', '.join(POOLINGS)}, got {shown(s['model']['pooling'])}")
    if not 1 <= training["epochs"] <= MAX_EPOCHS:
        fail("training.epochs", f"must be an integer from 1 to {MAX_EPOCHS}, got {shown(training['epochs'])}")
    if training["batch_size"] < 1:
        fail("training.batch_size", f"must be positive, got {training['batch_size']}")
    if training["batch_size"] > data["train_examples"]:
        fail("training.batch_size",
             f"{training['batch_size']} is larger than the training set ({data['train_examples']})")
    if not 0 < training["learning_rate"] <= MAX_SCALE:
        fail("training.learning_rate", f"must be positive and at most {MAX_SCALE:g}, got {training['learning_rate']}")
    _check_features(data, s["model"]["name"], fail)
    if s["model"]["activation"] not in ACTIVATIONS:
        fail("model.activation", f"must be one of {', '.join(ACTIVATIONS)}, got {shown(s['model']['activation'])}")
    if training["optimizer"] != "sgd":
        fail("training.optimizer", f"unknown optimizer {shown(training['optimizer'])} (known: sgd)")
    _check_schedule(training, fail)
    if engine["name"] not in ENGINES:
        fail("engine.name", f"unknown engine {shown(engine['name'])} (known: {', '.join(ENGINES)})")
    if privacy.get("randomness", "reproducible") not in RANDOMNESS:
        fail("privacy.randomness", f"must be one of {', '.join(RANDOMNESS)}, got {shown(privacy['randomness'])}")
    if not privacy["enabled"]:
        if privacy.get("randomness") == "secret":
            fail("privacy.randomness", "secret randomness protects DP-SGD's draws; a non-private spec has none")
        if data["normalization"] == "private":
            fail("data.normalization", "private normalisation is for DP-SGD; a non-private spec can use group or none")
        if data["features"] == "dp_pca":
            fail("data.features", "DP-PCA is for DP-SGD; a non-private spec has no privacy to account")
        if data["sampling"] == "poisson":
            fail("data.sampling", "poisson sampling is for DP-SGD; a non-private spec trains on shuffled batches")
        if engine["name"] != "none":
            fail("engine.name", f"engine {shown(engine['name'])} is private but privacy.enabled is false; use 'none'")
        return
    if engine["name"] == "none":
        fail("engine.name", "engine 'none' trains without privacy but privacy.enabled is true")
    if privacy["randomness"] == "secret" and engine["name"] != "fast":
        fail("privacy.randomness", f"secret needs engine fast (engine {shown(engine['name'])} draws its noise from "
                                   f"TensorFlow's generator, seeded by the recorded seed)")
    if not 0 < privacy["l2_norm_clip"] <= MAX_SCALE and not (unclipped and privacy["l2_norm_clip"] == UNCLIPPED):
        fail("privacy.l2_norm_clip", f"must be positive and at most {MAX_SCALE:g}, got {privacy['l2_norm_clip']}")
    if not 0 <= privacy["noise_multiplier"] <= MAX_SCALE:
        fail("privacy.noise_multiplier", f"must be from 0 to {MAX_SCALE:g}, got {privacy['noise_multiplier']}")
    if privacy["num_microbatches"] < 1:
        fail("privacy.num_microbatches", f"must be positive, got {privacy['num_microbatches']}")
    if training["batch_size"] % privacy["num_microbatches"]:
        fail("privacy.num_microbatches",
             f"batch_size {training['batch_size']} is not divisible by {privacy['num_microbatches']}")
    if not 0 < privacy["delta"] < 1:
        fail("privacy.delta", f"must be in (0, 1), got {privacy['delta']}")
    if privacy["delta"] * data["train_examples"] >= 1:   # at delta >= 1/n one example may be published outright
        fail("privacy.delta", f"must be below 1/n = 1/{data['train_examples']} for the {data['train_examples']} examples "
                              f"trained (at delta >= 1/n the guarantee allows publishing one example), got {privacy['delta']:g}")
    if data["sampling"] == "poisson":
        if privacy["num_microbatches"] != training["batch_size"]:
            fail("privacy.num_microbatches",
                 f"poisson sampling needs one example per microbatch (num_microbatches == batch_size "
                 f"{training['batch_size']}), got {privacy['num_microbatches']}")
        if engine["name"] not in POISSON_ENGINES:
            fail("engine.name", f"engine {shown(engine['name'])} cannot train with poisson sampling "
                                f"(it divides by the microbatch count; use {' or '.join(POISSON_ENGINES)})")

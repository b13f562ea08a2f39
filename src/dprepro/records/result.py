"""The result record, typed: what `dprepro run` writes (result.json, seed.json) and every command reads.

One writer (`Result.to_json`, `SeedOutcome.to_json`, through files.write_json: atomic) and one reader
(`Result.load`: read.py's field checks, then these records). The epsilon block's value of record is a
property (`EpsilonBlock.value_of_record`), defined here once. Nested sections nobody computes with
(run, git, environment, data, a seed's history) stay read-only mappings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from dprepro.spec import Spec


def as_float(x) -> float:
    """A JSON epsilon as a float ("inf" is how an infinite one is written)."""
    return math.inf if x == "inf" else float(x)


def frozen(mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class EpsilonBlock:
    """A result's `epsilon` block (accounting.epsilon_block): every accountant's value with what it
    assumes and whether it holds for the run; `of_record` names the smallest that holds."""

    delta: float
    sampling: str
    steps: int | None
    noise_multiplier: float | None
    of_record: str | None
    accountants: Mapping[str, Mapping]
    fields: Mapping = field(repr=False)      # the block as written, every field

    @classmethod
    def from_json(cls, block: Mapping | None) -> "EpsilonBlock | None":
        if block is None:
            return None
        return cls(delta=block["delta"], sampling=block.get("sampling"), steps=block.get("steps"),
                   noise_multiplier=block.get("noise_multiplier"), of_record=block.get("of_record"),
                   accountants=frozen({n: frozen(v) for n, v in block["accountants"].items()}), fields=frozen(block))

    def to_json(self) -> dict:
        return {**self.fields, "accountants": {n: dict(v) for n, v in self.accountants.items()}}

    @property
    def record(self) -> Mapping | None:
        """The value of record with its label, None when no value holds."""
        return self.accountants[self.of_record] if self.of_record else None

    @property
    def value_of_record(self) -> float | None:
        """The epsilon of record: the smallest value that holds for the run (None: none holds)."""
        return as_float(self.record["epsilon"]) if self.record else None

    def value(self, accountant: str) -> float | None:
        entry = self.accountants.get(accountant)
        return None if entry is None else as_float(entry["epsilon"])

    @property
    def microbatch_size(self) -> int | None:
        return self.fields.get("microbatch_size")

    @property
    def under_published_conventions(self) -> Mapping:
        """{expected quantity: its value computed as the paper did}; empty when there is none."""
        return self.fields.get("under_published_conventions") or {}

    @property
    def releases(self) -> list:
        return self.fields.get("releases") or []

    @property
    def lower_bounds(self) -> Mapping:
        """{name: entry} of lower_bounds.py (empty in a block written before dprepro 0.9)."""
        return self.fields.get("lower_bounds") or {}

    @property
    def interval(self) -> Mapping | None:
        """[lower bound, value of record] with each end's adjacency; None when no value holds."""
        return self.fields.get("interval")

    @property
    def at_least(self) -> float | None:
        """The lower bound on the run's epsilon (None: not computed in this block)."""
        return as_float(self.interval["lower"]) if self.interval else None


@dataclass(frozen=True)
class SeedOutcome:
    """One seed of a run (fit.train's outcome, with its model and identity once written)."""

    seed: int
    test_accuracy: float
    test_loss: float | None
    train_accuracy: float | None
    train_loss: float | None
    steps: int | None                  # the optimizer's count (absent from the earliest pins)
    history: Mapping
    epoch_seconds: tuple
    wall_seconds: float | None
    ledger: Mapping | None = None      # the privacy ledger (ledger.py)
    extra: Mapping = field(default_factory=lambda: frozen({}), repr=False)   # validation, normalization, model, ...

    KNOWN = ("seed", "test_accuracy", "test_loss", "train_accuracy", "train_loss", "steps", "history",
             "epoch_seconds", "wall_seconds", "ledger")

    @classmethod
    def from_json(cls, outcome: Mapping) -> "SeedOutcome":
        return cls(seed=outcome["seed"], test_accuracy=outcome["test_accuracy"], test_loss=outcome.get("test_loss"),
                   train_accuracy=outcome.get("train_accuracy"), train_loss=outcome.get("train_loss"),
                   steps=outcome.get("steps"), history=frozen(outcome["history"]),
                   epoch_seconds=tuple(outcome["epoch_seconds"]), wall_seconds=outcome.get("wall_seconds"),
                   ledger=outcome.get("ledger"),
                   extra=frozen({k: v for k, v in outcome.items() if k not in cls.KNOWN}))

    def get(self, key: str, default=None):
        """An optional field (validation_accuracy, normalization, model, identity, ...)."""
        return self.extra.get(key, default)

    def to_json(self) -> dict:
        out = {"seed": self.seed, "test_accuracy": self.test_accuracy, "test_loss": self.test_loss,
               "train_accuracy": self.train_accuracy, "train_loss": self.train_loss, "steps": self.steps,
               "ledger": self.ledger and dict(self.ledger), "history": dict(self.history),
               "epoch_seconds": list(self.epoch_seconds), "wall_seconds": self.wall_seconds}
        return {**{k: v for k, v in out.items() if v is not None or k in ("ledger",)}, **self.extra}


@dataclass(frozen=True)
class Result:
    """A result file: the spec (typed), how and where it ran, its data, the epsilon block, the seeds
    and the summaries over them."""

    name: str
    version: int
    spec: Spec
    spec_sha256: str
    run: Mapping
    environment: Mapping
    epsilon: EpsilonBlock | None
    seeds: tuple[SeedOutcome, ...]
    test_accuracy: Mapping
    train_accuracy: Mapping
    fields: Mapping = field(repr=False)      # every other top-level field as written (git, data, ...)

    @classmethod
    def from_json(cls, raw: dict, path) -> "Result":
        """The record of a parsed result file, every field checked first (read.check_result)."""
        from dprepro.records.read import check_result

        spec = check_result(raw, path)
        return cls(name=raw["name"], version=raw["version"], spec=spec, spec_sha256=raw["spec_sha256"],
                   run=frozen(raw["run"]), environment=frozen(raw["environment"]),
                   epsilon=EpsilonBlock.from_json(raw.get("epsilon")),
                   seeds=tuple(SeedOutcome.from_json(s) for s in raw["seeds"]),
                   test_accuracy=frozen(raw["test_accuracy"]), train_accuracy=frozen(raw["train_accuracy"]),
                   fields=frozen({k: v for k, v in raw.items() if k != "spec"}))

    @classmethod
    def load(cls, path) -> "Result":
        from dprepro.records.read import parse_result

        return cls.from_json(parse_result(path), path)

    def to_json(self) -> dict:
        out = {**self.fields, "spec": self.spec.to_dict(), "run": dict(self.run),
               "epsilon": self.epsilon.to_json() if self.epsilon else None,
               "seeds": [s.to_json() for s in self.seeds]}
        order = list(self.fields)          # the written order (spec after spec_sha256)
        order.insert(order.index("spec_sha256") + 1, "spec")
        return {k: out[k] for k in order if k in out}

    @property
    def engine(self) -> str:
        return self.run["engine"]

    @property
    def engine_version(self) -> int:
        """The engine version it was made with (results before versions were recorded: 1)."""
        return self.run.get("engine_version", 1)

    @property
    def arithmetic(self) -> str:
        return self.environment.get("arithmetic", {}).get("id", "not recorded")

    def get(self, key: str, default=None):
        """An optional top-level field (validation_accuracy, wall_seconds, git, data, ...)."""
        return self.fields.get(key, default)


@dataclass(frozen=True)
class AuditSummary:
    """What an audit found over its seeds (audit.json's `summary` or `no_noise_summary`)."""

    epsilon_lower_bound: float
    fdp_epsilon_lower_bound: float | None     # absent from audits before the f-DP bound
    accountant_epsilon: float | None          # the claim's value of record; None for a non-private spec
    accountant: str | None
    mia_auc: float
    mia_tpr_at_fpr_0_001: float
    mia_tpr_at_fpr_0_01: float
    seconds_per_audit: float
    ledger_departs: str | None = None         # a planted bug's ledger against the claim's plan

    @classmethod
    def from_json(cls, s: Mapping | None) -> "AuditSummary | None":
        if s is None:
            return None
        return cls(epsilon_lower_bound=s["epsilon_lower_bound"], fdp_epsilon_lower_bound=s.get("fdp_epsilon_lower_bound"),
                   accountant_epsilon=s.get("accountant_epsilon"), accountant=s.get("accountant"),
                   mia_auc=s["mia_auc"], mia_tpr_at_fpr_0_001=s["mia_tpr_at_fpr_0.001"],
                   mia_tpr_at_fpr_0_01=s["mia_tpr_at_fpr_0.01"], seconds_per_audit=s["seconds_per_audit"],
                   ledger_departs=s.get("ledger_departs"))


@dataclass(frozen=True)
class AuditRecord:
    """An audit.json as the report reads it: who was audited, how, what it found, the checks."""

    name: str
    sampling: str
    seeds: int
    canaries: int
    kind: str
    summary: AuditSummary
    no_noise: AuditSummary | None
    bug_check: bool | None          # passed? None when not run
    power_check: bool | None

    @classmethod
    def from_json(cls, a: Mapping) -> "AuditRecord":
        checks = a.get("checks") or {}
        return cls(name=a["name"], sampling=a["sampling"], seeds=len(a["seeds"]), canaries=a["method"]["canaries"],
                   kind=a["method"].get("kind", ""), summary=AuditSummary.from_json(a["summary"]),
                   no_noise=AuditSummary.from_json(a.get("no_noise_summary")),
                   bug_check=(checks.get("bug") or {}).get("passed"), power_check=(checks.get("power") or {}).get("passed"))


@dataclass(frozen=True)
class Pinned:
    """A pinned result in the report, with where it lies and the audits pinned beside it."""

    result: Result
    path: str                   # relative to the results folder
    audit: AuditRecord | None       # audit.json beside it (black box)
    whitebox: AuditRecord | None    # audit-whitebox.json beside it


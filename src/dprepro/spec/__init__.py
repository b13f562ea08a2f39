"""Experiment specs: versioned YAML files (schema 1), validated strictly before any work.

- `schema`: every field, its kind, default and allowed values; `validate` (raw mapping -> resolved);
- `typed`: `Spec`, the frozen typed view every stage reads, with the derived quantities, `replace`
  and `audit_twin`.
`load_spec(path)` reads a file (files.read_yaml: strict YAML) and returns its `Spec`. Any problem
raises `InputError("PATH: field.path: what is wrong")`.
"""

from __future__ import annotations

from dprepro.files import read_yaml
from dprepro.spec.schema import (CALIBRATABLE, DATASETS, ENGINE_VERSIONS, ENGINES, EXPECTED_QUANTITIES, MAX_EPOCHS, MAX_SCALE,
                                 MAX_SEED, POISSON_ENGINES, SAMPLINGS, SECTIONS, STEP_RULES, UNCLIPPED, validate)
from dprepro.spec.typed import Expected, Spec

__all__ = ["CALIBRATABLE", "DATASETS", "ENGINE_VERSIONS", "ENGINES", "EXPECTED_QUANTITIES", "MAX_EPOCHS", "MAX_SCALE", "MAX_SEED",
           "POISSON_ENGINES", "SAMPLINGS", "SECTIONS", "STEP_RULES", "UNCLIPPED", "Expected", "Spec", "load_spec",
           "validate"]


def load_spec(path) -> Spec:
    """Read and validate one spec file."""
    path = str(path)
    return Spec.from_resolved(path, validate(read_yaml(path, "spec"), path))

"""Result files: what was run, where, with what, and what came out; written atomically
(files.write_json). The reading side, with every field checked, is records/read.py."""

from __future__ import annotations

import statistics

from dprepro.files import finite_json, write_json

RESULT_SCHEMA = 1
write_json_atomic = write_json   # the name the writers of results use
__all__ = ["RESULT_SCHEMA", "finite_json", "summary", "write_json_atomic"]


def summary(values: list) -> dict:
    """Mean, sample standard deviation (0 for one value), min, max and count."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values), "max": max(values), "n": len(values),
    }

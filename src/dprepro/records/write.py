"""Result files: their schema version and the summaries over seeds. They are written by
files.write_json (atomically); the reading side, with every field checked, is records/read.py."""

from __future__ import annotations

import statistics

RESULT_SCHEMA = 1


def summary(values: list) -> dict:
    """Mean, sample standard deviation (0 for one value), min, max and count."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values), "max": max(values), "n": len(values),
    }

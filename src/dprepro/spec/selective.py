"""`privacy.selective_update`: DPSUR's selective update and release (Fu et al., PVLDB 17(6), 2024) as a
spec option, checked here (schema.py calls `resolve`).

    privacy:
      selective_update:
        validation_batch_size: 256        # expected size of each step's Poisson sample of training examples
        validation_clip: 0.001            # C_v: the loss difference is clipped to [-C_v, C_v]
        validation_noise_multiplier: 1.3  # sigma_v: the difference gets noise of std 2 C_v sigma_v
        threshold: -1.0                   # beta: the step is kept when the noisy difference < beta C_v
        published_epsilon: null           # optional: also score the model where Fu et al.'s run would stop

Absent (null): plain DP-SGD, and the spec's identity is as before. The algorithm and its accounting:
training/selective.py and docs/privacy.md, "Selective update (DPSUR)".
"""

from __future__ import annotations

FIELDS = {"validation_batch_size": ("int", 256), "validation_clip": ("num", 0.001),
          "validation_noise_multiplier": ("num?", None), "threshold": ("num", -1.0), "published_epsilon": ("num?", None)}
PREFIX = "privacy.selective_update."


def resolve(spec: dict, fail, check_mapping) -> dict:
    """The section with its defaults filled in, or fail(field, why) for the first bad field: a
    Poisson-sampled private spec on the fast engine, a validation sample no larger than the training
    set, a positive clip and a noise multiplier that is given."""
    given = spec["privacy"]["selective_update"]
    if not isinstance(given, dict):
        fail("privacy.selective_update", "must be a mapping (validation_batch_size, validation_clip, "
                                         "validation_noise_multiplier, threshold) or null")
    out = check_mapping(given, FIELDS, PREFIX, fail)
    if not spec["privacy"]["enabled"]:
        fail("privacy.selective_update", "needs privacy.enabled: true (it is a DP-SGD variant)")
    if spec["data"]["sampling"] != "poisson":
        fail("privacy.selective_update", "needs data.sampling: poisson (its tests are accounted as "
                                         "Poisson-sampled Gaussian mechanisms)")
    if spec["engine"]["name"] != "fast":
        fail("privacy.selective_update", f"runs on the fast engine only, not {spec['engine']['name']}")
    if out["validation_noise_multiplier"] is None:
        fail(PREFIX + "validation_noise_multiplier", "required field is missing")
    if not 0 < out["validation_noise_multiplier"] <= 1e6:
        fail(PREFIX + "validation_noise_multiplier", f"must be above 0 (and at most 1e6), got {out['validation_noise_multiplier']}")
    if not 0 < out["validation_clip"] <= 1e6:
        fail(PREFIX + "validation_clip", f"must be above 0 (and at most 1e6), got {out['validation_clip']}")
    if not 1 <= out["validation_batch_size"] <= (spec["data"]["train_examples"] or 60000):
        fail(PREFIX + "validation_batch_size", f"must be from 1 to the training examples, got {out['validation_batch_size']}")
    if out["published_epsilon"] is not None and not 0 < out["published_epsilon"] <= 1e6:
        fail(PREFIX + "published_epsilon", f"must be above 0 (and at most 1e6), got {out['published_epsilon']}")
    if abs(out["threshold"]) > 1e6:
        fail(PREFIX + "threshold", f"must be a number from -1e6 to 1e6, got {out['threshold']}")
    return out

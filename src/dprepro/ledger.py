"""The privacy ledger of one seed: what the run's private releases and every step it applied used.

{"ledger_schema": 1,
 "releases": [{"mechanism", "noise_multiplier"}, ...],     # made before training (accounting.releases)
 "tests": [{"mechanism", "noise_multiplier", "sampling_rate"}], # only with DPSUR: one with every step
 "steps": [{"first_step", "steps", "noise_multiplier", "l2_norm_clip", "examples_per_microbatch",
            "sampling", "sampling_rate"}, ...]}

`steps` is run-length encoded: an entry stands for `steps` consecutive optimizer steps from
`first_step` (1-based) that used the same values. The noise multiplier, the clip (None: no clipping)
and the examples per microbatch are what each step's graph was built with, recorded by the step
(training/recorder.py); the sampling and its rate are those of the batch sampler the steps were
drawn from. The ledger is kept in the seed's checkpoint, so a resumed run continues it, and in its
seed.json and result.json. After training it must equal the spec's plan (`check`); the result's
epsilon block is computed from it (`schedule`).
"""

from __future__ import annotations

from dprepro import accounting
from dprepro.errors import RunCheckFailed
from dprepro.spec import Spec

LEDGER_SCHEMA = 1
FIELDS = {"noise_multiplier": "noise multiplier", "l2_norm_clip": "clip norm",
          "examples_per_microbatch": "examples per microbatch", "sampling": "sampling",
          "sampling_rate": "sampling rate"}


def new(releases: list[dict], tests: list[dict] = ()) -> dict:
    """An empty ledger after the releases made before training; `tests`: the private tests that go with
    every step (DPSUR's, as the step was built with them), recorded only when there are some."""
    out = {"ledger_schema": LEDGER_SCHEMA, "releases": [dict(r) for r in releases], "steps": []}
    return {**out, "tests": [dict(t) for t in tests]} if tests else out


def append(ledger: dict, rows: list[tuple], sampling: str, sampling_rate: float) -> None:
    """Add the recorder's rows (step, noise multiplier, clip, examples per microbatch), merging each
    into the last entry when it continues it with the same values."""
    for step, noise, clip, microbatch in rows:
        values = {"noise_multiplier": noise, "l2_norm_clip": clip, "examples_per_microbatch": int(microbatch),
                  "sampling": sampling, "sampling_rate": sampling_rate}
        last = ledger["steps"][-1] if ledger["steps"] else None
        if last and last["first_step"] + last["steps"] == step and all(last[k] == v for k, v in values.items()):
            last["steps"] += 1
        else:
            ledger["steps"].append({"first_step": int(step), "steps": 1, **values})


def steps_applied(ledger: dict) -> int:
    return sum(entry["steps"] for entry in ledger["steps"])


def planned(spec: Spec) -> dict:
    """The ledger the spec plans: its releases, then steps_trained steps of its noise, clip,
    examples per microbatch (one under Poisson sampling) and sampling; a non-private spec's steps
    have no noise and no clip."""
    p = spec.privacy
    noise, clip = (p.noise_multiplier, p.l2_norm_clip) if spec.private else (0.0, None)
    plan = new(accounting.releases(spec), accounting.tests(spec))
    plan["steps"] = [{"first_step": 1, "steps": spec.steps_trained, "noise_multiplier": noise, "l2_norm_clip": clip,
                      "examples_per_microbatch": 1 if spec.poisson else spec.microbatch_size,
                      "sampling": spec.sampling, "sampling_rate": spec.q}]
    return plan


def per_step(ledger: dict):
    """(step, values) for every step recorded, in order."""
    for entry in ledger["steps"]:
        values = {k: entry[k] for k in FIELDS}
        for i in range(entry["steps"]):
            yield entry["first_step"] + i, values


def first_difference(ran: dict, plan: dict) -> str | None:
    """Where the ledger `ran` departs from `plan`, as "step 3601 applied noise multiplier 0.65, the
    spec says 1.3" (or a release, a repeated or skipped step, a missing or extra step); None if equal."""
    if ran["releases"] != plan["releases"]:
        return (f"the releases before training were {[r['noise_multiplier'] for r in ran['releases']]} (noise "
                f"multipliers), the spec says {[r['noise_multiplier'] for r in plan['releases']]}")
    if ran.get("tests", []) != plan.get("tests", []):
        return f"the tests with every step were {ran.get('tests', [])}, the spec says {plan.get('tests', [])}"
    expected, planned_steps = 1, list(per_step(plan))
    for step, values in per_step(ran):
        if step != expected:
            return (f"step {expected} was followed by step {step}: "
                    f"{'a repeated' if step < expected else 'a skipped'} step")
        if step > len(planned_steps):
            return f"step {step} was applied, the spec plans {len(planned_steps)} steps"
        want = planned_steps[step - 1][1]
        for field, text in FIELDS.items():
            if values[field] != want[field]:
                return f"step {step} applied {text} {shown(values[field])}, the spec says {shown(want[field])}"
        expected += 1
    if expected - 1 != len(planned_steps):
        return f"{expected - 1} steps were applied, the spec plans {len(planned_steps)} (the steps its epsilon counts)"
    return None


def shown(value) -> str:
    """A ledger value as a message shows it."""
    if value is None:
        return "none (no clipping)"
    return value if isinstance(value, str) else f"{value:g}"


def check(ran: dict, spec: Spec, seed: int) -> None:
    """RunCheckFailed naming the seed, the step and the field, unless the ledger is the spec's plan."""
    difference = first_difference(ran, planned(spec))
    if difference:
        raise RunCheckFailed(f"seed {seed}: {difference}; the seed is not recorded as finished")


def agreed(ledgers: dict[int, dict]) -> dict:
    """The one ledger every seed recorded ({seed: ledger}); RunCheckFailed if two differ."""
    (first_seed, first), *rest = ledgers.items()
    for seed, other in rest:
        if other != first:
            raise RunCheckFailed(f"seed {seed}'s ledger differs from seed {first_seed}'s: "
                                 f"{first_difference(other, first)}")
    return first


def schedule(ledger: dict, spec: Spec) -> accounting.Schedule:
    """The schedule that ran, for the accountants: the ledger's noise, examples per microbatch,
    sampling, steps and releases (the n and delta of the spec). A ledger of varying steps has no one
    schedule (ValueError): `check` refuses such a run first."""
    kinds = {tuple(entry[k] for k in FIELDS) for entry in ledger["steps"]}
    if len(kinds) != 1:
        raise ValueError(f"the ledger holds {len(kinds)} kinds of step; the accountants take one")
    entry = ledger["steps"][0]
    steps = steps_applied(ledger)
    if entry["sampling_rate"] != spec.q:
        raise ValueError(f"the ledger's sampling rate {entry['sampling_rate']} is not the spec's {spec.q}")
    return accounting.Schedule(
        n=spec.train_examples, batch_size=spec.training.batch_size, noise_multiplier=entry["noise_multiplier"],
        epochs=steps // spec.steps_per_epoch if steps % spec.steps_per_epoch == 0 else steps / spec.steps_per_epoch,
        delta=spec.privacy.delta, microbatch_size=entry["examples_per_microbatch"], sampling=entry["sampling"],
        steps=steps, releases=tuple(ledger["releases"]), tests=tuple(ledger.get("tests", ())))

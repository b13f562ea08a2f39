"""Privacy accounting: every epsilon a paper might cite for one DP-SGD schedule, labelled with
what it assumes and whether that holds for the training that was run.

The mathematics is dp_accounting's and tf-privacy's; only the legacy RDP -> (eps, delta)
conversion is written here, because no installed library offers it any more. Each value states
- the sampling it assumes: `poisson` (each example in each step with probability q) or
  `once_per_epoch` (each example in exactly one step per epoch, no amplification);
- the adjacency it is proved for (`ADJACENCY`): add or remove one example for the Poisson values;
  zero-out (one example's gradient replaced by zero) for the once-per-epoch ones, which no known
  value covers under add/remove with shuffled batches (docs/privacy.md, "Adjacency");
- its sensitivity, in units of l2_norm_clip: 1, or 2 when a microbatch holds several examples
  (adding or removing one moves that microbatch's clipped gradient by up to 2 x l2_norm_clip);
- the steps it counts and by which rule;
- whether it counts the private releases made before training (`releases`: DP-PCA, private
  normalisation) and the tests made with every step (`tests`: DPSUR's), composed with the training.
A value holds for a run when its sampling is the run's, its sensitivity is at least the run's, it
counts at least the steps trained, and every release and test. `of_record`: the smallest that holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import version

from dprepro import lower_bounds
from dprepro.mechanisms import (PLD_DISCRETIZATION, composed_event, once_per_epoch_epsilon, poisson_epsilon,
                                selection_test, statement_epsilon)
from dprepro.spec import CALIBRATABLE, Spec
from dprepro.spec.typed import trained_steps

DESCRIPTIONS = {
    "rdp_legacy": "RDP, legacy conversion eps = min_a RDP(a) + log(1/delta)/(a-1) "
                  "(TF Privacy <= 0.5.1; the tutorial's printed value)",
    "rdp": "RDP, dp_accounting's improved conversion, over the orders of "
           "tf-privacy 0.9.0's compute_dp_sgd_privacy (its value, for the same step count)",
    "pld": f"Privacy loss distribution (dp_accounting PLDAccountant, "
           f"discretization {PLD_DISCRETIZATION:g}); the tightest Poisson-sampled bound",
    "statement_once_per_epoch": "tf-privacy 0.9.0 compute_dp_sgd_privacy_statement, each example "
                                "once per epoch (no amplification by sampling)",
    "statement_poisson": "tf-privacy 0.9.0 compute_dp_sgd_privacy_statement, assuming Poisson sampling",
    "rdp_once_per_epoch": "RDP (dp_accounting, the orders of `rdp`) of the private releases before training "
                          "composed with one Gaussian mechanism per epoch (each example once per epoch, no "
                          "amplification): the once-per-epoch statement with the releases counted",
}
ADJACENCY = {"poisson": "add_remove", "once_per_epoch": "zero_out"}    # by the sampling a value assumes
ADJACENCY_TEXT = {"add_remove": "add/remove adjacency",
                  "zero_out": "zero-out adjacency: one example's gradient replaced by zero; not add/remove, "
                              "where an added example shifts every later batch of its epoch"}
ONLY_WITH_RELEASES = ("rdp_once_per_epoch",)  # present only when a spec releases something before training
ACCOUNTANTS = tuple(n for n in DESCRIPTIONS if n not in ONLY_WITH_RELEASES)   # in every block
DOUBLED = "_doubled"   # suffix of a CALIBRATABLE value with sensitivity 2 x l2_norm_clip


def microbatch_sensitivity(microbatch_size: int) -> int:
    """The sensitivity rule, in units of l2_norm_clip: how far adding or removing one example can move
    its microbatch's clipped gradient. 2 when a microbatch holds several examples (it replaces a
    clipped mean), else 1. Every noise multiplier a Poisson accountant sees is divided by it."""
    return sensitivity_of(microbatch_size > 1)


def sensitivity_of(used_microbatching: bool) -> int:
    """The same rule in tf-privacy's terms (its `used_microbatching` flag, also how a paper's
    published value names its convention)."""
    return 2 if used_microbatching else 1


STEP_RULES = {
    "trained": "epochs * floor(n / batch_size): the steps trained (the last incomplete batch is dropped)",
    "ceil": "ceil(epochs * n / batch_size): tf-privacy 0.9.0's count",
    "floor": "epochs * n // batch_size: the count of tf-privacy's Keras tutorial script",
}


def count_steps(n: int, batch_size: int, epochs: float, rule: str = "trained") -> int:
    """Steps of the schedule under one of STEP_RULES (batch 250, n 60000: all three agree)."""
    if rule == "trained":
        return trained_steps(n, batch_size, int(epochs))
    if rule == "ceil":
        return int(math.ceil(epochs * n / batch_size))
    if rule == "floor":
        return int(epochs * n // batch_size)
    raise ValueError(f"unknown step rule {rule!r} (known: {', '.join(STEP_RULES)})")


def releases(spec: Spec) -> list[dict]:
    """The private releases made before training, each a Gaussian mechanism of sensitivity 1 in
    units of its clip (add or remove one example moves a sum of clipped vectors by at most the clip)."""
    d, out = spec.data, []
    if d.features == "dp_pca":
        out.append(pca_release(d.pca_noise_multiplier))
    if d.normalization == "private":
        out += [normalization_release(what, clip, d.norm_noise_multiplier)
                for what, clip in (("means", d.norm_clip_mean), ("second moments", d.norm_clip_square))]
    return out


def tests(spec: Spec) -> list[dict]:
    """The private tests made with every step: DPSUR's (privacy.selective_update), or none."""
    t = spec.selective
    return [] if t is None else [selection_test(t.validation_clip, t.validation_noise_multiplier,
                                                t.validation_batch_size / spec.train_examples)]


def pca_release(noise_multiplier: float) -> dict:
    """The DP-PCA release as the accountants (and the ledger) record it."""
    return {"mechanism": f"DP-PCA: covariance of the unit-norm training images (one example moves it by "
                         f"Frobenius norm 1), plus Gaussian noise of std {noise_multiplier:g}",
            "noise_multiplier": noise_multiplier}


def normalization_release(what: str, clip: float, noise_multiplier: float) -> dict:
    """One statistic of the private normalisation as the accountants (and the ledger) record it."""
    return {"mechanism": f"private normalisation: sum of the per-example channel {what}, each vector clipped "
                         f"to norm {clip:g}, plus Gaussian noise of std {noise_multiplier:g} x {clip:g}",
            "noise_multiplier": noise_multiplier}


def epsilons(n: int, batch_size: int, noise_multiplier: float, epochs: float, delta: float,
             microbatch_size: int = 1, steps_rule: str = "trained", before=(), steps: int | None = None,
             tests=()) -> dict:
    """{name: {"epsilon", "order" (None without one), "sampling", "sensitivity", "steps",
    "steps_rule"}} for one schedule.

    The Poisson accountants count steps by `steps_rule`; with several examples per microbatch they
    are given twice: as the tutorial computes them (sensitivity 1) and, as `<name>_doubled`, with
    sensitivity 2. The statements follow tf-privacy (doubled when microbatch_size > 1) and count
    their own steps and cannot count the releases `before` (their values then cover the training alone). A noise
    multiplier <= 0 gives eps = inf everywhere. `steps`: the steps applied (a ledger's count), counted by
    the Poisson accountants instead of the rule's. `tests`: DPSUR's, composed with every step by the
    Poisson accountants (the statements cannot count them).
    """
    q = batch_size / n
    steps = count_steps(n, batch_size, epochs, steps_rule) if steps is None else steps
    run_sensitivity = microbatch_sensitivity(microbatch_size)
    doubled = run_sensitivity == 2
    out = {}
    for name in CALIBRATABLE:
        for sensitivity in ((1, 2) if doubled else (1,)):
            eps, order = ((math.inf, None) if noise_multiplier <= 0 else
                          poisson_epsilon(name, q, noise_multiplier / sensitivity, steps, delta, before, tests))
            out[name + (DOUBLED if sensitivity == 2 else "")] = {
                "epsilon": eps, "order": order, "sampling": "poisson", "sensitivity": sensitivity,
                "adjacency": ADJACENCY["poisson"], "steps": steps, "steps_rule": STEP_RULES[steps_rule],
                "counts_releases": True}
    for name, poisson in (("statement_once_per_epoch", False), ("statement_poisson", True)):
        eps = math.inf if noise_multiplier <= 0 else statement_epsilon(
            poisson, q, noise_multiplier, epochs, delta, doubled)
        out[name] = {"epsilon": eps, "order": None,
                     "sampling": "poisson" if poisson else "once_per_epoch",
                     "sensitivity": run_sensitivity,
                     "adjacency": ADJACENCY["poisson" if poisson else "once_per_epoch"],
                     "steps": count_steps(n, batch_size, epochs, "ceil") if poisson else int(math.ceil(epochs)),
                     "steps_rule": (STEP_RULES["ceil"] if poisson
                                    else "epochs: one Gaussian mechanism per epoch"),
                     "counts_releases": not before, **({"counts_tests": False} if tests else {})}
    if before:        # the statements cannot count the releases: the same assumption, with them composed
        eps = math.inf if noise_multiplier <= 0 else once_per_epoch_epsilon(
            noise_multiplier / run_sensitivity, int(math.ceil(epochs)), delta, before)
        out["rdp_once_per_epoch"] = {"epsilon": eps, "order": None, "sampling": "once_per_epoch",
                                     "sensitivity": run_sensitivity, "adjacency": ADJACENCY["once_per_epoch"],
                                     "steps": int(math.ceil(epochs)),
                                     "steps_rule": "epochs: one Gaussian mechanism per epoch",
                                     "counts_releases": True, **({"counts_tests": False} if tests else {})}
    return out


def description(name: str) -> str:
    if name.endswith(DOUBLED):
        return DESCRIPTIONS[name[:-len(DOUBLED)]] + "; sensitivity 2 x l2_norm_clip"
    return DESCRIPTIONS[name]


def statement_text(n: int, batch_size: int, noise_multiplier: float, epochs: float, delta: float,
                   microbatch_size: int = 1) -> str:
    """tf-privacy's own privacy statement for the schedule, verbatim."""
    from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib as tfp_lib

    return tfp_lib.compute_dp_sgd_privacy_statement(
        n, batch_size, epochs, noise_multiplier, delta, used_microbatching=microbatch_size > 1)


@dataclass(frozen=True)
class Schedule:
    """What the accountants compose: `steps` DP-SGD steps of noise multiplier `noise_multiplier`
    (batches of `batch_size` from n examples, sampled as `sampling`, `microbatch_size` examples per
    microbatch) after the Gaussian `releases`, at `delta`. `planned(spec)` is the spec's plan (what
    `dprepro epsilon`, calibration, sweeps and the progress line use); ledger.schedule(...) is what ran."""

    n: int
    batch_size: int
    noise_multiplier: float
    epochs: float
    delta: float
    microbatch_size: int
    sampling: str
    steps: int
    releases: tuple = ()
    tests: tuple = ()        # with every step (DPSUR's; mechanisms.selection_test)

    @classmethod
    def planned(cls, spec: Spec) -> "Schedule | None":
        """The spec's schedule; None for a non-private spec."""
        if not spec.private:
            return None
        return cls(n=spec.train_examples, batch_size=spec.training.batch_size,
                   noise_multiplier=spec.privacy.noise_multiplier, epochs=spec.training.epochs,
                   delta=spec.privacy.delta, microbatch_size=spec.microbatch_size, sampling=spec.sampling,
                   steps=spec.steps_trained, releases=tuple(releases(spec)), tests=tuple(tests(spec)))

    @property
    def q(self) -> float:
        return self.batch_size / self.n

    @property
    def sensitivity(self) -> int:
        return microbatch_sensitivity(self.microbatch_size)

    def poisson_event(self, noise_multiplier: float | None = None):
        """The releases, then the steps as Poisson-sampled Gaussian mechanisms, at this schedule's noise
        multiplier (or `noise_multiplier`) divided by its sensitivity: what a Poisson accountant composes."""
        sigma = self.noise_multiplier if noise_multiplier is None else noise_multiplier
        return composed_event(self.q, sigma / self.sensitivity, self.steps, list(self.releases), self.tests)

    def poisson_epsilon(self, accountant: str, noise_multiplier: float | None = None) -> float:
        """One Poisson accountant's epsilon of `poisson_event(noise_multiplier)` at this schedule's delta."""
        sigma = self.noise_multiplier if noise_multiplier is None else noise_multiplier
        return poisson_epsilon(accountant, self.q, sigma / self.sensitivity, self.steps, self.delta,
                               list(self.releases), self.tests)[0]

    def epsilons(self, epochs: float | None = None) -> dict:
        """`epsilons` of this schedule (after `epochs` epochs: a point of the curve)."""
        return epsilons(self.n, self.batch_size, self.noise_multiplier, self.epochs if epochs is None else epochs,
                        self.delta, self.microbatch_size, before=list(self.releases),
                        steps=self.steps if epochs is None else None, tests=self.tests)


def verdict(value: dict, sampling: str, microbatch_size: int, steps_trained: int, epochs: int) -> tuple:
    """(holds for the run?, label): every reason a value does not bound the training done, or why it does."""
    reasons = []
    if value["sampling"] == "poisson" and sampling != "poisson":
        reasons.append("assumes Poisson sampling; this run used shuffling")
    if value["sampling"] == "once_per_epoch" and sampling != "shuffle":
        reasons.append("assumes each example once per epoch; Poisson sampling may use one several times")
    if value["sensitivity"] < microbatch_sensitivity(microbatch_size):
        reasons.append(f"assumes sensitivity l2_norm_clip; with {microbatch_size} examples per microbatch, "
                       f"adding or removing one can move a clipped microbatch gradient by 2 x l2_norm_clip")
    if value["sampling"] == "poisson" and value["steps"] < steps_trained:
        reasons.append(f"counts {value['steps']} steps, fewer than the {steps_trained} trained")
    if value["sampling"] == "once_per_epoch" and value["steps"] < epochs:
        reasons.append(f"counts {value['steps']} epochs, fewer than the {epochs} trained")
    if not value.get("counts_releases", True):
        reasons.append("counts the training only, not what was released privately before it")
    if not value.get("counts_tests", True):
        reasons.append("counts the training steps only, not the private test made with each (DPSUR)")
    if reasons:
        return False, "; ".join(reasons)
    sensitivity = "l2_norm_clip" if value["sensitivity"] == 1 else "2 x l2_norm_clip"
    bound = "" if value["sampling"] != "poisson" or value["steps"] == steps_trained else \
        f" (an upper bound: counts {value['steps']} steps, {steps_trained} trained)"
    adjacency = ADJACENCY_TEXT[value.get("adjacency", ADJACENCY[value["sampling"]])]
    return True, f"holds for this run ({sampling} sampling, sensitivity {sensitivity}, {adjacency}){bound}"


def published_conventions(spec: Spec) -> dict:
    """The value of each `expected` epsilon that names its own convention (steps rule,
    used_microbatching), computed under that convention: how a published number was made."""
    noise, epochs, delta = spec.privacy.noise_multiplier, spec.training.epochs, spec.privacy.delta
    out = {}
    for quantity, entry in spec.expected.items():
        if not quantity.startswith("epsilon_") or (entry.steps is None and entry.used_microbatching is None):
            continue
        name = quantity[len("epsilon_"):]
        rule = entry.steps or "trained"
        microbatching = spec.microbatch_size > 1 if entry.used_microbatching is None else entry.used_microbatching
        q = spec.q
        if name.startswith("statement_"):
            eps = statement_epsilon(name == "statement_poisson", q, noise, epochs, delta, microbatching)
        else:
            base = name[:-len(DOUBLED)] if name.endswith(DOUBLED) else name
            sigma = noise / sensitivity_of(microbatching or name.endswith(DOUBLED))
            steps = count_steps(spec.train_examples, spec.training.batch_size, epochs, rule)
            eps = poisson_epsilon(base, q, sigma, steps, delta, releases(spec))[0]
        out[quantity] = {"epsilon": eps, "used_microbatching": microbatching, "steps_rule": STEP_RULES[rule]
                         if not name.startswith("statement_") else "the statement's own"}
    return out


def epsilon_block(spec: Spec, ran: Schedule | None = None) -> dict | None:
    """The `epsilon` block of a result: every value of the schedule `ran` (what the seeds' ledgers
    recorded; the spec's plan when not given) with what it assumes and whether it holds for that
    run, the value of record, the inputs, the versions."""
    s = ran or Schedule.planned(spec)
    if s is None:
        return None
    accountants = {}
    for name, value in s.epsilons().items():
        holds, label = verdict(value, s.sampling, s.microbatch_size, s.steps, math.ceil(s.epochs))
        accountants[name] = {**value, "description": description(name), "holds_for_this_run": holds,
                             "label": label}
    holding = [n for n, v in accountants.items() if v["holds_for_this_run"]]
    of_record = min(holding, key=lambda n: accountants[n]["epsilon"]) if holding else None
    lower, interval = lower_bounds.block(s, of_record, accountants.get(of_record))
    return {
        "delta": s.delta,
        "sampling": s.sampling,
        "q": s.q,
        "steps": s.steps,
        "steps_rule": STEP_RULES["trained"],
        "computed_from": "the spec's plan" if ran is None else "the seeds' privacy ledgers (what ran)",
        "noise_multiplier": s.noise_multiplier,
        "n": s.n,
        "microbatch_size": s.microbatch_size,
        "used_microbatching": s.microbatch_size > 1,
        "pld_discretization": PLD_DISCRETIZATION,
        "releases": list(s.releases),
        **({"tests": list(s.tests)} if s.tests else {}),
        "versions": {p: version(p) for p in ("dp-accounting", "tensorflow-privacy")},
        "of_record": of_record,
        "accountants": accountants,
        "lower_bounds": lower,            # lower_bounds.py: the other end of the interval, never of record
        "interval": interval,
        "under_published_conventions": published_conventions(spec),
        "randomness": randomness(spec),
    }


def randomness(spec: Spec) -> dict:
    """Who could regenerate the run's sampling and noise, and what that does to every value above."""
    if spec.privacy.randomness == "secret":
        return {"mode": "secret",
                "statement": "sampling, noise and private releases drawn from 128 bits of the operating system's "
                             "entropy, never written (only the checkpoint holds them while the run is in progress): "
                             "nobody can regenerate them from the outputs",
                "weight_init": "from the seed (public; it does not depend on the data)"}
    return {"mode": "reproducible",
            "statement": "every draw (sampling, noise, private releases) is a function of the seed in this file: "
                         "each epsilon here holds only against an adversary who does not know the seed",
            "weight_init": "from the seed (public; it does not depend on the data)"}


def epsilon_curve(spec: Spec) -> dict:
    """{accountant: [eps after epoch 1, 2, ...]} of the spec's plan; empty for a non-private spec."""
    s = Schedule.planned(spec)
    if s is None:
        return {}
    per_epoch = [s.epsilons(epochs=e) for e in range(1, spec.training.epochs + 1)]
    return {name: [v[name]["epsilon"] for v in per_epoch] for name in per_epoch[0]}

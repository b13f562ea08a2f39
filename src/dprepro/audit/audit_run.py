"""One audit: for each seed, train once with the canaries (spec's settings, the accountant's n
counting the canaries put in), score them and the ordinary data with the trained model (black box:
the log-probability of a label), bound epsilon from below, and check the bound against the
accountant's epsilon of record for the sampling used. Optionally the same on a twin trained without
noise and clipping (the power check). Writes OUT/<name>/v<version>/audit.json and audit-roc.png, and
TensorBoard scalars in LOGDIR/<name>/v<version>/audit/.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy.special import logsumexp

from dprepro import accounting, files, ledger
from dprepro.audit import PlantedBug, audited_step, bounds, canaries as canary_set, membership, whitebox
from dprepro.audit.figure import roc_figure
from dprepro.audit.held_out import HELD_OUT, held_out_spec, seed_data
from dprepro.audit.methods import membership_method, method, white_box_method
from dprepro.data import load_mnist
from dprepro.errors import InputError
from dprepro.lock import RunLock
from dprepro.records import environment
from dprepro.records.result import EpsilonBlock
from dprepro.spec import ENGINE_VERSIONS, Spec
from dprepro.training.callbacks import EpochLine
from dprepro.training.fit import train

AUDIT_SCHEMA = 1
POWER_MARGIN = 1.0     # the no-noise twin's bound must exceed the DP run's by this much (a factor e in odds)
DEFAULT_DELTA = 1e-5   # the delta of a non-private spec's audit (it states none)


def log_probs(model, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """log p(class | x) under the trained model, (rows, classes), in float64."""
    logits = np.concatenate([model(x[i:i + batch], training=False).numpy().astype(np.float64)
                             for i in range(0, len(x), batch)])
    return logits - logsumexp(logits, axis=1, keepdims=True)


def label_log_probs(model, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p(label | x) for each row: minus its cross-entropy loss."""
    return log_probs(model, x)[np.arange(len(x)), labels]


def margins(model, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p(label | x) - max over the other classes of log p(class | x): the canary score."""
    lp = log_probs(model, x)
    own = lp[np.arange(len(x)), labels]
    lp[np.arange(len(x)), labels] = -np.inf
    return own - lp.max(axis=1)


def audit_one(spec: Spec, data, nonmembers, m: int, kind: str, seed: int, confidence: float, tries: int,
              label: str, clipping_and_noise: bool = True, claim: bool = True, bug: PlantedBug | None = None) -> dict:
    """Train `seed` of `spec`'s audit twin with m canaries (without noise and clipping unless
    `clipping_and_noise`; broken by a planted `bug` of the fast engine); score; bound; with `claim`,
    the accountant's value of the spec's claim with the canaries counted in n. `nonmembers`: the
    membership inference's (x, y), or None for the test images left after the canaries."""
    start = time.perf_counter()
    augmented, canaries = canary_set.split(data, m, seed, kind)
    n = len(augmented.x_train)
    trained = spec.audit_twin(n, clipping_and_noise or not spec.private)
    print(f"  {label}: {m} canaries, {int(canaries.included.sum())} in the training set (n = {n})", flush=True)
    outcome, model = train(trained, augmented, seed, callbacks=[EpochLine(label, trained.training.epochs)],
                           prepare=(lambda model, key: audited_step.audit(model, bug=bug)) if bug else None,
                           check=bug is None)
    scores = margins(model, canaries.x, canaries.labels)
    delta = spec.privacy.delta or DEFAULT_DELTA
    canary_audit = bounds.audit_canaries(scores, canaries.included, delta, confidence, tries)
    accountant = claim_of(spec.audit_twin(n)) if claim and spec.private else None
    return {"seed": seed, "canaries": canary_audit, **what_ran(trained, outcome),
            "membership": membership_entry(model, data.x_train, data.y_train,
                                           *(nonmembers or (augmented.x_test, augmented.y_test)), seed),
            "accountant": accountant,
            "test_accuracy": outcome["test_accuracy"], "train_accuracy": outcome["train_accuracy"],
            "steps": outcome["steps"], "wall_seconds": time.perf_counter() - start}


def membership_entry(model, x_members, y_members, x_nonmembers, y_nonmembers, seed: int) -> dict:
    """The loss-threshold membership inference of one audited model (score: log-probability of the true label)."""
    members = label_log_probs(model, x_members, y_members.argmax(1))
    nonmembers = label_log_probs(model, x_nonmembers, y_nonmembers.argmax(1))
    fpr, tpr = membership.thinned(*membership.roc(members, nonmembers))
    return {**membership.summary(members, nonmembers),
            "bootstrap_95": membership.bootstrap(members, nonmembers, seed=seed),
            "members": len(members), "nonmembers": len(nonmembers), "roc": {"fpr": fpr, "tpr": tpr}}


def what_ran(trained: Spec, outcome: dict) -> dict:
    """The seed's privacy ledger, and where it departs from the plan of the spec it trained (None: it
    does not; a planted bug's ledger shows the broken step, while the claim stays the spec's)."""
    return {"ledger": outcome["ledger"],
            "ledger_departs": ledger.first_difference(outcome["ledger"], ledger.planned(trained))
            if trained.private else None}


def claim_of(spec: Spec) -> dict:
    """The accountant's value of record for the spec's plan: the claim an audit tests. A seed trained
    without a planted bug ran that plan (fit.train checked its ledger)."""
    block = accounting.epsilon_block(spec)
    typed = EpsilonBlock.from_json(block)
    return {"name": typed.of_record, "epsilon": typed.value_of_record,
            "label": typed.record["label"] if typed.record else "no value holds",
            "n": block["n"], "q": block["q"], "steps": block["steps"], "sampling": block["sampling"],
            "delta": block["delta"]}


def white_box_one(spec: Spec, data, nonmembers, m: int, seed: int, confidence: float, tries: int, label: str,
                  bug: PlantedBug | None = None) -> dict:
    """Train `seed` of `spec` (broken by `bug`, if any) with m gradient canaries in its DP-SGD step
    (audit/whitebox.py); score them from every step's noisy sum; bound; the spec's own claim."""
    start = time.perf_counter()
    included = canary_set.coins(m, seed)
    held = {}

    def prepare(model, key):
        model.build((None, *data.x_train.shape[1:]))
        d = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        held["canaries"] = whitebox.GradientCanaries(
            *whitebox.directions(m, d, seed), d, included, spec.q, spec.privacy.l2_norm_clip, key)
        audited_step.audit(model, held["canaries"], bug)
    print(f"  {label}: {m} gradient canaries, {int(included.sum())} in the training set"
          + (f", PLANTED BUG {bug.value}" if bug else ""), flush=True)
    outcome, model = train(spec, data, seed, callbacks=[EpochLine(label, spec.training.epochs)], prepare=prepare,
                           check=bug is None)
    canary_audit = bounds.audit_canaries(held["canaries"].scores.numpy(), included, spec.privacy.delta,
                                         confidence, tries)
    return {"seed": seed, "canaries": canary_audit,
            "membership": membership_entry(model, data.x_train, data.y_train,
                                           *(nonmembers or (data.x_test, data.y_test)), seed),
            **what_ran(spec, outcome),
            "accountant": claim_of(spec), "test_accuracy": outcome["test_accuracy"],
            "train_accuracy": outcome["train_accuracy"], "steps": outcome["steps"],
            "wall_seconds": time.perf_counter() - start}


def log_scalars(folder: Path, entry: dict, step: int) -> None:
    """The audit's numbers of one seed as TensorBoard scalars (tags audit/...)."""
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        tf.summary.scalar("audit/epsilon_lower_bound", entry["canaries"]["epsilon_lower_bound"], step=step)
        if entry["accountant"] and entry["accountant"]["epsilon"] is not None:
            tf.summary.scalar("audit/accountant_epsilon", entry["accountant"]["epsilon"], step=step)
        for key in ("auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage"):
            tf.summary.scalar(f"audit/mia_{key}", entry["membership"][key], step=step)
        tf.summary.scalar("audit/test_accuracy", entry["test_accuracy"], step=step)
    writer.close()


def checks(entries: list[dict], twins: list[dict] | None) -> dict:
    """The bug check (no lower bound above the accountant's epsilon) and the power check (the
    no-noise twin's bound clearly above the DP run's)."""
    claimed = [e for e in entries if e["accountant"] and e["accountant"]["epsilon"] is not None]
    broken = [e for e in claimed if e["canaries"]["epsilon_lower_bound"] > e["accountant"]["epsilon"]]
    bug = None if not claimed else {
        "passed": not broken,
        "text": ("PRIVACY BUG: " + "; ".join(
            f"seed {e['seed']}: lower bound {e['canaries']['epsilon_lower_bound']:.3f} > accountant "
            f"{e['accountant']['epsilon']:.3f} ({e['accountant']['name']})" for e in broken)) if broken else
        f"passed: every lower bound is at most the accountant's epsilon of record"}
    power = None
    if twins:
        dp = max(e["canaries"]["epsilon_lower_bound"] for e in entries)
        no_noise = max(t["canaries"]["epsilon_lower_bound"] for t in twins)
        ok = no_noise >= dp + POWER_MARGIN
        power = {"passed": ok, "dp_lower_bound": dp, "no_noise_lower_bound": no_noise, "margin": POWER_MARGIN,
                 "text": f"{'passed' if ok else 'NO POWER'}: without noise and clipping the bound is "
                         f"{no_noise:.3f}, with them {dp:.3f} (needs +{POWER_MARGIN:g})"}
    return {"bug": bug, "power": power}


def summarise(entries: list[dict]) -> dict:
    bound = max(entries, key=lambda e: e["canaries"]["epsilon_lower_bound"])
    eps = [e["accountant"]["epsilon"] for e in entries if e["accountant"] and e["accountant"]["epsilon"] is not None]
    fdp = max(entries, key=lambda e: e["canaries"]["fdp_epsilon_lower_bound"])
    return {"epsilon_lower_bound": bound["canaries"]["epsilon_lower_bound"], "lower_bound_seed": bound["seed"],
            "fdp_epsilon_lower_bound": fdp["canaries"]["fdp_epsilon_lower_bound"], "fdp_lower_bound_seed": fdp["seed"],
            "accountant_epsilon": max(eps) if eps else None,
            "accountant": entries[0]["accountant"]["name"] if eps else None,
            **{f"mia_{key}": statistics.fmean(e["membership"][key] for e in entries)
               for key in ("auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage")},
            "ledger_departs": next((f"seed {e['seed']}: {e['ledger_departs']}" for e in entries
                                    if e.get("ledger_departs")), None),
            "test_accuracy": statistics.fmean(e["test_accuracy"] for e in entries),
            "seconds_per_audit": statistics.fmean(e["wall_seconds"] for e in entries)}


@dataclass(frozen=True)
class AuditConfig:
    """What `dprepro audit` asks (cli/audit_command.py builds it from the flags)."""

    seeds: tuple | None = None          # seeds to audit (None: the spec's first)
    canaries: int = 1000                # m
    confidence: float = 0.95
    power: bool = False                 # also audit a twin without noise and clipping
    bug: PlantedBug | None = None       # a broken step trained, the spec's claim kept
    bug_as_twin: bool = False           # black box, `--plant-bug` alone: the bug is the spec's twin without
    #                                     noise and clipping (any engine), not a broken fast step
    kind: str = "synthetic"             # canary images: synthetic or mislabelled
    white_box: bool = False
    held_out: int = HELD_OUT


def run_audit(spec: Spec, data_dir: Path, out_dir: Path, logdir: Path, config: AuditConfig) -> tuple[dict, Path]:
    """Audit `spec` (its first seed unless `seeds`); return the audit and the path of audit.json.
    `config.bug` breaks the fast engine's step (or, `bug_as_twin`, trains the spec's twin without noise
    and clipping); the spec's privacy claim is kept (the bug check must fire). `white_box`: gradient canaries
    in the DP-SGD step, scored from every step's noisy sum less the training examples' clipped sum
    (audit/whitebox.py), instead of canary images scored by the trained model. `held_out`: the
    membership inference's non-members, that many images of the training file drawn at random per
    seed, never trained on (`held_out_split`; 0: the test images)."""
    # plan
    seeds, m, confidence, power, bug = config.seeds, config.canaries, config.confidence, config.power, config.bug
    kind, white_box, held_out = config.kind, config.white_box, config.held_out
    s = spec.with_overrides(seeds=seeds)
    if (white_box or (bug and not config.bug_as_twin)) and s.engine.name != "fast":
        raise InputError(f"{s.path}: engine.name: {s.engine.name}; "
                         + ("--white-box puts its canaries into the fast engine's step" if white_box else
                            f"--plant-bug {bug.value} breaks the fast engine's step") + ": audit with engine fast")
    if white_box and s.sampling != "poisson":
        raise InputError(f"{s.path}: data.sampling: {s.sampling}; --white-box samples its canaries as Poisson at "
                         f"q and judges them against the Poisson claim, which does not hold for shuffled batches "
                         f"(their claim is the once-per-epoch bound, zero-out adjacency): audit the spec's Poisson twin")
    if not 0 < confidence < 1:
        raise InputError(f"--confidence: {confidence} is not between 0 and 1")
    if s.data.features != "none":
        raise InputError(f"{s.path}: data.features: the audit puts canary images into the training set and "
                         f"does not turn them into {s.data.features} features yet; audit a spec trained on pixels")
    full = load_mnist(data_dir, s.data.url, None if held_out else s.data.train_examples, s.data.test_examples)
    asked = s                                        # its own examples: where the held-out images are drawn
    s = held_out_spec(s, held_out)                   # as many examples trained for every seed
    limit = len(full.x_test) // 2 if kind == "mislabelled" else s.train_examples
    if not white_box and not 2 <= m <= limit:
        raise InputError(f"--canaries: {m} canaries; need 2 to {limit} " + (
            f"(half of the spec's {len(full.x_test)} test images: the rest stay held out)" if kind == "mislabelled"
            else f"(at most as many as the spec's {s.train_examples} training examples)"))
    seeds = list(s.seeds) if seeds else list(s.seeds[:1])
    power = power and s.private
    folder = files.run_folder(out_dir, s.name, s.version)
    kept_apart = "audit-whitebox" if white_box else "audit"       # a white-box audit does not replace the black-box one
    path, logs = folder / f"{kept_apart}.json", files.run_folder(logdir, s.name, s.version) / kept_apart
    print(f"dprepro audit: {s.name} v{s.version}, engine {s.engine.name}, {s.sampling} sampling, seeds {seeds}, "
          f"{m} {'gradient ' if white_box else ''}canaries{' (white box)' if white_box else ''}, confidence {confidence:g}"
          + (f", PLANTED BUG {bug.value}: judged by the spec's claim" if bug else "")
          + (", with the no-noise power check" if power else ""), flush=True)
    started, t0, git = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter(), environment.git_state()
    with RunLock([folder, logs], f"audit of {s.name} v{s.version}"):
        # train
        entries, twins = [], []
        for seed in seeds:
            data, nonmembers = seed_data(full, asked, held_out, seed)
            legacy = config.bug_as_twin and not white_box      # the black-box audit's own twin, unclipped
            runs = [(entries, f"seed {seed}", not legacy, True, None if legacy else bug)]
            if power:
                runs.append((twins, f"seed {seed} no noise", False, False, PlantedBug.NOISE_AND_CLIP_OFF))
            for kept, label, clipping_and_noise, claim, broken in runs:
                if white_box:
                    entry = white_box_one(s, data, nonmembers, m, seed, confidence, len(seeds), label, broken)
                else:
                    entry = audit_one(s, data, nonmembers, m, kind, seed, confidence, len(seeds), label,
                                      clipping_and_noise, claim, None if not clipping_and_noise else broken)
                log_scalars(logs / label.replace("seed ", "seed-").replace(" ", "-"), entry, s.training.epochs)
                kept.append(entry)
                print(describe(entry, label), flush=True)
        # assemble
        audit = {
            "audit_schema": AUDIT_SCHEMA, "name": s.name, "version": s.version, "spec_path": spec.path,
            "spec_sha256": spec.sha256, "engine": s.engine.name, "engine_version": ENGINE_VERSIONS[s.engine.name],
            "sampling": s.sampling, "planted_bug": bug.value if bug else False,
            "method": {**(white_box_method(m, confidence) if white_box else method(m, kind, confidence)),
                       **membership_method(held_out, s.train_examples)},
            "trained_examples": s.train_examples,
            "seeds": entries, "no_noise": twins or None,
            "summary": summarise(entries),
            "no_noise_summary": summarise(twins) if twins else None,
            "checks": checks(entries, twins),
            "git": git, "environment": environment.this_machine(),
            "command": ["dprepro", *sys.argv[1:]], "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": time.perf_counter() - t0,
        }
        files.write_json(path, audit)
        roc_figure(audit, roc_path(path))
    return audit, path


def roc_path(path: Path) -> Path:
    """audit.json's figure is audit-roc.png; audit-whitebox.json's is audit-whitebox-roc.png."""
    return path.with_name(f"{path.stem}-roc.png")


def describe(entry: dict, label: str) -> str:
    c, mi, acc = entry["canaries"], entry["membership"], entry["accountant"]
    claim = (f" | accountant {acc['epsilon']:.3f} ({acc['name']})" if acc and acc["epsilon"] is not None else "")
    return (f"  {label}: eps lower bound {c['epsilon_lower_bound']:.3f} "
            f"({c['correct']}/{c['guesses']} correct at k={c['k']}), f-DP {c['fdp_epsilon_lower_bound']:.3f}{claim} | MIA AUC {mi['auc']:.4f}, "
            f"TPR {100 * mi['tpr_at_fpr_0.001']:.2f}% at 0.1% FPR | test acc {entry['test_accuracy']:.4f} | "
            f"{entry['wall_seconds']:.0f} s")


def screen(audit: dict, path: Path) -> str:
    """The one-screen summary printed at the end."""
    s = audit["summary"]
    white = audit["method"]["kind"].endswith("(white box)")
    lines = [f"dprepro audit: {audit['name']} v{audit['version']} ({audit['sampling']} sampling, "
             f"{audit['method']['canaries']} {'gradient canaries, white box' if white else 'canaries'}, {len(audit['seeds'])} seed(s))",
             f"  audited epsilon lower bound ({100 * audit['method']['confidence']:g}%): {s['epsilon_lower_bound']:.3f} "
             f"(Steinke et al.); f-DP, Gaussian curve: {s['fdp_epsilon_lower_bound']:.3f}",
             f"  accountant epsilon of record: " + (f"{s['accountant_epsilon']:.3f} ({s['accountant']})"
                                                  if s["accountant_epsilon"] is not None else "none (non-private)"),
             f"  membership inference: AUC {s['mia_auc']:.4f}, TPR {100 * s['mia_tpr_at_fpr_0.001']:.2f}% at 0.1% FPR, "
             f"{100 * s['mia_tpr_at_fpr_0.01']:.2f}% at 1% FPR, advantage {s['mia_advantage']:.4f}"]
    if audit["no_noise_summary"]:
        t = audit["no_noise_summary"]
        lines.append(f"  no noise, no clipping: lower bound {t['epsilon_lower_bound']:.3f}, MIA AUC {t['mia_auc']:.4f}")
    if s.get("ledger_departs"):
        lines.append(f"  the ledger of what ran departs from the claim's plan: {s['ledger_departs']}")
    for check in ("bug", "power"):
        if audit["checks"][check]:
            lines.append(f"  {check} check: {audit['checks'][check]['text']}")
    lines.append(f"  written: {path} and {roc_path(path)} ({audit['wall_seconds']:.0f} s)")
    return "\n".join(lines)


def failed(audit: dict) -> bool:
    return any(c is not None and not c["passed"] for c in audit["checks"].values())

"""results/README.md and results/figures/*.png, generated from the pinned result files only."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from scipy import stats

from dprepro import accounting, files
from dprepro.files import write_text
from dprepro.records.result import as_float
from dprepro.records import averaging_ab, selective_report, tuned, tuned_frontier
from dprepro.records.read import load_result
from dprepro.records.report_figures import ACCOUNTANT_COLUMNS, figures
from dprepro.records.result import AuditRecord, EpsilonBlock, Pinned, Result
from dprepro.records.reproductions import table as reproduction_table



def pinned_results(results_dir: Path) -> list[Pinned]:
    """Every results/<name>/v<version>/result*.json with the audits beside it, ordered by name,
    version and engine."""
    found = []
    for path in sorted(Path(results_dir).glob("*/v*/result*.json")):
        own = path.name == "result.json"          # the spec's own engine: its audits lie beside it
        found.append(Pinned(load_result(path), str(path.relative_to(results_dir)),
                            pinned_audit(path.with_name("audit.json")) if own else None,
                            pinned_audit(path.with_name("audit-whitebox.json")) if own else None))
    return found


def pinned_audit(path: Path) -> AuditRecord | None:
    """The audit.json beside a result (None if there is none; one that cannot be read, or lacks a
    field, is an InputError naming the file and the field)."""
    if not path.is_file():
        return None
    with files.reading(path, "the audit"):
        return AuditRecord.from_json(files.read_json(path, "an audit"))


def audit_cell(audit: AuditRecord | None) -> str:
    if not audit:
        return "–"
    return f"{audit.summary.epsilon_lower_bound:.3f}"


def audits_of_sweep_cells(results_dir: Path) -> list[tuple[str, str, AuditRecord, str]]:
    """Audits pinned beside a pinned sweep's cell (results/sweeps/<sweep>/v<k>/<cell>/v<k>/audit*.json)."""
    found = []
    for path in sorted(Path(results_dir).glob("sweeps/*/v*/*/v*/audit*.json")):
        if (audit := pinned_audit(path)) is not None:
            found.append((audit.name, str(path.relative_to(results_dir)), audit, f"{path.stem}-roc.png"))
    return found


def audit_table(pinned: list[Pinned], results_dir: Path | None = None) -> list[str]:
    """The privacy audits (`dprepro audit`, `make pin-audits`, `make pin-whitebox-audits`) of the pinned
    specs and sweep cells: one row per audit, black box (audit.json) and white box (audit-whitebox.json)."""
    audited = [(p.result.name, p.path, a, roc) for p in pinned
               for a, roc in ((p.audit, "audit-roc.png"), (p.whitebox, "audit-whitebox-roc.png")) if a]
    audited += audits_of_sweep_cells(results_dir) if results_dir else []
    if not audited:
        return []
    lines = ["## Privacy audits", "",
             "`dprepro audit` (docs/audits.md): one training run per seed with canaries, each in the training set on a",
             "fair coin. Black box: canary images scored by the trained model; white box (`--white-box`): gradient",
             "canaries in the DP-SGD step, scored from every step's noisy sum less the training examples' clipped sum",
             "(an auditor who knows the others' sampling, as DP-SGD's ε allows). The lower bound is Steinke, Nasr and",
             "Jagielski's (2023) at 95 % confidence, Bonferroni-corrected over the guess counts and the seeds; the",
             "verdict (bug check) uses it. Beside it, from the same guesses and equally corrected, Mahloujifar, Melis",
             "and Chaudhuri's (2025) f-DP bound, which refutes Gaussian trade-off curves (μ-GDP), shown as ε at the same δ.",
             "Each is a lower bound for this attack, not an estimate of the true ε. \"no noise\": the same schedule and",
             "canaries trained without noise and clipping (the power check needs it to exceed the DP run's bound by 1).",
             "MIA: score = the log-probability of the true label, mean over seeds; members = the examples trained,",
             "non-members = 10,000 training-file images held out at random (`--held-out`, the default: the run then",
             "trains 50,000 and its claim is for those) or, in audits of the pinned schedule itself (`--held-out 0`,",
             "the white-box rows), the test images, which are easier (AUC below 0.5 there is that shift).", "",
             "| experiment | sampling | seeds | canaries | accountant ε of record | audited ε lower bound (95 %) | "
             "f-DP bound, Gaussian (95 %) | bound / ε | no noise: lower bound | bug check | power check | MIA AUC | "
             "TPR at 0.1 % FPR | TPR at 1 % FPR | s / audit | ROC |",
             "|" + " --- |" * 16]
    for name, where, a, roc_name in audited:
        s, t = a.summary, a.no_noise
        verdict = {None: "–", True: "passed", False: "FAILED"}
        claim = s.accountant_epsilon
        eps = f"{claim:.3f} ({s.accountant})" if claim is not None else "∞"
        fdp = s.fdp_epsilon_lower_bound
        ratio = (f"{s.epsilon_lower_bound / claim:.2f}" + (f" / {fdp / claim:.2f}" if fdp is not None else "")
                 if claim else "–")
        roc = Path(where).with_name(roc_name)
        lines.append(f"| {name} | {a.sampling} | {a.seeds} | {a.canaries} "
                     f"{a.kind} | {eps} | {s.epsilon_lower_bound:.3f} | "
                     + (f"{fdp:.3f}" if fdp is not None else "–") + f" | {ratio} | "
                     + (f"{t.epsilon_lower_bound:.3f}" if t else "–") + " | "
                     + f"{verdict[a.bug_check]} | {verdict[a.power_check]} | "
                     + f"{s.mia_auc:.4f} | {100 * s.mia_tpr_at_fpr_0_001:.2f} % | "
                     + f"{100 * s.mia_tpr_at_fpr_0_01:.2f} % | {s.seconds_per_audit:.0f} | [png]({roc}) |")
    return [*lines, ""]


def sweep_sections(results_dir: Path) -> list[str]:
    """The frontier of each pinned sweep (results/sweeps/<name>/v<version>/frontier.json)."""
    from dprepro.records.frontier import table as frontier_table

    from dprepro.records.frontier import write_frontier

    lines = []
    for path in sorted(results_dir.glob("sweeps/*/v*/frontier.json")):
        with files.reading(path, "the frontier"):
            frontier = files.read_json(path, "the frontier")
            if list(path.parent.glob("*/v*/result.json")):   # the figure and table anew, from the pinned cells
                write_frontier(path.parent, frontier["sweep"], frontier["version"])
                frontier = files.read_json(path, "the frontier")
            folder = path.parent.relative_to(results_dir)
            lines += [f"## Sweep {frontier['sweep']} v{frontier['version']}", "",
                      f"`dprepro sweep` (docs/sweeps.md); cell specs and results in `{folder}/`.",
                      "", frontier_table(frontier["cells"]), "",
                      "† does not hold for the cell's sampling.", "", f"![frontier]({folder}/frontier.png)", ""]
    return lines


def confidence_interval(values: list) -> tuple[float, float]:
    """95% Student-t interval of the mean (degenerate for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / np.sqrt(len(values))
    return mean - half, mean + half


def epsilon_cell(eps, name: str) -> str:
    """A value, marked † when it does not hold for the run (assumes another sampling or sensitivity)."""
    v = eps.get(name)
    if v is None:
        return "–"
    return f"{as_float(v['epsilon']):.4f}" + ("" if v.get("holds_for_this_run", True) else "†")


def with_verdicts(block: EpsilonBlock | None, spec) -> EpsilonBlock | None:
    """The block with each value's verdict (holds for the run or not) and the value of record; a
    block written before dprepro 0.4 gets them from the spec (its values are kept)."""
    if not block or "of_record" in block.fields:
        return block
    fresh = EpsilonBlock.from_json(accounting.epsilon_block(spec))
    accountants = {name: {**value, **{k: fresh.accountants[name][k] for k in ("holds_for_this_run", "label")}}
                   for name, value in block.accountants.items() if name in fresh.accountants}
    return EpsilonBlock.from_json({**block.to_json(), "accountants": accountants, "of_record": fresh.of_record})


def table(pinned: list[Pinned]) -> str:
    """Two tables a screen wide each: every pin's ε (per accountant, the interval's lower end, the audit),
    then its accuracy and provenance; one row per pinned file in both, in the same order."""
    head = ("| experiment | spec | engine | epochs | sampling | ε of record (holds) | ε at least | "
            "audited ε lower bound (95 %) | " + " | ".join(f"ε {a}" for a in ACCOUNTANT_COLUMNS) + " |")
    head2 = ("| experiment | spec | engine | test accuracy, mean ± std (n) | 95% CI | s / epoch | hardware | "
             "arithmetic path | file |")
    lines = ["**ε of every pin**", "", head, "|" + " --- |" * (head.count("|") - 1)]
    lines2 = ["**Accuracy and provenance**", "", head2, "|" + " --- |" * (head2.count("|") - 1)]
    for p in pinned:
        r = p.result
        block = with_verdicts(r.epsilon, r.spec)
        eps = block.accountants if block else {}
        cells = [epsilon_cell(eps, a) if block else "–" for a in ACCOUNTANT_COLUMNS]
        record = f"{block.value_of_record:.4f} ({block.of_record})" if block and block.of_record else "–"
        low, high = confidence_interval([s.test_accuracy for s in r.seeds])
        acc, env = r.test_accuracy, r.environment
        epoch_s = statistics.fmean(t for s in r.seeds for t in s.epoch_seconds)
        hardware = f"{env['cpu']} ×{env['cpu_count']}" + (f", {', '.join(env['devices']['gpus'])}"
                                                         if env["devices"]["gpus"] else ", no GPU")
        who = f"| {r.name} | v{r.version} | {r.engine} v{r.engine_version} | "
        lines.append(who + f"{r.spec.training.epochs} | {r.spec.sampling} | {record} | {at_least_cell(block)} | "
                     f"{audit_cell(p.audit) if r.engine == r.spec.engine.name else '–'} | " + " | ".join(cells) + " |")
        lines2.append(who + f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % ({acc['n']}) | "
                      f"[{100 * low:.2f}, {100 * high:.2f}] % | {epoch_s:.1f} | {hardware} | "
                      f"{env.get('arithmetic', {}).get('id', '–')} | `{p.path}` |")
    return "\n".join([*lines, "", *lines2])


def at_least_cell(block: EpsilonBlock | None) -> str:
    """The interval's lower end with where it comes from (‡ when its adjacency is not the upper end's)."""
    if not block or block.at_least is None:
        return "–"
    return f"{block.at_least:.4f} ({block.interval['lower_from']})" + ("" if block.interval["same_adjacency"] else "‡")


def interval_notes(results: list[Result]) -> list[str]:
    """Bullet lines: where each published epsilon of a pinned shuffled run lies in its interval."""
    from dprepro.lower_bounds import published_against

    notes = []
    for r in results:
        if not r.epsilon or r.engine != r.spec.engine.name:
            continue
        for quantity, value, lies in published_against({q: e.value for q, e in r.spec.expected.items()},
                                                         {**r.epsilon.fields, "sampling": r.spec.sampling}):
            notes.append(f"- {r.name}: the published {quantity} = {value:g} ({r.spec.expected[quantity].source}) "
                         f"is {lies}.")
    return notes


def epsilon_notes(results: list[Result]) -> list[str]:
    """Bullet lines: the doubled-sensitivity values of multi-example microbatches, and published
    values that were computed under another convention, with their reasons."""
    notes = []
    for r in results:
        block = r.epsilon
        if not block:
            continue
        doubled = {n: v for n, v in block.accountants.items() if n.endswith("_doubled")}
        if doubled:
            notes.append(f"- {r.name}: {block.microbatch_size} examples per microbatch, so rdp_legacy, rdp "
                         f"and pld (sensitivity l2_norm_clip) do not hold even under Poisson sampling; with "
                         f"the doubled sensitivity: "
                         + ", ".join(f"{n} {as_float(v['epsilon']):.4f}" for n, v in doubled.items()) + ".")
        for quantity, v in block.under_published_conventions.items():
            entry = r.spec.expected[quantity]
            notes.append(f"- {r.name}: published {quantity} = {entry.value:g} ({entry.source}) is "
                         f"reproduced as {as_float(v['epsilon']):.4f} with used_microbatching "
                         f"{str(v['used_microbatching']).lower()}: {entry.note or ''}".rstrip(": ") + ".")
    return notes


def per_epoch_figures(result: Result) -> bool:
    """The per-epoch figures show the tutorial's own family of specs (tutorial-*, keras-script-*,
    nonprivate-*); the reproductions and the tuned frontier have their tables (and figure)."""
    return result.name.startswith(("tutorial-", "keras-script-", "nonprivate-", "smoke"))


def write_report(results_dir) -> Path:
    """Regenerate results/README.md and results/figures/ from the pinned result files."""
    results_dir = Path(results_dir)
    pinned = pinned_results(results_dir)
    results = [p.result for p in pinned]
    if not results:
        raise FileNotFoundError(f"{results_dir}: no pinned result files (results/<name>/v<version>/result.json)")
    names = figures([r for r in results if per_epoch_figures(r)], results_dir / "figures")
    tuned_rows = tuned.rows(results_dir, results)        # its table links its own figure
    tuned.figure(results_dir, tuned_rows, results_dir / "figures" / "tuned_frontier.png")
    text = "\n".join([
        "# Pinned results",
        "",
        "Generated by `make report` from the result files below; do not edit by hand.",
        "ε is for δ in each spec (1e-5) and add-or-remove-one adjacency; see docs/privacy.md,",
        "\"Which ε should I cite?\". Test accuracy is the final epoch's, over all seeds of the file;",
        "the 95% CI is Student's t interval of the mean. s / epoch is the mean wall time of one",
        "epoch (training and evaluation) on the hardware shown, as it happened during the pinned run (other",
        "work may have shared the machine); `make bench` measures speed under control. The tutorial specs share their seeds and",
        "training is deterministic, so the 1-, 3-, 5- and 15-epoch runs of an engine coincide exactly over their common",
        "first epochs: their curves lie on top of each other there.",
        "",
        "What to expect when you re-run them: the same seed on the same arithmetic path (the column; CPU",
        "flags, oneDNN on/off and its ISA limit, GPU: `environment.arithmetic` in each file) gives identical",
        "numbers; on another path the accuracies agree statistically, within the bands `dprepro compare`",
        "applies; ε agrees everywhere within each accountant's tolerance (1e-9 relative, PLD 1e-6).",
        "",
        table(pinned),
        "",
        "† does not hold for that run: the value assumes Poisson sampling and the run shuffled, or it assumes",
        "sensitivity l2_norm_clip and the run's microbatches held several examples (the result file's",
        "`epsilon.accountants.<name>.label` says which). These are the numbers the tutorial prints and papers",
        "cite; \"ε of record\" is the smallest value that holds for the training done (docs/privacy.md,",
        "\"Which ε should I cite?\").",
        "",
        "\"ε at least\" is the interval's other end (the result file's `epsilon.interval`; docs/privacy.md, \"The",
        "ε interval\"): for shuffled runs the lower bound of Chua et al. 2024 (zero-out adjacency, like the",
        "once-per-epoch values of record; the training only, with gradients an adversary chooses), for Poisson runs",
        "dp_accounting's PLD rounded down (add/remove). A printed ε below it is wrong for the run; between the two ends",
        "nothing known decides. Where the published ε of a shuffled pin lies against its interval:",
        "",
        *interval_notes(results),
        "",
        *epsilon_notes(results),
        "",
        *reproduction_table(results),
        *averaging_ab.table(results),
        *selective_report.table(results),
        *audit_table(pinned, results_dir),
        *sweep_sections(results_dir),
        *tuned.table(results_dir, tuned_rows),
        *tuned_frontier.table(tuned_frontier.points(results_dir, results)),
        *[f"![{n}](figures/{n})" for n in names],
        "",
    ])
    path = results_dir / "README.md"
    write_text(path, text)
    return path

"""results/README.md and the figures, generated from real result files."""

import shutil
from pathlib import Path

import yaml

from conftest import run_cli_in_process
from dprepro.spec import ENGINE_VERSIONS


def test_report_from_a_real_result(smoke_runs, tmp_path):
    results = tmp_path / "results"
    (results / "smoke" / "v1").mkdir(parents=True)
    shutil.copy(smoke_runs[0][0] / "smoke" / "v1" / "result.json", results / "smoke" / "v1" / "result.json")
    proc = run_cli_in_process("report", "--results", results)
    assert proc.returncode == 0, proc.stderr
    text = (results / "README.md").read_text()
    acc = smoke_runs[0][2]["test_accuracy"]["mean"]
    # two tables, a screen wide each (issue 35): the ε row first, then the accuracy and provenance row
    row, provenance = [line for line in text.splitlines() if line.startswith("| smoke |")]
    assert f"| fast v{ENGINE_VERSIONS['fast']} | 1 |" in row and f"| {100 * acc:.2f} ± 0.00 % (1) |" in provenance
    assert all(line.count("|") <= 14 for line in text.splitlines() if line.startswith("| smoke |"))
    once = smoke_runs[0][2]["epsilon"]["accountants"]["statement_once_per_epoch"]["epsilon"]
    assert f"| shuffle | {once:.4f} (statement_once_per_epoch) |" in row
    assert row.count("†") == 4               # rdp_legacy, rdp, pld, statement_poisson: assume Poisson
    assert "† does not hold for that run" in text
    for name in ("accuracy_per_epoch.png", "epsilon_per_epoch.png", "accuracy_vs_epsilon.png"):
        assert (results / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{name})" in text


def test_report_without_results_is_exit_2(tmp_path):
    proc = run_cli_in_process("report", "--results", tmp_path)
    assert proc.returncode == 2 and "no pinned result files" in proc.stderr


def test_report_shows_the_pinned_audit_and_the_sweep_frontier(tmp_path):
    from conftest import ROOT
    import json

    pinned, results = ROOT / "results", tmp_path / "results"
    (results / "tutorial-15ep-poisson" / "v1").mkdir(parents=True)
    for name in ("result.json", "audit.json", "audit-whitebox.json"):
        shutil.copy(pinned / "tutorial-15ep-poisson" / "v1" / name, results / "tutorial-15ep-poisson" / "v1" / name)
    (results / "sweeps" / "frontier" / "v1").mkdir(parents=True)
    shutil.copy(pinned / "sweeps" / "frontier" / "v1" / "frontier.json", results / "sweeps" / "frontier" / "v1")
    cell = Path("sweeps") / "frontier" / "v1" / "frontier-eps4" / "v1" / "audit-whitebox.json"  # beside a sweep cell
    (results / cell).parent.mkdir(parents=True)
    shutil.copy(pinned / cell, results / cell)
    proc = run_cli_in_process("report", "--results", results)
    assert proc.returncode == 0, proc.stderr
    text = (results / "README.md").read_text()
    cell_audit = json.loads((pinned / cell).read_text())["summary"]
    (cell_row,) = [line for line in text.splitlines() if line.startswith("| frontier-eps4 | poisson |")]
    assert f"| {cell_audit['accountant_epsilon']:.3f} (pld) | {cell_audit['epsilon_lower_bound']:.3f} |" in cell_row
    assert f"[png]({cell.with_name('audit-whitebox-roc.png')})" in cell_row
    audit = json.loads((pinned / "tutorial-15ep-poisson" / "v1" / "audit.json").read_text())["summary"]
    row, _ = [line for line in text.splitlines() if line.startswith("| tutorial-15ep-poisson | v1 |")]  # ε, provenance
    at_least = json.loads((pinned / "tutorial-15ep-poisson" / "v1" / "result.json").read_text())["epsilon"]["interval"]
    # the interval's lower end, then the audit column of the main table
    assert f"(pld) | {at_least['lower']:.4f} (pld_optimistic) | {audit['epsilon_lower_bound']:.3f} |" in row
    (audit_row,) = [line for line in text.splitlines()
                    if line.startswith("| tutorial-15ep-poisson | poisson |") and "(white box)" not in line]
    assert (f"| {audit['accountant_epsilon']:.3f} (pld) | {audit['epsilon_lower_bound']:.3f} | "
            f"{audit['fdp_epsilon_lower_bound']:.3f} |") in audit_row
    assert "| passed | passed |" in audit_row and f"| {audit['mia_auc']:.4f} |" in audit_row
    # The white-box audit's row beside it (issue 22, item 6): both bounds and bound / epsilon.
    white = json.loads((pinned / "tutorial-15ep-poisson" / "v1" / "audit-whitebox.json").read_text())["summary"]
    (white_row,) = [line for line in text.splitlines()
                    if line.startswith("| tutorial-15ep-poisson | poisson |") and "(white box)" in line]
    assert (f"| {white['accountant_epsilon']:.3f} (pld) | {white['epsilon_lower_bound']:.3f} | "
            f"{white['fdp_epsilon_lower_bound']:.3f} | {white['epsilon_lower_bound'] / white['accountant_epsilon']:.2f} / "
            f"{white['fdp_epsilon_lower_bound'] / white['accountant_epsilon']:.2f} |") in white_row
    frontier = json.loads((pinned / "sweeps" / "frontier" / "v1" / "frontier.json").read_text())["cells"]
    assert "## Sweep frontier v1" in text and "(sweeps/frontier/v1/frontier.png)" in text
    for cell in frontier:
        assert any(line.startswith(f"| {cell['cell']} |") for line in text.splitlines())


def test_report_puts_a_reproduction_beside_its_paper(tmp_path):
    """A pinned reproduction (a spec whose `expected` has the paper's accuracy and ε) gets a row: the
    published ε and accuracy, the same ε as dprepro computes it (marked † when the run's sampling
    breaks its assumption), the ε of record, the accuracy and its difference to the paper."""
    from conftest import ROOT
    import json

    pinned, results = ROOT / "results", tmp_path / "results"
    for name in ("tramer-boneh-cnn-tanh", "tramer-boneh-cnn-tanh-poisson"):
        (results / name / "v1").mkdir(parents=True)
        shutil.copy(pinned / name / "v1" / "result.json", results / name / "v1" / "result.json")
    proc = run_cli_in_process("report", "--results", results)
    assert proc.returncode == 0, proc.stderr
    lines = (results / "README.md").read_text().splitlines()
    assert "## Reproductions of published results" in lines
    for name, holds in (("tramer-boneh-cnn-tanh", False), ("tramer-boneh-cnn-tanh-poisson", True)):
        result = json.loads((results / name / "v1" / "result.json").read_text())
        legacy = result["epsilon"]["accountants"]["rdp_legacy"]["epsilon"]
        acc = result["test_accuracy"]["mean"]
        (row,) = [line for line in lines if line.startswith(f"| {name} v1 |")]
        assert f"| 3 (rdp_legacy) | 98.1 % | {legacy:.3f}{'' if holds else '†'} |" in row, row
        assert f"| {100 * (acc - 0.981):+.2f} |" in row, row


def test_report_shows_the_tuned_frontier(tmp_path):
    """Every recorded search's choices beside their pinned runs: target, ε of record, ε with the
    search, the test accuracy over seeds, and the figure."""
    from conftest import ROOT
    import json

    pinned, results = ROOT / "results", tmp_path / "results"
    (results / "sweeps" / "frontier" / "v1").mkdir(parents=True)
    shutil.copy(pinned / "sweeps" / "frontier" / "v1" / "frontier.json", results / "sweeps" / "frontier" / "v1")
    names, skipped = {}, []
    design = yaml.safe_load((ROOT / "experiments" / "sweeps" / "tuned-frontier.yaml").read_text())
    frontier = json.loads((pinned / "sweeps" / "tuned-frontier" / f"v{design['version']}" / "choice.json").read_text())
    for selection in sorted(pinned.glob("sweeps/tuned-*/v1/selection.json")):
        record = json.loads(selection.read_text())
        if f"{record['sweep']} v1" in frontier["searches"] and not list(ROOT.glob(f"experiments/{record['sweep']}-*.yaml")):
            continue        # a search run for the tuned frontier only: its choices are pinned as the frontier's points
        (results / "sweeps" / record["sweep"] / "v1").mkdir(parents=True)
        shutil.copy(selection, results / "sweeps" / record["sweep"] / "v1")
        for choice in record["choices"]:
            pins = {f"{record['sweep']}-eps{choice['target']['epsilon']:g}": choice["epsilon_with_search"]}
            if "refit" in choice:                  # the refit is pinned too, with its own search epsilon
                pins[choice["refit"]["name"]] = choice["refit"]["epsilon_with_search"]
            for name, search in pins.items():
                if not (pinned / name / "v1" / "result.json").is_file():
                    # only a refitted choice may leave its 55,000-example schedule unpinned (the refit is the pin)
                    assert "refit" in choice and name != choice["refit"]["name"], f"{name}: chosen, not pinned"
                    skipped.append(name)
                    continue
                (results / name / "v1").mkdir(parents=True)
                shutil.copy(pinned / name / "v1" / "result.json", results / name / "v1" / "result.json")
                names[name] = (choice["target"], search)
    assert len(names) >= 8
    proc = run_cli_in_process("report", "--results", results)
    assert proc.returncode == 0, proc.stderr
    lines = (results / "README.md").read_text().splitlines()
    assert "## Tuned frontier" in lines and "![tuned frontier](figures/tuned_frontier.png)" in lines
    assert (results / "figures" / "tuned_frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, (target, search) in names.items():
        result = json.loads((results / name / "v1" / "result.json").read_text())
        eps = result["epsilon"]["accountants"]["pld"]["epsilon"]
        # The tuned table's row (the main table has one too, starting with the name).
        (row,) = [line for line in lines if f"| {name} |" in line and not line.startswith(f"| {name} |")]
        assert row.startswith(f"| {target['epsilon']:g} ({target['accountant']}) |")
        assert f"| {100 * result['test_accuracy']['mean']:.2f} ± " in row and f"| {eps:.3f} (pld) |" in row
        assert f"| {search['epsilon']:.3f} |" in row
        # The pinned run's ε of record is the target's or below it (rdp targets: pld is tighter; pld
        # targets: calibrated to 1e-6 with the same accountant), and the search only adds to it.
        assert eps <= target["epsilon"] + 1e-4 < search["epsilon"]
    assert skipped == ["tuned-cnn-tanh-large-batch-eps3"]
    assert not [line for line in lines if f"| {skipped[0]} |" in line]       # no row for a run not pinned

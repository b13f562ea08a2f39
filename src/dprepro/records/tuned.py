"""The tuned frontier in the report: each search's choices (results/sweeps/<name>/v<version>/selection.json)
beside the pinned runs of the chosen schedules (results/<name>-eps<target>/v1/), the published points
and the tutorial's frontier, as a table and a figure."""

from __future__ import annotations

from pathlib import Path

from dprepro import files
from dprepro.files import save_figure
from dprepro.records.reproductions import PUBLISHED
from dprepro.records.result import Result


def of_record(result: Result) -> tuple[float, str] | None:
    block = result.epsilon
    if not block or not block.of_record:
        return None
    return block.value_of_record, block.of_record


def rows(results_dir: Path, results: list[Result]) -> list[dict]:
    """One row per choice of every recorded search whose tuned spec is pinned."""
    by_name = {r.name: r for r in results}
    out = []
    for path in sorted(Path(results_dir).glob("sweeps/*/v*/selection.json")):
        record = files.read_json(path, "a search's selection")
        with files.reading(path, "the selection"):
            out += rows_of(record, by_name)
    return out


def rows_of(record: dict, by_name: dict) -> list[dict]:
    """The rows of one selection.json."""
    out = []
    for choice in record["choices"]:
        target = choice["target"]
        name = f"{record['sweep']}-eps{target['epsilon']:g}" if target else f"{record['sweep']}-best"
        pins = [(name, choice["noise_multiplier"], choice["epsilon_with_search"], None)]
        if choice.get("refit"):          # the same schedule on the whole training file (select --refit)
            refit = choice["refit"]
            pins.append((refit["name"], refit["noise_multiplier"], refit["epsilon_with_search"],
                         refit["train_examples"]))
        for pin_name, noise, search, refit_examples in pins:
            pinned = by_name.get(pin_name)
            if pinned is None or of_record(pinned) is None:
                continue
            eps, accountant = of_record(pinned)
            better = [p for p in PUBLISHED if p.epsilon >= eps]
            best = max(better, key=lambda p: p.accuracy) if better else None
            out.append({"search": record["sweep"], "name": pin_name, "target": target, "chosen": choice["chosen"],
                        "values": choice["values"], "noise_multiplier": noise, "refit_examples": refit_examples,
                        "validation_accuracy": choice["validation_accuracy"],
                        "configurations": choice["configurations"], "test_accuracy": pinned.test_accuracy,
                        "epsilon": eps, "accountant": accountant, "epsilon_with_search": search["epsilon"],
                        "best_published_at_or_above": best})
    return out


def frontier_at(results_dir: Path, eps: float) -> dict | None:
    """The pinned tutorial frontier's cell (results/sweeps/frontier) whose pld ε is closest to `eps`."""
    path = Path(results_dir) / "sweeps" / "frontier" / "v1" / "frontier.json"
    if not path.is_file():
        return None
    with files.reading(path, "the frontier"):
        cells = [c for c in files.read_json(path, "the frontier")["cells"] if c["private"]]
    return min(cells, key=lambda c: abs(c["epsilon"]["pld"] - eps)) if cells else None


def table(results_dir: Path, tuned: list[dict]) -> list[str]:
    if not tuned:
        return []
    lines = ["## Tuned frontier", "",
             "Each row: a target ε, the schedule a search chose for it on validation examples (the training",
             "file's last 5,000, never trained on; docs/sweeps.md, Tuning), pinned with 3 seeds on the other",
             "55,000; a refit row (`select --refit`) trains the same schedule on all 60,000, its noise calibrated",
             "again. ε of record holds for one run and excludes the search; ε with the search composes every",
             "trial of that target and one run of the choice (rdp); it covers the training examples, not the",
             "validation examples, which chose without noise. Beside: the best published point at the same or",
             "a larger ε, and the tutorial CNN's pinned frontier at the nearest ε.", "",
             "| search target | pinned spec | chosen | validation acc (search) | test accuracy, mean ± std (n) | "
             "ε of record (holds) | ε with the search (rdp) | best published at ≥ this ε | Δ | tutorial CNN frontier, nearest ε | Δ |",
             "|" + " --- |" * 11]
    for r in tuned:
        acc = r["test_accuracy"]
        target = f"{r['target']['epsilon']:g} ({r['target']['accountant']})" if r["target"] else "–"
        values = (", ".join(f"{k.split('.')[-1]} {v}" for k, v in r["values"].items()) + f", σ {r['noise_multiplier']:g}"
                  + (f", refit on {r['refit_examples']:,}" if r["refit_examples"] else ""))
        best = r["best_published_at_or_above"]
        published = f"{100 * best.accuracy:.1f} % at {best.epsilon:g} ({best.paper}, {best.setup})" if best else "–"
        delta = f"{100 * (acc['mean'] - best.accuracy):+.2f}" if best else "–"
        near = frontier_at(results_dir, r["epsilon"])
        ours = (f"{100 * near['test_accuracy']['mean']:.2f} % at {near['epsilon']['pld']:.2f}",
                f"{100 * (acc['mean'] - near['test_accuracy']['mean']):+.2f}") if near else ("–", "–")
        lines.append(f"| {target} | {r['name']} | {values} | {100 * r['validation_accuracy']:.2f} % | "
                     f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % ({acc['n']}) | {r['epsilon']:.3f} ({r['accountant']}) | "
                     f"{r['epsilon_with_search']:.3f} | {published} | {delta} | {ours[0]} | {ours[1]} |")
    return [*lines, "", "![tuned frontier](figures/tuned_frontier.png)", ""]


def figure(results_dir: Path, tuned: list[dict], path: Path) -> Path | None:
    """Test accuracy against ε of record: the tuned points, the tutorial CNN's frontier, the published points."""
    if not tuned:
        return None
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dprepro.records.frontier import published_points

    fig, ax = plt.subplots(figsize=(10, 10))
    for search in sorted({r["search"] for r in tuned}):
        mine = sorted((r for r in tuned if r["search"] == search), key=lambda r: r["epsilon"])
        ax.errorbar([r["epsilon"] for r in mine], [100 * r["test_accuracy"]["mean"] for r in mine],
                    yerr=[100 * r["test_accuracy"]["std"] for r in mine], marker="o", capsize=3,
                    label=f"{search}: ε of record (pld), excludes the search")
        ax.plot([r["epsilon_with_search"] for r in mine], [100 * r["test_accuracy"]["mean"] for r in mine],
                marker="x", linestyle=":", label=f"{search}: ε with the search (rdp)")
    frontier = Path(results_dir) / "sweeps" / "frontier" / "v1" / "frontier.json"
    if frontier.is_file():
        with files.reading(frontier, "the frontier"):
            cells = sorted((c for c in files.read_json(frontier, "the frontier")["cells"] if c["private"]),
                           key=lambda c: c["epsilon"]["pld"])
        ax.errorbar([c["epsilon"]["pld"] for c in cells], [100 * c["test_accuracy"]["mean"] for c in cells],
                    yerr=[100 * c["test_accuracy"]["std"] for c in cells], marker="s", capsize=3, linestyle="--",
                    color="grey", label="tutorial CNN, 15 epochs (sweep frontier), ε pld")
    published_points(ax)
    ax.set(xscale="log", xlabel=f"ε at δ = 1e-05", ylabel="test accuracy (%), mean ± std over seeds",
           title="Tuned frontier against the tutorial's and the published points")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([0.25, 0.5, 1, 2, 4, 8, 16, 32])
    ax.grid(alpha=0.3, which="both")
    # below the plot, never over a curve (the frontier's lower points were hidden behind it)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.1), borderaxespad=0, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.97, top=0.95, bottom=0.42)
    fig.tight_layout()
    return save_figure(fig, path)

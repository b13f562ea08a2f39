"""The privacy-utility frontier of a sweep: one row per cell (epsilon under each accountant,
accuracy mean ± std over seeds) and one figure (accuracy against epsilon, with the non-private line
and the published points of the literature, each marked with the convention of its ε), written from
the cells' result.json files: frontier.json, frontier.md, frontier.png."""

from __future__ import annotations

import statistics
from pathlib import Path

from dprepro.files import save_figure, write_json, write_text
from dprepro.records.read import load_result
from dprepro.records.reproductions import PUBLISHED
from dprepro.records.result import Result

ACCOUNTANTS = ("rdp", "pld", "rdp_legacy")


def row(result: Result) -> dict:
    accs = [s.test_accuracy for s in result.seeds]
    eps, spec = result.epsilon, result.spec
    return {
        "cell": result.name, "version": result.version, "spec_sha256": result.spec_sha256,
        "private": eps is not None,
        "noise_multiplier": spec.privacy.noise_multiplier if eps else None,
        "epochs": spec.training.epochs, "sampling": spec.sampling,
        "epsilon": {a: eps.accountants[a]["epsilon"] for a in ACCOUNTANTS} if eps else None,
        "epsilon_holds": {a: eps.accountants[a]["holds_for_this_run"] for a in ACCOUNTANTS} if eps else None,
        "of_record": eps.of_record if eps else None,
        "epsilon_of_record": eps.value_of_record if eps else None,
        "delta": eps.delta if eps else None,
        "test_accuracy": {"mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                          "n": len(accs), "seeds": [s.seed for s in result.seeds], "values": accs},
    }


def collect(root: Path) -> list[dict]:
    """A row per cell result under `root` (<cell>/v<version>/result.json), private cells by epsilon."""
    rows = [row(load_result(p)) for p in sorted(Path(root).glob("*/v*/result.json"))]
    return sorted(rows, key=lambda r: (not r["private"], r["epsilon"]["rdp"] if r["private"] else 0))


def table(rows: list[dict]) -> str:
    head = ("| cell | noise multiplier | epochs | sampling | ε rdp | ε pld | ε rdp_legacy | ε of record | "
            "test accuracy, mean ± std (n) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        acc = r["test_accuracy"]
        accuracy = f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % ({acc['n']})"
        if not r["private"]:
            lines.append(f"| {r['cell']} | – | {r['epochs']} | {r['sampling']} | ∞ | ∞ | ∞ | ∞ (non-private) | {accuracy} |")
            continue
        eps = [f"{r['epsilon'][a]:.3f}" + ("" if r["epsilon_holds"][a] else "†") for a in ACCOUNTANTS]
        record = f"{r['epsilon_of_record']:.3f} ({r['of_record']})" if r["epsilon_of_record"] is not None else "none holds"
        lines.append(f"| {r['cell']} | {r['noise_multiplier']:g} | {r['epochs']} | {r['sampling']} | "
                     + " | ".join(eps) + f" | {record} | {accuracy} |")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 10))
    private = [r for r in rows if r["private"]]
    for accountant, marker in (("rdp", "o"), ("pld", "s")):
        ax.errorbar([r["epsilon"][accountant] for r in private], [100 * r["test_accuracy"]["mean"] for r in private],
                    yerr=[100 * r["test_accuracy"]["std"] for r in private], marker=marker, capsize=3,
                    label=f"DP-SGD, ε {accountant}", linestyle="-" if accountant == "rdp" else ":")
    for r in private:
        ax.annotate(f"σ={r['noise_multiplier']:g}", (r["epsilon"]["rdp"], 100 * r["test_accuracy"]["mean"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=7)
    for r in rows:
        if not r["private"]:
            ax.axhline(100 * r["test_accuracy"]["mean"], color="grey", linestyle="--",
                       label=f"non-private ({r['cell']}): {100 * r['test_accuracy']['mean']:.2f} %")
    published_points(ax)
    delta = private[0]["delta"] if private else None
    ax.set(xscale="log", xlabel=f"ε at δ = {delta:g}" if delta else "ε",
           ylabel="test accuracy (%), mean ± std over seeds", title=title)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    low = min([r["epsilon"]["pld"] for r in private] + [p.epsilon for p in PUBLISHED])
    high = max([r["epsilon"]["rdp"] for r in private] + [p.epsilon for p in PUBLISHED])
    ax.set_xticks([x for x in (0.25, 0.5, 1, 2, 4, 8, 16, 32) if low / 1.5 <= x <= 1.5 * high])
    ax.grid(alpha=0.3, which="both")
    # below the plot, never over a curve (the frontier's lower points were hidden behind it)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.1), borderaxespad=0, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.97, top=0.95, bottom=0.42)
    fig.tight_layout()
    return save_figure(fig, path)


def published_points(ax) -> None:
    """The literature's points (PUBLISHED), one marker per paper, hollow where the paper's ε assumes
    Poisson sampling that its training did not do; one legend entry per paper and setup."""
    markers, labelled = {}, set()
    for p in PUBLISHED:
        marker = markers.setdefault(p.paper, "*^Dv"[len(markers) % 4])
        key = (p.paper, p.setup)
        ax.scatter([p.epsilon], [100 * p.accuracy], marker=marker, s=60, zorder=5, edgecolors="black",
                   facecolors="none" if "does not hold" in p.convention else "black",
                   label=None if key in labelled else f"{p.paper}, {p.setup}: {p.convention}")
        near = sum(1 for q in PUBLISHED[:PUBLISHED.index(p)] if q.epsilon == p.epsilon
                   and abs(q.accuracy - p.accuracy) < 0.005)                     # points drawn on top of each other
        ax.annotate(f"{p.paper}, {p.setup}", (p.epsilon, 100 * p.accuracy), textcoords="offset points",
                    xytext=(6, -3 - 9 * near), fontsize=6)                       # labelled at the point
        labelled.add(key)


def write_frontier(root: Path, sweep_name: str, version: int) -> tuple[list[dict], Path]:
    """frontier.json, frontier.md and frontier.png in `root`; returns the rows and the table's path."""
    root = Path(root)
    rows = collect(root)
    if not rows:
        raise FileNotFoundError(f"{root}: no cell results")
    write_json(root / "frontier.json", {"sweep": sweep_name, "version": version, "cells": rows})
    title = f"{sweep_name} v{version}: accuracy against ε"
    figure(rows, root / "frontier.png", title)
    md = root / "frontier.md"
    write_text(md, f"# {title}\n\n{table(rows)}\n\n† does not hold for the cell's sampling (see its result).\n\n"
                   f"![frontier](frontier.png)\n")
    return rows, md

"""results/figures/*.png: the per-epoch figures of the tutorial's family of pinned results (test
accuracy, epsilon by accountant, accuracy against epsilon); report.py writes them beside its tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dprepro import accounting
from dprepro.files import save_figure
from dprepro.records.result import Result

ACCOUNTANT_COLUMNS = ("rdp_legacy", "rdp", "pld", "statement_poisson", "statement_once_per_epoch")
# Shorter runs are drawn over longer ones with their own marker: specs that share seeds share
# their first epochs exactly (deterministic training), so their curves coincide there.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
ACCOUNTANT_STYLE = {"statement_poisson": {"linestyle": "--", "linewidth": 2.5, "zorder": 1}}


def per_epoch(result: Result, key: str) -> np.ndarray:
    """(seeds, epochs) array of one history quantity."""
    return np.array([s.history[key] for s in result.seeds])


def label(r: Result) -> str:
    return f"{r.name} v{r.version} ({r.engine}, n={len(r.seeds)})"


def figures(results: list[Result], folder: Path) -> list[str]:
    """Write the three figures; return their file names."""
    import matplotlib
    matplotlib.use("Agg")

    folder.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda r: -r.spec.training.epochs)  # long runs underneath
    written = [save(accuracy_figure(results), folder / "accuracy_per_epoch.png")]
    private = [r for r in results if r.epsilon and r.engine == r.spec.engine.name]
    if private:
        curves = [accounting.epsilon_curve(r.spec) for r in private]
        written.append(save(epsilon_figure(private, curves), folder / "epsilon_per_epoch.png"))
        written.append(save(tradeoff_figure(results, private, curves), folder / "accuracy_vs_epsilon.png"))
    return written


def accuracy_figure(results: list[Result]):
    """Test accuracy per epoch, mean ± std over seeds, one line per result."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(results):
        acc = 100 * per_epoch(r, "test_accuracy")
        epochs = r.seeds[0].history["epoch"]
        mean, std = acc.mean(0), acc.std(0, ddof=1) if len(acc) > 1 else np.zeros(acc.shape[1])
        line, = ax.plot(epochs, mean, marker=MARKERS[i % len(MARKERS)], markersize=4 + 2 * (i == 0),
                        label=label(r))
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy per epoch (mean ± std over seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def epsilon_figure(private: list[Result], curves: list[dict]):
    """ε after each epoch under each accountant, one panel per private result."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(private), figsize=(4 * len(private), 4), squeeze=False, sharey=True)
    for ax, r, curve in zip(axes[0], private, curves):
        for name in ACCOUNTANT_COLUMNS:
            ax.plot(range(1, len(curve[name]) + 1), curve[name], marker=".",
                    label=name + (" (= rdp)" if name == "statement_poisson" else ""),
                    **ACCOUNTANT_STYLE.get(name, {}))
        ax.set(xlabel="epoch", title=f"{r.name} v{r.version}", yscale="log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, len(curve["rdp"]) + 0.5)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(f"ε at δ = {private[0].epsilon.delta:g} (log scale)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("ε after each epoch, by accountant")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def tradeoff_figure(results: list[Result], private: list[Result], curves: list[dict]):
    """Test accuracy against ε (rdp) after each epoch; the non-private results as lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (r, curve) in enumerate(zip(private, curves)):
        acc = 100 * per_epoch(r, "test_accuracy")
        holds = r.epsilon.accountants["rdp"].get("holds_for_this_run", True)
        ax.errorbar(curve["rdp"], acc.mean(0), yerr=acc.std(0, ddof=1) if len(acc) > 1 else None,
                    marker=MARKERS[i % len(MARKERS)], markersize=4 + 2 * (i == 0), capsize=3,
                    label=label(r) + ("" if holds else " †"), linestyle="-" if holds else ":")
    for r in results:
        if not r.epsilon:
            ax.axhline(100 * r.test_accuracy["mean"], linestyle="--", color="grey",
                       label=f"{label(r)}: no privacy (ε = ∞)")
    ax.set(xlabel="ε (rdp accountant, tf-privacy 0.9.0) after each epoch; † dotted: assumes Poisson "
                  "sampling, run shuffled", ylabel="test accuracy (%)",
           title="Privacy–utility: test accuracy against ε (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> str:
    return save_figure(fig, path).name

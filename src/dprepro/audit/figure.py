"""The membership-inference ROC curves of an audit in log-log scale, with the region an
(eps, delta)-DP training allows (TPR <= e^eps FPR + delta) for the accountant's epsilon and for the
audited lower bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dprepro.audit.membership import dp_tpr_ceiling
from dprepro.files import save_figure


def roc_figure(audit: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.5))
    for entries, style, what in ((audit["seeds"], "-", ""), (audit["no_noise"] or [], "--", ", no noise/clipping")):
        for e in entries:
            fpr, tpr = np.array(e["membership"]["roc"]["fpr"]), np.array(e["membership"]["roc"]["tpr"])
            keep = (fpr > 0) & (tpr > 0)
            ax.plot(fpr[keep], tpr[keep], style, label=f"seed {e['seed']}{what}: AUC {e['membership']['auc']:.3f}")
    low = 0.5 / audit["seeds"][0]["membership"]["nonmembers"]   # below the smallest FPR measured
    grid = np.geomspace(low, 1, 400)
    s = audit["summary"]
    delta = audit["seeds"][0]["canaries"]["delta"]
    if s["accountant_epsilon"] is not None:
        ax.plot(grid, dp_tpr_ceiling(grid, s["accountant_epsilon"], delta), "k:",
                label=f"limit for accountant ε = {s['accountant_epsilon']:.3f} ({s['accountant']})")
    if s["epsilon_lower_bound"] > 0:
        ax.plot(grid, dp_tpr_ceiling(grid, s["epsilon_lower_bound"], delta), color="grey", linestyle="-.",
                label=f"limit for audited lower bound ε = {s['epsilon_lower_bound']:.3f}")
    ax.plot(grid, grid, color="lightgrey", linewidth=1, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(low, 1), ylim=(low, 1.05), xlabel="false positive rate",
           ylabel="true positive rate",
           title=f"{audit['name']} v{audit['version']}: membership inference (loss), δ = {delta:g}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)

"""The literature's DP-MNIST numbers beside dprepro's reproductions of them.

`PUBLISHED` holds the points the papers report (ε at δ = 1e-5, test accuracy), each with the
convention its ε was computed under; the frontier figure overlays them. `table` pairs every pinned
result whose spec has a published `expected.test_accuracy` with that number: the published ε and
accuracy, the same ε as dprepro computes it for the run (and whether it holds), the ε of record, and
the accuracy over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from dprepro.records.result import Result, as_float


@dataclass(frozen=True)
class Published:
    paper: str
    setup: str
    epsilon: float
    accuracy: float
    convention: str          # how the paper's ε was computed, as far as the paper or its code says
    epsilon_bound: str = "="  # "<" when the paper gives only an upper bound


SHUFFLED_AS_POISSON = "shuffled batches, ε accounted as Poisson-sampled (does not hold as trained)"
# Abadi et al. form lots by shuffling "for efficiency" and analyse them as sampled with probability L/N.
ABADI_CONVENTION = "lots formed by shuffling, moments accountant for lots sampled with probability L/N (does not hold as trained)"
DPSUR_CONVENTION = "RDP of the accepted steps and their tests only (does not hold: every step and test ran on private data)"
PUBLISHED = (
    Published("Abadi et al. 2016", "DP-PCA 60 + MLP 1000 ReLU", 0.5, 0.90,
              ABADI_CONVENTION),
    Published("Abadi et al. 2016", "DP-PCA 60 + MLP 1000 ReLU", 2.0, 0.95,
              ABADI_CONVENTION),
    Published("Abadi et al. 2016", "DP-PCA 60 + MLP 1000 ReLU", 8.0, 0.97,
              ABADI_CONVENTION),
    Published("Papernot et al. 2021", "CNN, tanh", 3.0, 0.981, "RDP, published as ε < 3 (drawn at 3)", "<"),
    Published("Tramèr & Boneh 2021", "end-to-end CNN, tanh", 3.0, 0.981, SHUFFLED_AS_POISSON),
    Published("Tramèr & Boneh 2021", "ScatterNet + linear", 3.0, 0.987, SHUFFLED_AS_POISSON),
    Published("Tramèr & Boneh 2021", "ScatterNet + CNN", 3.0, 0.987, SHUFFLED_AS_POISSON),
    *(Published("Fu et al. 2024 (DPSUR)", "ScatterNet + CNN, selective update", eps, acc, DPSUR_CONVENTION)
      for eps, acc in ((1.0, 0.9793), (2.0, 0.9870), (3.0, 0.9888), (4.0, 0.9895))),
)


def reproductions(results: list[Result]) -> list[Result]:
    """The pinned results whose spec carries a published test accuracy, by name; DPSUR's have their own
    table (selective_report.py: their published accuracy is that of the model where the paper's run stops)."""
    return [r for r in results if "test_accuracy" in r.spec.expected and r.epsilon and r.spec.selective is None]


def published_epsilon_cell(result: Result) -> tuple[str, str]:
    """(published ε with its accountant, dprepro's value of that accountant marked † if it does not hold)."""
    expected = result.spec.expected
    quantity = next((q for q in expected if q.startswith("epsilon_")), None)
    if quantity is None:
        return "–", "–"
    value = result.epsilon.accountants.get(quantity[len("epsilon_"):])
    ours = "–" if value is None else (f"{as_float(value['epsilon']):.3f}"
                                      + ("" if value.get("holds_for_this_run", True) else "†"))
    return f"{expected[quantity].value:g} ({quantity[len('epsilon_'):]})", ours


def table(results: list[Result]) -> list[str]:
    """Markdown lines: one row per reproduction (empty when there is none)."""
    rows = reproductions(results)
    if not rows:
        return []
    lines = ["## Reproductions of published results", "",
             "Each spec's `expected` carries the paper's numbers and source (docs/reproduction.md). A paper's",
             "convention (shuffled batches, ε accounted as Poisson-sampled) is reproduced by the spec without",
             "`-poisson`: its published ε is computed as the paper did and marked † (it does not hold for shuffled",
             "training); the `-poisson` spec trains as that ε assumes, so its ε holds. ε of record: the smallest",
             "value that holds for the run.", "",
             "| spec | sampling | paper's ε (accountant) | accuracy published | same ε, dprepro | ε of record (holds) | "
             "test accuracy, mean ± std (n) | Δ to published |",
             "|" + " --- |" * 8]
    for r in rows:
        block, acc = r.epsilon, r.test_accuracy
        published_accuracy = r.spec.expected["test_accuracy"].value
        theirs, ours = published_epsilon_cell(r)
        record_cell = f"{block.value_of_record:.3f} ({block.of_record})" if block.of_record else "none holds"
        lines.append(f"| {r.name} v{r.version} | {r.spec.sampling} | {theirs} | "
                     f"{100 * published_accuracy:.1f} % | {ours} | {record_cell} | "
                     f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % ({acc['n']}) | "
                     f"{100 * (acc['mean'] - published_accuracy):+.2f} |")
    return [*lines, "", "† does not hold for that run's sampling.", ""]

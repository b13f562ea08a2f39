"""The tuned frontier (`dprepro frontier`, sweep/frontier_choice.py): one choice per target epsilon of
record over every recorded search, on validation only, remade from the committed records."""

import dataclasses
import json
import shutil

import pytest
import yaml

from conftest import EXPERIMENTS, ROOT, run_cli_in_process
from dprepro.errors import InputError
from dprepro.spec import load_spec
from dprepro.sweep import frontier_choice

DESIGN = EXPERIMENTS / "sweeps" / "tuned-frontier.yaml"
RESULTS = ROOT / "results"


def choice_path(version: int):
    return RESULTS / "sweeps" / "tuned-frontier" / f"v{version}" / "choice.json"


@pytest.fixture(scope="module")
def remade():
    design = frontier_choice.load_design(DESIGN, RESULTS)
    return design, frontier_choice.choose(design, RESULTS, EXPERIMENTS)


def scores_from_the_records(design):
    """{cell: (epsilon of record, validation, seeds)} read straight from the searches' record files."""
    out = {}
    for sweep in design.searches:
        folder = RESULTS / "sweeps" / sweep.name / f"v{sweep.version}"
        cells = {c["cell"]: c for c in json.loads((folder / "frontier.json").read_text())["cells"] if c["private"]}
        for choice in json.loads((folder / "selection.json").read_text())["choices"]:
            for c in choice["candidates"]:
                out[c["cell"]] = (cells[c["cell"]]["epsilon_of_record"], c["validation_accuracy"],
                                  cells[c["cell"]]["test_accuracy"]["n"])
    return out


def test_each_point_is_the_best_validation_score_within_its_target_and_never_falls(remade):
    """Checked against the record files read here, not through the module: every candidate within the
    target, the chosen one the best on validation, the candidate sets nested so the chosen validation
    score never falls as the target rises; the test scores play no part."""
    design, record = remade
    scores = scores_from_the_records(design)
    assert record["trials"] == len(scores)
    last = 0.0
    for point in record["points"]:
        within = {cell: v for cell, (eps, v, _) in scores.items() if eps <= point["target"]}
        assert point["candidates"] == len(within)
        assert point["validation_accuracy"] == max(within.values()) == within[point["chosen"]]
        assert point["epsilon_of_record"] <= point["target"]
        assert point["validation_accuracy"] >= last
        last = point["validation_accuracy"]
        seeds = sum(scores[c][2] for c in within)
        assert point["epsilon_with_search"]["runs_composed"] == seeds + 1    # each seed a release, then the pin


def test_the_committed_choice_is_what_the_records_give_now(remade):
    """results/sweeps/tuned-frontier/v<the design's version>/choice.json is remade from the committed
    records; the epsilons are RDP sums of the same events (1e-9: float rounding only)."""
    design, record = remade
    committed = json.loads(choice_path(design.version).read_text())
    assert [p["chosen"] for p in committed["points"]] == [p["chosen"] for p in record["points"]]
    assert [p["pin_name"] for p in committed["points"]] == [p["pin_name"] for p in record["points"]]
    for a, b in zip(committed["points"], record["points"]):
        assert a["epsilon_with_search"]["epsilon"] == pytest.approx(b["epsilon_with_search"]["epsilon"], rel=1e-9)


def test_every_point_is_pinned_by_a_shipped_spec_that_trains_the_chosen_trial(remade):
    """The pin of each point is a shipped spec whose content, but for name, version, seeds and prose,
    is the chosen trial's; a spec differing in one field is not taken for it."""
    design, record = remade
    cells = {c.name: c.spec for s in design.searches for c in s.cells}
    for point in record["points"]:
        assert point["pinned_as"] == point["pin_name"], point
        pin = load_spec(EXPERIMENTS / f"{point['pin_name']}.yaml")
        assert frontier_choice.identity(pin) == frontier_choice.identity(cells[point["chosen"]])
        assert list(pin.seeds) == [0, 1, 2]
        other = pin.replace({"training.learning_rate": pin.training.learning_rate * 2})
        assert frontier_choice.identity(other) != frontier_choice.identity(pin)


def copied_records(tmp_path):
    """The searches' records, without the frontier's own choice."""
    shutil.copytree(RESULTS / "sweeps", tmp_path / "sweeps", ignore=shutil.ignore_patterns("tuned-frontier"))
    return tmp_path


def test_a_record_that_is_not_its_sweep_s_cell_is_refused(tmp_path):
    """A recorded noise that does not rebuild the recorded content (hash) is refused: the frontier
    must score the trials the search ran, not what the sweep file says today."""
    results = copied_records(tmp_path)
    path = results / "sweeps" / "tuned-scatternet-linear" / "v1" / "frontier.json"
    record = json.loads(path.read_text())
    record["cells"][0]["noise_multiplier"] += 0.001
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"searches\[0\]: .*grid: cell tuned-scatternet-linear-eps0.5-.* is not "
                                         r"the one the search recorded"):
        frontier_choice.load_design(DESIGN, results)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(colour="red"), r"colour: unknown field"),
    (lambda d: d.update(targets=[2, 1]), r"targets: must be distinct and ascending"),
    (lambda d: d.update(targets=[0, 1]), r"targets\[0\]: must be > 0"),
    (lambda d: d.update(searches=["no-such.yaml"]), r"searches\[0\]: .*no-such.yaml"),
    (lambda d: d.update(searches=["tuned-scatternet-linear.yaml", "frontier.yaml"]),
     r"searches\[1\]: .*frontier.json: missing|searches\[1\]: frontier.yaml does not hold out"),
])
def test_a_bad_design_gets_one_line_naming_the_field_and_nothing_written(tmp_path, change, message):
    raw = yaml.safe_load(DESIGN.read_text())
    change(raw)
    bad = EXPERIMENTS / "sweeps" / f"bad-frontier-{tmp_path.name}.yaml"   # beside the searches it names
    bad.write_text(yaml.safe_dump(raw))
    try:
        results = copied_records(tmp_path)
        done = run_cli_in_process("frontier", bad, "--results", results)
    finally:
        bad.unlink()
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and str(bad) in done.stderr
    assert __import__("re").search(message, done.stderr), done.stderr
    assert not (results / "sweeps" / "tuned-frontier").exists()


def test_a_search_without_a_record_is_refused_before_any_calibration(tmp_path):
    """No record, no frontier: one line naming the missing file (exit 2), in seconds, not a calibration."""
    done = run_cli_in_process("frontier", DESIGN, "--results", tmp_path)
    assert done.returncode == 2
    assert "frontier.json: missing: the search" in done.stderr and done.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_the_report_puts_each_point_beside_its_own_pin_and_its_goal():
    """results/README.md's frontier section: each point's row carries its pinned run's test mean (read here
    from the pin's result.json) and the goal at that target; a point whose pin is missing says so."""
    from dprepro.records import tuned_frontier
    from dprepro.records.read import load_result

    record = json.loads(choice_path(yaml.safe_load(DESIGN.read_text())["version"]).read_text())
    pins = {name: load_result(RESULTS / name / "v1" / "result.json")
            for name in {p["pin_name"] for p in record["points"]} | set(tuned_frontier.EARLIER_PINS.values())}
    lines = tuned_frontier.table(tuned_frontier.points(RESULTS, list(pins.values())))
    for point in record["points"]:
        row = next(line for line in lines if line.startswith(f"| {point['target']:g} | {point['pin_name']} |"))
        assert f"{100 * pins[point['pin_name']].test_accuracy['mean']:.2f} ± " in row
        assert ("Fu et al." in row) == (point["target"] in (1, 2, 3, 4))
        assert ("above tuned-scatternet-linear-eps" in row) == (point["target"] in (0.5, 8))
    unpinned = tuned_frontier.table(tuned_frontier.points(RESULTS, []))
    assert sum("not pinned" in line for line in unpinned) == len(record["points"])


def test_a_new_version_of_a_design_names_its_pins_apart_and_the_report_shows_only_it(tmp_path):
    """A design's v2 may choose another trial at a target its v1 pinned: the new pin is named
    `<design>-v2-eps<t>` so that v1's pin keeps its name and result, and the report shows the latest
    choice of each design only (v1's choice.json stays as the record v1's pins cite)."""
    from dprepro.records import tuned_frontier

    design = frontier_choice.FrontierDesign("d.yaml", "tuned-frontier", 1, "", [], [3.0])
    assert frontier_choice.pin_name(design, 3.0) == "tuned-frontier-eps3"
    assert frontier_choice.pin_name(dataclasses.replace(design, version=2), 0.5) == "tuned-frontier-v2-eps0.5"
    old = json.loads(choice_path(1).read_text())
    for version, chosen in ((1, "old"), (2, "new"), (10, "newest")):
        folder = tmp_path / "sweeps" / "tuned-frontier" / f"v{version}"
        folder.mkdir(parents=True)
        record = {**old, "version": version, "points": [{**p, "chosen": chosen} for p in old["points"]]}
        (folder / "choice.json").write_text(json.dumps(record))
    rows = tuned_frontier.points(tmp_path, [])
    assert len(rows) == len(old["points"]) and {r["chosen"] for r in rows} == {"newest"}

"""`dprepro frontier`: the tuned frontier, chosen on validation over every recorded search."""

from __future__ import annotations

from pathlib import Path

from dprepro.errors import InputError
from dprepro.files import write_text


def add_frontier(sub) -> None:
    c = sub.add_parser("frontier", help="per target epsilon, the best trial on validation over every search a "
                                        "frontier design names (from their committed records); write choice.json")
    c.add_argument("design", metavar="DESIGN", help="a frontier design, e.g. experiments/sweeps/tuned-frontier.yaml")
    c.add_argument("--results", type=Path, default=Path("results"),
                   help="where the searches' records are and choice.json goes (default: results)")
    c.add_argument("--experiments", type=Path, default=Path("experiments"),
                   help="the shipped specs: a chosen trial one of them trains is pinned by it (default: experiments)")
    c.add_argument("--write-specs", action="store_true",
                   help="also write each chosen trial no shipped spec pins as EXPERIMENTS/<design>-eps<target>.yaml")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the written specs' seeds (default 0 1 2)")
    c.set_defaults(command=cmd_frontier, command_name="frontier", precheck=precheck_frontier)


def precheck_frontier(args) -> None:
    from dprepro.sweep import frontier_choice

    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise InputError(f"--seeds: distinct integers >= 0, got {' '.join(map(str, args.seeds))}")
    args.design_loaded = frontier_choice.load_design(args.design, args.results)


def cmd_frontier(args) -> None:
    from dprepro.sweep import frontier_choice

    design = args.design_loaded
    record = frontier_choice.choose(design, args.results, args.experiments)
    specs = {}
    if args.write_specs:        # made before anything is written
        chosen = {c.name: c.spec for s in design.searches for c in s.cells}
        for point in record["points"]:
            if point["pinned_as"] is None and point["pin_name"] not in {Path(p).stem for p in specs}:
                also = tuple(p["target"] for p in record["points"]
                             if p["pin_name"] == point["pin_name"] and p["target"] > point["target"])
                specs[args.experiments / f"{point['pin_name']}.yaml"] = frontier_choice.pin_spec(
                    design, point, chosen[point["chosen"]], args.seeds, also)
    written = [frontier_choice.write_choice(args.results, record)]
    for path, text in specs.items():
        write_text(path, text)
        written.append(path)
    print(frontier_choice.table(record))
    print("eps of record: the chosen trial alone (excludes the search); eps w/ search: every candidate and one run "
          "of the chosen schedule composed")
    print("written: " + ", ".join(map(str, written)))

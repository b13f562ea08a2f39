"""What the package promises about itself: every module it imports is declared, the Makefile's test
targets collect tests, every writer goes through the one atomic writer."""

import ast
import itertools
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions

import pytest

from conftest import ROOT

SRC = ROOT / "src" / "dprepro"


def imported_top_level_modules() -> set:
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"dprepro"}


def test_every_imported_package_is_declared():
    """Review of 0.5.0, defect 5: matplotlib (and scipy) were imported but not declared in
    pyproject.toml; an install from the package metadata alone would fail at `dprepro report`."""
    declared = {re.split(r"[=<>~!\[ ;]", d)[0].lower().replace("_", "-")
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    dists = packages_distributions()
    missing = {}
    for module in imported_top_level_modules():
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not owners & declared:
            missing[module] = sorted(owners)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def recipe(target: str) -> str:
    """The recipe lines of one Makefile target."""
    lines = (ROOT / "Makefile").read_text().split(f"\n{target}:", 1)[1].splitlines()[1:]
    return "\n".join(line for line in itertools.takewhile(lambda ln: ln.startswith("\t"), lines))


@pytest.mark.full
def test_the_two_tiers_split_the_suite_and_each_collects_tests():
    """`make test` runs the tests not marked `full`, `make test-rest` those marked `full`, and CI runs
    both, in that order: every test once. Each tier selects tests (defect 4 of 0.5.0: `make test-slow`
    selected none, so pytest exited 5)."""
    assert '$(PYTEST) -m "not full"' in recipe("test") and "$(PYTEST) -m full" in recipe("test-rest")
    assert "$(MAKE) test\n\t$(MAKE) test-rest" in recipe("test-full")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci and "\nmake test-rest\n" in ci, "CI runs both tiers"
    assert ci.index("\nmake test\n") < ci.index("\nmake test-rest\n"), "the quick tier first"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "full", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    selected, total, deselected = map(int, re.search(r"^(\d+)/(\d+) tests collected \((\d+) deselected\)",
                                                     proc.stdout, re.M).groups())
    assert selected > 0 and deselected > 0 and selected + deselected == total, proc.stdout[-500:]


def test_every_writer_uses_the_atomic_writer():
    """Outputs are written by files.atomic only (temporary file, fsync, rename, folder fsync): no
    other module renames, saves a figure or writes a file's text directly."""
    direct = re.compile(r"os\.replace\(|\.savefig\(|(?<!files)\.write_(text|bytes)\(|open\([^)]*[\"'][wa]b?[\"']")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in SRC.rglob("*.py") if p.name != "files.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if direct.search(line) and "os.devnull" not in line and "# not an output" not in line]
    assert offenders == []


def test_readme_layout_names_every_module():
    """The README's Layout section matches the tree: every module and subpackage of src/dprepro is
    named there, and every top-level folder it lists exists."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    missing = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
               if p.name != "__init__.py" and p.name not in layout]
    missing += [f"{p.name}/" for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__" and f"{p.name}/" not in layout]
    assert missing == []
    listed = re.findall(r"^([a-z.][\w./-]*/)\s", layout.split("```")[1], re.M)
    assert listed and all((ROOT / folder).is_dir() for folder in listed), listed


# The stages, top of the import graph first (README, Layout): a module imports only modules of its
# own stage or of stages above it, lazily inside a function too.
STAGES = [("errors", "files"), ("spec",), ("data", "features", "sampling", "mechanisms", "accounting", "lower_bounds", "ledger", "calibration", "lock", "tf_startup"),
          ("records", "epsilon_table"), ("training",), ("audit", "sweep"), ("bench",), ("cli",)]
RANK = {name: i for i, names in enumerate(STAGES) for name in names}


def test_no_module_imports_a_lower_stage():
    upward = []
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) == 1:
            continue
        here = RANK[parts[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "dprepro":
                modules = [f"dprepro.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            else:
                continue
            for target in [m.split(".")[1] for m in modules if m.startswith("dprepro.")]:
                if RANK[target] > here:
                    upward.append(f"{'/'.join(parts)} imports {target}")
    assert upward == []


def test_no_module_is_over_350_lines():
    """The house rule (one module per stage, each readable whole): schema.py at 351 lines failed it."""
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 350}
    assert long == {}

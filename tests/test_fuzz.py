"""Property-based tests of bad input (hypothesis, derandomized so that CI runs the same cases every
time): random mutations of the shipped specs and of a real result file, and odd paths. Every case
must end with exit 0, or exit 2 and one line that starts with the file and names the field; never a
traceback; nothing written."""

import contextlib
import copy
import importlib
import io
import json
import os
import pkgutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXPERIMENTS, ROOT
import dprepro
from dprepro import cli

# Hypothesis also draws values from the constants of the project's modules loaded when a test runs
# (its "local constants", read from sys.modules). Loading every dprepro module here, at collection,
# makes the cases the same whatever tests ran before on this pytest process (under pytest-xdist that
# varies from run to run); measured: without this, running after other test modules lost the case
# that reaches spec/schema.py's unknown-optimizer check.
for _module in pkgutil.walk_packages(dprepro.__path__, "dprepro."):
    importlib.import_module(_module.name)

SHIPPED = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
RAW = {name: yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text()) for name in SHIPPED}
PINNED = ROOT / "results" / "tutorial-3ep" / "v1" / "result.json"
EXAMPLES = 300   # per property test
pytestmark = pytest.mark.xdist_group("fuzz")   # one pytest process runs them all: test_zz counts their cases


def fuzz_settings(examples=EXAMPLES):
    return settings(derandomize=True, deadline=None, database=None, max_examples=examples,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COUNTS = {}     # cases per kind
OUTCOMES = {}   # (kind, exit code) -> cases


def field_paths(node, prefix=()):
    """Every path to a value in a nested dict/list."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from field_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from field_paths(v, (*prefix, i))


PATHS = sorted({p for raw in RAW.values() for p in field_paths(raw) if p}, key=str)
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-10 ** 40, max_value=10 ** 40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.just(""), st.just("1e-5"),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from([0, -1, 1, 250, 10 ** 9, 2 ** 31, 1e-300, 1e300, "poisson", "shuffle", "fast", "none"]))
MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PATHS), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("add"), st.sampled_from([(), ("data",), ("training",), ("privacy",), ("engine",)]),
              st.text(min_size=1, max_size=8)))


def apply(raw, mutation):
    kind, path, value = mutation
    node = raw
    for key in path[:-1] if kind != "add" else path:
        if not isinstance(node, (dict, list)):
            return raw
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return raw
    if kind == "add":
        if isinstance(node, dict):
            node[value] = 1
        return raw
    if not path or not isinstance(node, (dict, list)):
        return raw
    key = path[-1]
    try:
        if kind == "delete":
            del node[key]
        else:
            node[key] = value
    except (KeyError, IndexError, TypeError):
        pass
    return raw


def run(*argv):
    """dprepro in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def check(kind, path, code, out, err, wrote=()):
    """exit 0, or exit 2 with one line naming the file (then the field, or what is wrong with the file)."""
    COUNTS[kind] = COUNTS.get(kind, 0) + 1
    OUTCOMES[(kind, code)] = OUTCOMES.get((kind, code), 0) + 1
    assert "Traceback" not in err + out
    assert code in (0, 2), (code, out, err)
    for folder in wrote:
        assert not Path(folder).exists(), f"{folder} was written"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"{path}: "), lines[0]
        rest = lines[0][len(f"{path}: "):]
        assert rest.startswith(("not valid YAML", "cannot read ", "not a result file")) or ": " in rest, rest


@fuzz_settings()
@given(base=st.sampled_from(SHIPPED), mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_specs_are_valid_or_one_line(base, mutations):
    raw = copy.deepcopy(RAW[base])
    for m in mutations:
        raw = apply(raw, m)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
        code, out, err = run("validate", path)
        check("spec mutation", path, code, out, err)
        if code == 0:
            assert out.startswith(f"{path}: ok")


SNIPPETS = [b"&a ", b"*a", b"!!python/object/apply:os.system ['true'] ", b"!custom ", b"!!binary ",
            b"\nname: again\n", b"\nseeds: [0]\n", b"\xff\xfe", b"\x00", b"\xef\xbb\xbf", b"{", b"[", b"\t",
            b": ", b"- ", b"\n  ", b"? [a]\n: 1\n", b"<<: *a\n", b"%YAML 1.1\n---\n", b"---\n...\n---\n"]


@fuzz_settings()
@given(base=st.sampled_from(SHIPPED),
       edits=st.lists(st.tuples(st.integers(min_value=0), st.one_of(st.sampled_from(SNIPPETS), st.binary(max_size=6)),
                                st.booleans()), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_corrupted_spec_bytes_are_valid_or_one_line(base, edits, cut):
    data = (EXPERIMENTS / f"{base}.yaml").read_bytes()
    for at, snippet, replace in edits:
        at %= len(data) + 1
        data = data[:at] + snippet + data[at + len(snippet) * replace:]
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_bytes(data)
        code, out, err = run("validate", path)
        check("spec bytes", path, code, out, err)


@pytest.mark.parametrize("case", ["empty", "directory", "fifo", "missing", "huge", "duplicate key",
                                  "anchors", "python tag", "not utf-8", "deep nesting", "alias bomb"])
def test_odd_spec_files(tmp_path, case):
    path = tmp_path / "spec.yaml"
    text = (EXPERIMENTS / "smoke.yaml").read_text()
    if case == "empty":
        path.write_text("")
    elif case == "directory":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)                      # reading would block: the check must not read it
    elif case == "huge":
        path.write_text(text + "#" * (2 << 20))
    elif case == "duplicate key":
        path.write_text(text + "name: other\n")
    elif case == "anchors":
        path.write_text(text.replace("learning_rate: 0.25", "learning_rate: &lr 0.25")
                        .replace("l2_norm_clip: 1.5", "l2_norm_clip: *lr"))
    elif case == "python tag":
        path.write_text(text.replace("name: smoke", "name: !!python/object/apply:os.system ['touch pwned']"))
    elif case == "not utf-8":
        path.write_bytes(text.encode().replace(b"Smoke test", b"Smoke t\xe9st"))
    elif case == "deep nesting":
        path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    elif case == "alias bomb":
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
                  for i in range(1, 10)]
        path.write_text(text + "\n".join(lines).replace("a", "zz") + "\n")
    code, out, err = run("validate", path)
    check(f"odd file: {case}", path, code, out, err)
    expected = {"anchors": 0}.get(case, 2)
    assert code == expected, err
    if case == "duplicate key":
        assert "duplicate key 'name'" in err
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_run_with_a_bad_spec_writes_nothing(tmp_path):
    raw = copy.deepcopy(RAW["smoke"])
    raw["training"]["epochs"] = "three"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, out, err = run("run", path, "--out", tmp_path / "out", "--logdir", tmp_path / "logs")
    check("run", path, code, out, err, wrote=[tmp_path / "out", tmp_path / "logs"])
    assert code == 2 and "training.epochs: must be an integer" in err


RESULT = json.loads(PINNED.read_text())
RESULT_PATHS = sorted({p for p in field_paths(RESULT) if p and not (len(p) > 3 and p[0] == "seeds" and p[2] == "history"
                                                                    and isinstance(p[-1], int) and p[-1] > 1)}, key=str)


@fuzz_settings()
@given(mutations=st.lists(st.one_of(st.tuples(st.just("set"), st.sampled_from(RESULT_PATHS), VALUES),
                                    st.tuples(st.just("delete"), st.sampled_from(RESULT_PATHS), st.none())),
                          min_size=1, max_size=3),
       cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_edited_or_truncated_results_compare_or_fail_in_one_line(mutations, cut):
    result = copy.deepcopy(RESULT)
    for m in mutations:
        result = apply(result, m)
    text = json.dumps(result, allow_nan=True)
    if cut is not None:
        text = text[:cut % (len(text) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        path.write_text(text)
        code, out, err = run("compare", path, PINNED)
        if code == 1:                        # read fine, compared, and (rightly) failed a row
            assert "FAIL" in out and "Traceback" not in err
            COUNTS["result (compare)"] = COUNTS.get("result (compare)", 0) + 1
            OUTCOMES[("result (compare)", 1)] = OUTCOMES.get(("result (compare)", 1), 0) + 1
        else:
            check("result (compare)", path, code, out, err)


@pytest.mark.parametrize("command", ["report", "evaluate"])
@pytest.mark.parametrize("damage", ["truncated", "no seeds", "accuracy as text", "epoch history short",
                                    "spec edited", "epsilon not a number", "not an object"])
def test_report_and_evaluate_read_damaged_results_in_one_line(tmp_path, command, damage):
    result = copy.deepcopy(RESULT)
    text = None
    if damage == "truncated":
        text = PINNED.read_text()[:5000]
    elif damage == "no seeds":
        result["seeds"] = []
    elif damage == "accuracy as text":
        result["test_accuracy"]["mean"] = "0.9"
    elif damage == "epoch history short":
        result["seeds"][0]["history"]["test_accuracy"].pop()
    elif damage == "spec edited":
        result["spec"]["training"]["batch_size"] = -5
    elif damage == "epsilon not a number":
        result["epsilon"]["accountants"]["rdp"]["epsilon"] = "small"
    elif damage == "not an object":
        result = [result]
    path = tmp_path / "results" / "x" / "v1" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(text if text is not None else json.dumps(result))
    before = sorted(p.name for p in path.parent.iterdir())
    if command == "report":
        code, out, err = run("report", "--results", tmp_path / "results")
    else:
        code, out, err = run("evaluate", path)
    check(f"result ({command})", path if command == "evaluate" or damage != "x" else path, code, out, err)
    assert code == 2
    assert sorted(p.name for p in path.parent.iterdir()) == before
    assert not (tmp_path / "results" / "README.md").exists()


def test_zz_fuzzed_cases_ran():
    """How many cases the tests above ran (pytest -s prints it); when they all ran, at least the
    3 x EXAMPLES property cases."""
    print("fuzzed cases:", COUNTS, "total", sum(COUNTS.values()))
    print("exit codes:", {f"{k} -> {c}": n for (k, c), n in sorted(OUTCOMES.items())})
    if {"spec mutation", "spec bytes", "result (compare)"} <= set(COUNTS):
        assert sum(COUNTS[k] for k in ("spec mutation", "spec bytes", "result (compare)")) >= 3 * EXAMPLES

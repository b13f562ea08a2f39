"""Errors that say what failed (issue 34, findings 3 and 4): a read is not reported as a write, the
spec's own changes refuse in one line, and outputs are UTF-8 whatever the locale."""

import shutil

import pytest

from conftest import EXPERIMENTS, ROOT, run_cli, run_cli_in_process
from dprepro.errors import InputError
from dprepro.spec import load_spec


def test_an_unreadable_mnist_file_is_a_read_error(tmp_path):
    """A data folder whose training-images file cannot be read (here a folder in its place): one line
    naming the file and the read, exit 2, nothing written. On main before issue 34 the line said
    "cannot write: Is a directory; finished seeds are kept"."""
    data = tmp_path / "mnist"
    shutil.copytree(ROOT / "data" / "mnist", data)
    (data / "train-images-idx3-ubyte.gz").unlink()
    (data / "train-images-idx3-ubyte.gz").mkdir()
    out = tmp_path / "out"
    proc = run_cli_in_process("run", EXPERIMENTS / "smoke.yaml", "--data-dir", data, "--out", out, "--logdir", out)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line == f"{data / 'train-images-idx3-ubyte.gz'}: cannot read the MNIST file: Is a directory", line
    assert "cannot write" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "smoke" / "v1" / "result.json").exists()


def test_a_change_to_a_spec_names_the_field_in_one_line():
    """Spec.replace raised KeyError / ValueError (a traceback through any command that reached it)."""
    spec = load_spec(EXPERIMENTS / "smoke.yaml")
    with pytest.raises(InputError, match=r"smoke\.yaml: privacy\.noise: not a field of a spec$"):
        spec.replace({"privacy.noise": 2.0})
    with pytest.raises(InputError, match=r"smoke\.yaml: colour: not a field of a spec$"):
        spec.replace({"colour": "red"})
    twin = spec.audit_twin(spec.train_examples + 10)
    with pytest.raises(InputError, match="an audit twin .* is not a spec to change"):
        twin.replace({"seeds": [1]})


def test_an_invalid_audit_twin_is_an_input_error():
    """audit_twin turned the schema's InputError into a ValueError; now it stays one line with exit 2."""
    spec = load_spec(EXPERIMENTS / "smoke.yaml")
    with pytest.raises(InputError, match="audit twin"):
        spec.audit_twin(0)


def test_the_report_is_utf8_under_an_ascii_locale(tmp_path):
    """`dprepro report` under the C locale with Python's UTF-8 mode and locale coercion off (the preferred
    encoding is then ASCII; no Latin-1 locale is installed here, and ASCII is the stricter case): the
    report's ε, ± and † are written as UTF-8. On main before issue 34 the write used the locale's
    encoding and the command failed with a UnicodeEncodeError."""
    results = tmp_path / "results"
    (results / "tutorial-3ep" / "v1").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "tutorial-3ep" / "v1" / "result.json", results / "tutorial-3ep" / "v1")
    proc = run_cli("report", "--results", results, env={"PYTHONUTF8": "0", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (results / "README.md").read_bytes().decode("utf-8")
    assert "ε of record" in text and "±" in text

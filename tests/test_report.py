"""results/README.md and the figures, generated from real result files."""

import shutil

from conftest import run_cli
from dprepro.spec import ENGINE_VERSIONS


def test_report_from_a_real_result(smoke_runs, tmp_path):
    results = tmp_path / "results"
    (results / "smoke" / "v1").mkdir(parents=True)
    shutil.copy(smoke_runs[0][0] / "smoke" / "v1" / "result.json", results / "smoke" / "v1" / "result.json")
    proc = run_cli("report", "--results", results)
    assert proc.returncode == 0, proc.stderr
    text = (results / "README.md").read_text()
    acc = smoke_runs[0][2]["test_accuracy"]["mean"]
    (row,) = [line for line in text.splitlines() if line.startswith("| smoke |")]
    assert f"| {100 * acc:.2f} ± 0.00 % (1) |" in row and f"| fast v{ENGINE_VERSIONS['fast']} | 1 |" in row
    once = smoke_runs[0][2]["epsilon"]["accountants"]["statement_once_per_epoch"]["epsilon"]
    assert f"| shuffle | {once:.4f} (statement_once_per_epoch) |" in row
    assert row.count("†") == 4               # rdp_legacy, rdp, pld, statement_poisson: assume Poisson
    assert "† does not hold for that run" in text
    for name in ("accuracy_per_epoch.png", "epsilon_per_epoch.png", "accuracy_vs_epsilon.png"):
        assert (results / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{name})" in text


def test_report_without_results_is_exit_2(tmp_path):
    proc = run_cli("report", "--results", tmp_path)
    assert proc.returncode == 2 and "no pinned result files" in proc.stderr

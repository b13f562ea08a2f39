"""The CLI's start-up: TensorFlow's harmless CUDA-plugin errors are dropped, real errors are kept."""

import os
import subprocess
import sys

from conftest import CLI, EXPERIMENTS, ROOT
from dprepro.tf_startup import startup_noise_filtered

HARMLESS = ("2026-11-23 11:29:08.041960: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] "
            "Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one "
            "has already been registered\n")


def test_filter_drops_the_harmless_lines_and_keeps_the_rest(capfd):
    with startup_noise_filtered():
        os.write(2, HARMLESS.encode())
        os.write(2, b"E tensorflow/core/something.cc:1] a real error\n")
        os.write(2, HARMLESS.replace("cuDNN", "cuBLAS").encode())
    err = capfd.readouterr().err
    assert err == "E tensorflow/core/something.cc:1] a real error\n"


def test_filter_replays_what_was_written_when_the_block_raises(capfd):
    try:
        with startup_noise_filtered():
            os.write(2, b"F fatal: kept\n")
            raise RuntimeError("import failed")
    except RuntimeError:
        pass
    assert capfd.readouterr().err == "F fatal: kept\n"


def env_without_log_level():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def test_no_cuda_factory_errors_on_the_console():
    """As a user runs it (no TF_CPP_MIN_LOG_LEVEL set). Guarded: plain TensorFlow does print them here."""
    plain = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True,
                           env={**env_without_log_level(), "TF_CPP_MIN_LOG_LEVEL": "2"})
    proc = subprocess.run([str(CLI), "epsilon", str(EXPERIMENTS / "smoke.yaml")], cwd=ROOT,
                          capture_output=True, text=True, env=env_without_log_level())
    assert proc.returncode == 0, proc.stderr
    assert "Unable to register" not in proc.stderr, proc.stderr
    if "Unable to register" not in plain.stderr:
        import pytest
        pytest.skip("this TensorFlow build prints no CUDA factory errors here: nothing to filter")
    assert "E external" not in proc.stderr


def test_the_cli_in_this_process_says_what_the_console_script_says(tmp_path):
    """Most tests call the CLI in the pytest process (conftest.run_cli_in_process) instead of starting
    the console script: both give the same exit status, standard output and standard error, for a
    result, for bad input and for a usage error; and the in-process call refuses another arithmetic
    path, which only a fresh process can take."""
    import pytest

    from conftest import run_cli, run_cli_in_process

    for args in (("epsilon", EXPERIMENTS / "smoke.yaml"),
                 ("run", tmp_path / "no-such-spec.yaml", "--out", tmp_path / "out"),
                 ("run", "--engine", "turbo", EXPERIMENTS / "smoke.yaml")):
        console, here = run_cli(*args, cwd=tmp_path), run_cli_in_process(*args, cwd=tmp_path)
        assert (here.returncode, here.stdout, here.stderr) == (console.returncode, console.stdout, console.stderr)
    with pytest.raises(ValueError, match="arithmetic path"):
        run_cli_in_process("epsilon", EXPERIMENTS / "smoke.yaml", env={"TF_ENABLE_ONEDNN_OPTS": "0"})


def test_the_in_process_capture_takes_python_and_cpp_writes_in_order():
    """What C++ code writes to file descriptors 1 and 2 (TensorFlow's log lines) is part of the
    in-process call's output, in order with Python's, as a process's would be."""
    from conftest import _captured_output

    with _captured_output() as got:
        print("python out")
        os.write(1, b"c++ out\n")
        os.write(2, b"c++ err\n")
        print("python err", file=sys.stderr)
    assert got == ["python out\nc++ out\n", "c++ err\npython err\n"]

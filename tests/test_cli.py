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

"""Where a run came from and on what it ran: the git state, the packages, the CPU and the
arithmetic path (what decides the last bits of the training arithmetic), the accelerators."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

PACKAGES = ("tensorflow", "tensorflow-privacy", "tensorflow-probability", "dp-accounting",
            "numpy", "keras", "tensorboard")


def git_state() -> dict:
    """Commit of the working tree, whether it had uncommitted changes and which (None outside git).

    Outputs do not count: untracked files, and results/ (a `make pin` rewrites the pinned files
    of the specs it has finished while it runs the next)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
    try:
        changed = git("status", "--porcelain", "--untracked-files=no", "--",
                      ":(top)", ":(top,exclude)results").splitlines()
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(changed),
                "changed": [line[3:] for line in changed[:20]]}
    except (OSError, subprocess.CalledProcessError):
        # No git checkout (e.g. in the Docker image): the commit the image was built from, if known.
        commit = os.environ.get("DPREPRO_GIT_COMMIT")
        return {"commit": commit if commit and commit != "unknown" else None, "dirty": None, "changed": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU features that select different kernels (and so different rounding) in oneDNN, Eigen and numpy.
ARITHMETIC_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                        "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
# Environment variables that change which kernels run or how work is split between threads.
ARITHMETIC_ENV = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
                  "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
# Arithmetic paths one machine can take, as simulated second machines (docs/reproduction.md, "What is bit-identical").
SIMULATED_PATHS = {"default": {}, "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
                   "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"}}


def path_environ(path: str, base=None) -> dict:
    """An environment for a fresh process on one of SIMULATED_PATHS: `base` (default os.environ)
    without any ARITHMETIC_ENV variable, plus the path's own."""
    base = os.environ if base is None else base
    return {**{k: v for k, v in base.items() if k not in ARITHMETIC_ENV}, **SIMULATED_PATHS[path]}


def cpu_flags() -> list[str]:
    """The ARITHMETIC_CPU_FLAGS this CPU has (empty where /proc/cpuinfo is unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ARITHMETIC_CPU_FLAGS if f in have]
    except OSError:
        pass
    return []


def arithmetic_path(devices: dict, onednn: bool | None) -> dict:
    """What decides the last bits of training arithmetic, and a short id of it: two runs with the
    same id, engine version, spec and seed give bit-identical numbers; other ids agree statistically.

    `onednn` is whether TensorFlow's oneDNN kernels are on (None if unknown)."""
    path = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "onednn": onednn,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "env": {k: os.environ[k] for k in ARITHMETIC_ENV if k in os.environ},
        "gpus": devices.get("gpus", []),
        "tensorflow": version("tensorflow"),
    }
    path["id"] = hashlib.sha256(json.dumps(path, sort_keys=True).encode()).hexdigest()[:12]
    return path


def environment(devices: dict, onednn: bool | None = None) -> dict:
    """Python, package versions, platform, CPU, the accelerators TensorFlow saw, the arithmetic path."""
    return {
        "python": platform.python_version(),
        "packages": {p: version(p) for p in PACKAGES},
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "arithmetic": arithmetic_path(devices, onednn),
    }


def devices() -> dict:
    """The accelerators TensorFlow sees and the CUDA/cuDNN versions it was built against."""
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return {"gpus": gpus, "built_with_cuda": bool(build.get("is_cuda_build")),
            "cuda_version": build.get("cuda_version"), "cudnn_version": build.get("cudnn_version")}


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels on the CPU (TF_ENABLE_ONEDNN_OPTS, default on x86)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def this_machine() -> dict:
    """environment() of this process, with the devices and oneDNN state TensorFlow reports."""
    return environment(devices(), onednn_enabled())

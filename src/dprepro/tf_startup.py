"""TensorFlow's start-up noise: the CLI loads TensorFlow once, inside `startup_noise_filtered`, so
that the harmless errors its CUDA build logs on every machine without CUDA drivers are dropped and
everything else it writes to stderr is shown as it was."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager

# Lines TensorFlow 2.15 logs as errors ("E ...") at import on every machine without CUDA drivers:
# its CUDA build registers the cuDNN/cuFFT/cuBLAS plugins twice. Harmless; dropped. Any other line
# written to stderr while TensorFlow loads is shown as it was.
HARMLESS_STARTUP = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register "
                              r"factory for plugin cu(DNN|FFT|BLAS) when one has already been registered")


@contextmanager
def startup_noise_filtered(pattern=HARMLESS_STARTUP):
    """Capture what C++ code writes to file descriptor 2 inside the block; afterwards write it back
    to stderr without the lines matching `pattern`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not pattern.search(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()

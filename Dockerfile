# dprepro image: `make docker-build`, then `docker run IMAGE` reproduces (make reproduce) and
# `docker run IMAGE test` runs the tests; any other argument is a make target (`run EXP=smoke`).
#
# Base: TensorFlow's own GPU image of the 2.15 series. It is Ubuntu 22.04 with Python 3.11 and the
# CUDA 12.2 / cuDNN 8.9 libraries that TensorFlow 2.15 was built against
# (tf.sysconfig.get_build_info(): cuda_version 12.2, cudnn_version 8), so the venv's pinned
# tensorflow==2.15.1 finds a matching CUDA/cuDNN at run time; 2.15.0 vs 2.15.1 differ only in
# TensorFlow itself, which the venv replaces. CI builds this same file on a local Debian 12 base
# (--build-arg BASE_IMAGE=...), as no image registry is reachable there.
ARG BASE_IMAGE=tensorflow/tensorflow:2.15.0-gpu
FROM ${BASE_IMAGE}

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib \
    DPREPRO_DATA_DIR=/opt/dprepro/data/mnist RAY_USAGE_STATS_ENABLED=0
RUN python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    && if ! command -v make >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then \
         apt-get update && apt-get install -y --no-install-recommends make python3.11-venv \
         && rm -rf /var/lib/apt/lists/*; fi
WORKDIR /opt/dprepro

# The dependency layer: only the lock decides it, so code and spec changes reuse it.
COPY requirements.lock ./
RUN python3 -m venv .venv && .venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock

# The project itself (see .dockerignore), MNIST included; checksums verified at build time.
COPY . .
RUN cd data/mnist && sha256sum -c SHA256SUMS \
    && cd /opt/dprepro && .venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation -e . \
    && touch .venv/.installed \
    && useradd --create-home --uid 1000 dprepro \
    && mkdir -p runs results && chown -R dprepro /opt/dprepro/runs /opt/dprepro/results
ARG GIT_COMMIT=unknown
ENV DPREPRO_GIT_COMMIT=${GIT_COMMIT}
USER dprepro
ENTRYPOINT ["make"]
CMD ["reproduce"]

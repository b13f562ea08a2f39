# dprepro image (CPU). `docker build -t dprepro .` then `docker run dprepro` reproduces,
# `docker run dprepro test` runs the tests.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/dprepro
# Dependencies first, so this layer stays cached when only code or specs change.
COPY requirements.lock pyproject.toml ./
RUN python3.11 -m venv .venv && .venv/bin/pip install --no-cache-dir -r requirements.lock
COPY . .
RUN .venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation -e . && touch .venv/.installed \
    && useradd --create-home dprepro && chown -R dprepro /opt/dprepro
USER dprepro
ENTRYPOINT ["make"]
CMD ["reproduce"]

# dprepro: the data flow, top to bottom.
#   requirements.lock -> .venv (install) -> experiments/*.yaml (specs) -> runs/ (fresh results,
#   TensorBoard logs) ; results/ holds the pinned results that papers cite.
# Raw data (data/mnist) is read, verified and never modified.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SPECS  := experiments
EXP    ?=
SEEDS  ?=
ENGINE ?=
OUT    ?= runs
PORT   ?= 6006

# `make reproduce` runs the tutorial's 3- and 15-epoch specs; EXP=name runs any one spec.
REPRODUCE_SPECS := $(if $(EXP),$(SPECS)/$(EXP).yaml,$(SPECS)/tutorial-3ep.yaml $(SPECS)/tutorial-15ep.yaml)
ALL_SPECS := $(filter-out $(SPECS)/smoke.yaml,$(wildcard $(SPECS)/*.yaml))
SWEEP ?= frontier
ADDRESS ?=
AUDITED := tutorial-3ep tutorial-3ep-poisson tutorial-15ep tutorial-15ep-poisson nonprivate-3ep
AUDIT_FLAGS ?= --power
RUN_FLAGS := --out $(OUT) --logdir runs $(if $(SEEDS),--seeds $(SEEDS)) $(if $(ENGINE),--engine $(ENGINE))

.DEFAULT_GOAL := help
.PHONY: help install reproduce reproduce-all run audit pin-audits pin-whitebox-audits sweep tune frontier pin-sweep pin pin-tutorial report bench bench-paths test test-rest test-full coverage test-container docker-build docker-reproduce docker-test docker-ci tensorboard validate epsilon lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: EXP=<spec name>  SEEDS=\"0 1\"  ENGINE=fast|vectorized|tutorial|none  OUT=runs  ENGINES=\"anchor none fast\" (bench rows)"

install: $(STAMP) ## create .venv with the exact pins of requirements.lock (re-runs only when it changes)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

reproduce: $(STAMP) ## train the tutorial's 3- and 15-epoch runs, then check them against results/
	$(BIN)/dprepro run $(REPRODUCE_SPECS) $(RUN_FLAGS) --compare results

reproduce-all: $(STAMP) ## train every spec except smoke, then check them against results/
	$(BIN)/dprepro run $(ALL_SPECS) $(RUN_FLAGS) --compare results

run: $(STAMP) ## train one spec: make run EXP=tutorial-3ep
	@test -n "$(EXP)" || { echo "make run: set EXP=<spec name> (one of: $(notdir $(basename $(wildcard $(SPECS)/*.yaml))))"; exit 2; }
	$(BIN)/dprepro run $(SPECS)/$(EXP).yaml $(RUN_FLAGS)

audit: $(STAMP) ## audit one spec: make audit EXP=tutorial-3ep-poisson [SEEDS="0 1 2"] (audit.json in runs/)
	@test -n "$(EXP)" || { echo "make audit: set EXP=<spec name>"; exit 2; }
	$(BIN)/dprepro audit $(SPECS)/$(EXP).yaml --out $(OUT) --logdir runs $(if $(SEEDS),--seeds $(SEEDS)) $(AUDIT_FLAGS)

pin-audits: $(STAMP) ## re-make the pinned audits (results/<name>/v<version>/audit.json; about 25 min on 2 cores)
	for e in $(AUDITED); do $(BIN)/dprepro audit $(SPECS)/$$e.yaml --seeds 0 1 2 --out results --logdir runs/pinned \
	  $$(case $$e in nonprivate*) ;; *) echo --power;; esac) || echo "make pin-audits: $$e: a check failed (see above)"; done

# White-box audits (gradient canaries) of two tutorial specs and the frontier cell nearest epsilon 4, on
# their own schedules (--held-out 0: all 60,000 trained, the pinned claim; MIA against the test images);
# each lands beside its pinned result as audit-whitebox.json (about 12 min on 2 cores).
pin-whitebox-audits: $(STAMP) ## re-make the pinned white-box audits (results/.../audit-whitebox.json)
	for e in tutorial-3ep-poisson tutorial-15ep-poisson; do $(BIN)/dprepro audit $(SPECS)/$$e.yaml --white-box --held-out 0 \
	  --seeds 0 1 2 --out results --logdir runs/pinned || echo "make pin-whitebox-audits: $$e: a check failed"; done
	$(BIN)/dprepro audit results/sweeps/frontier/v1/specs/frontier-eps4.yaml --white-box --held-out 0 --seeds 0 1 2 \
	  --out results/sweeps/frontier/v1 --logdir runs/pinned || echo "make pin-whitebox-audits: frontier-eps4: a check failed"

sweep: $(STAMP) ## run a sweep on Ray: make sweep [SWEEP=frontier] [ADDRESS=ray://HEAD:10001] (Ray started here if none)
	$(BIN)/dprepro sweep $(SPECS)/sweeps/$(SWEEP).yaml --out $(OUT) --logdir runs $(if $(ADDRESS),--address $(ADDRESS))

TUNE ?= tuned-scatternet-linear
tune: $(STAMP) ## the tuning search on Ray (runs/sweeps/$(TUNE)/; 54 trials, about 80 min on 2 cores), then per target the best on validation: experiments/$(TUNE)-eps<t>.yaml and results/sweeps/$(TUNE)/v<version>/selection.json; SELECT_FLAGS=--refit adds the refits on all 60,000
	$(BIN)/dprepro sweep $(SPECS)/sweeps/$(TUNE).yaml --cpus-per-run 1
	$(BIN)/dprepro select $(SPECS)/sweeps/$(TUNE).yaml --write-specs $(SPECS) --record results $(SELECT_FLAGS)

frontier: $(STAMP) ## the tuned frontier from the searches' committed records (seconds): results/sweeps/tuned-frontier/v<version>/choice.json, and experiments/tuned-frontier[-v<version>]-eps<t>.yaml for each point no shipped spec pins
	$(BIN)/dprepro frontier $(SPECS)/sweeps/tuned-frontier.yaml --write-specs

pin-sweep: $(STAMP) ## re-make the pinned frontier (results/sweeps/frontier/, models and logs beside; about 20 min)
	$(BIN)/dprepro sweep $(SPECS)/sweeps/frontier.yaml --out results --logdir results

# Pins ship their seeds' models and TensorBoard logs: results/<name>/v<version>/seed-<k>/ beside result.json.
pin: $(STAMP) ## re-run every spec except smoke into results/ with models and logs (commit them)
	$(BIN)/dprepro run $(ALL_SPECS) --out results --logdir results

pin-tutorial: $(STAMP) ## pin the tutorial's own engine on tutorial-1ep, seed 0 (about 45 min on 2 cores)
	$(BIN)/dprepro run $(SPECS)/tutorial-1ep.yaml --engine tutorial --seeds 0 --out results --logdir results

report: $(STAMP) ## regenerate results/README.md and results/figures/ from the pinned results
	$(BIN)/dprepro report --results results

bench: $(STAMP) ## time the engines and a plain-Keras anchor side by side (writes results/bench/<host>.json)
	$(BIN)/dprepro bench $(if $(EXP),$(SPECS)/$(EXP).yaml) $(if $(ENGINES),--engines $(ENGINES))

bench-paths: $(STAMP) ## the same on three arithmetic paths (default, oneDNN AVX2, oneDNN off), one table
	$(BIN)/dprepro bench --paths $(if $(EXP),$(SPECS)/$(EXP).yaml) $(if $(ENGINES),--engines $(ENGINES))

validate: $(STAMP) ## validate every spec
	$(BIN)/dprepro validate $(SPECS)/*.yaml

epsilon: $(STAMP) ## print every accountant's epsilon for every private spec
	$(BIN)/dprepro epsilon $(ALL_SPECS)

# Two tiers (docs/testing.md). Quick: `make test`, between two edits (the budget: 10 minutes on 2 cores).
# Full: `make test-full` = the quick tier + `make test-rest` (the tests marked `full`), as CI runs them.
# Each prints its 15 slowest tests. WORKERS=N runs N pytest processes (pytest-xdist; tests that start
# Ray clusters stay in one of them); the default is what CI uses.
WORKERS ?= 2
XDIST := $(if $(filter-out 1,$(WORKERS)),-n $(WORKERS) --dist loadgroup)
PYTEST := $(BIN)/python -m pytest --durations=15 $(XDIST)

test: $(STAMP) ## the quick tier: every test not marked `full` (the README's test command; CI runs it first)
	$(PYTEST) -m "not full"

test-rest: $(STAMP) ## the full tier's own tests (marked `full`): full-data training, Ray, other arithmetic paths, audits
	$(PYTEST) -m full

test-full: $(STAMP) ## both tiers, each test once: the quick tier, then the rest (what CI runs)
	$(MAKE) test
	$(MAKE) test-rest

coverage: $(STAMP) ## statement coverage of src/dprepro by both tiers (subprocesses and Ray workers included)
	rm -rf .coverage-data && mkdir -p .coverage-data
	COVERAGE_FILE=$(CURDIR)/.coverage-data/cov $(BIN)/python -m coverage run -m pytest -p no:cacheprovider -q $(XDIST)
	COVERAGE_FILE=$(CURDIR)/.coverage-data/cov $(BIN)/python -m coverage combine -q
	COVERAGE_FILE=$(CURDIR)/.coverage-data/cov $(BIN)/python -m coverage report

# What the image must show by itself: its packages are the lock's, the CLI, specs, data, model and GPU-ready ops,
# a run end to end, the audit statistics and sweep files. The numerics (engines, accounting, compare, fuzzing,
# resume) are the same code on the same lock and run in `make test`.
IMAGE_TESTS := tests/test_environment.py tests/test_cli.py tests/test_spec.py tests/test_data.py tests/test_model.py \
  tests/test_pipeline.py tests/test_gpu_ready.py tests/test_citation.py tests/audit/test_bounds.py \
  tests/audit/test_fdp.py tests/audit/test_membership.py tests/sweep/test_sweep_spec.py

test-container: $(STAMP) ## the image's own check (the quick tier of IMAGE_TESTS), as CI runs it in the image
	$(BIN)/python -m pytest -p no:cacheprovider --durations=5 -m "not full" $(IMAGE_TESTS)

tensorboard: $(STAMP) ## serve your runs (runs/) and the pinned ones (results/) on http://localhost:$(PORT)
	@mkdir -p runs
	$(BIN)/tensorboard --logdir_spec runs:runs,pinned:results --port $(PORT)

lock: ## regenerate requirements.lock (with hashes from PyPI) and environment.yml from the direct pins in pyproject.toml
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet "$$(pwd)[test]"
	.lock-venv/bin/pip freeze --all --exclude dprepro --exclude pip | $(PYTHON) scripts/lock.py
	rm -rf .lock-venv

IMAGE ?= dprepro:latest
DOCKER_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo --gpus all)
DOCKER_RUN = docker run --rm $(DOCKER_GPU) --user $$(id -u):$$(id -g) \
	-v $(CURDIR)/results:/opt/dprepro/results -v $(CURDIR)/runs:/opt/dprepro/runs $(IMAGE)

docker-build: ## build the image (BASE_IMAGE=... for another base)
	docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  --build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

docker-reproduce: docker-build ## make reproduce in the image (GPU if present); results land in runs/ here
	mkdir -p runs
	$(DOCKER_RUN) reproduce $(if $(EXP),EXP=$(EXP)) $(if $(SEEDS),SEEDS="$(SEEDS)")

docker-test: docker-build ## make test in the image
	$(DOCKER_RUN) test

docker-ci: ## build the Dockerfile on a local base with a private dockerd and run it (root; what CI does)
	bash scripts/ci-docker.sh

clean: ## remove runs/, caches and the venv (never data/ or results/)
	rm -rf runs $(VENV) .pytest_cache .coverage-data build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

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
RUN_FLAGS := --out $(OUT) --logdir runs $(if $(SEEDS),--seeds $(SEEDS)) $(if $(ENGINE),--engine $(ENGINE))

.DEFAULT_GOAL := help
.PHONY: help install reproduce reproduce-all run pin report test test-slow tensorboard validate epsilon lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: EXP=<spec name>  SEEDS=\"0 1\"  ENGINE=fast|tutorial|none  OUT=runs"

install: $(STAMP) ## create .venv with the exact pins of requirements.lock (re-runs only when it changes)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

reproduce: $(STAMP) ## train the tutorial's 3- and 15-epoch runs, then check them against results/
	$(BIN)/dprepro run $(REPRODUCE_SPECS) $(RUN_FLAGS) --compare results

reproduce-all: $(STAMP) ## train every spec except smoke, then check them against results/
	$(BIN)/dprepro run $(ALL_SPECS) $(RUN_FLAGS) --compare results

run: $(STAMP) ## train one spec: make run EXP=tutorial-3ep
	@test -n "$(EXP)" || { echo "make run: set EXP=<spec name> (one of: $(notdir $(basename $(wildcard $(SPECS)/*.yaml))))"; exit 2; }
	$(BIN)/dprepro run $(SPECS)/$(EXP).yaml $(RUN_FLAGS)

pin: $(STAMP) ## re-run every spec except smoke into results/ (the pinned results; commit them)
	$(BIN)/dprepro run $(ALL_SPECS) --out results --logdir runs/pinned

report: $(STAMP) ## regenerate results/README.md and results/figures/ from the pinned results
	$(BIN)/dprepro report --results results

validate: $(STAMP) ## validate every spec
	$(BIN)/dprepro validate $(SPECS)/*.yaml

epsilon: $(STAMP) ## print every accountant's epsilon for every private spec
	$(BIN)/dprepro epsilon $(ALL_SPECS)

test: $(STAMP) ## the test suite CI runs (everything but `slow`)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP) ## the slow tests only (full-data training)
	$(BIN)/python -m pytest -m slow

tensorboard: $(STAMP) ## serve runs/ on http://localhost:$(PORT)
	$(BIN)/tensorboard --logdir runs --port $(PORT)

lock: ## regenerate requirements.lock and environment.yml from the direct pins in pyproject.toml
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet "$$(pwd)[test]" matplotlib
	.lock-venv/bin/pip freeze --exclude dprepro | $(PYTHON) scripts/lock.py
	rm -rf .lock-venv

clean: ## remove runs/, caches and the venv (never data/ or results/)
	rm -rf runs $(VENV) .pytest_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

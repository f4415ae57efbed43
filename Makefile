# LegoML: the only entry point a newcomer needs. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.legoml-installed
PYPROJECTS := pyproject.toml $(wildcard packages/*/pyproject.toml) $(wildcard apps/*/pyproject.toml)
DISTRIBUTIONS := packages/core packages/nn packages/data packages/metrics packages/track apps/mnist
# Every optional extra too, so the tests run against the real optuna, mlflow, onnxruntime, torchvision.
EDITABLES := -e packages/core -e packages/nn -e 'packages/data[torchvision]' -e packages/metrics \
	-e 'packages/track[plot,tensorboard,mlflow]' -e 'apps/mnist[sweep,export]'

# Offline machines: use the shared MNIST and Fashion-MNIST mirrors when they sit beside the checkout.
SHARED_MNIST := $(abspath ../shared/datasets/mnist)
ifneq ($(wildcard $(SHARED_MNIST)/SHA256SUMS.raw),)
export LEGOML_MNIST_MIRROR ?= $(SHARED_MNIST)
endif
SHARED_FASHION_MNIST := $(abspath ../shared/datasets/fashion-mnist)
ifneq ($(wildcard $(SHARED_FASHION_MNIST)/SHA256SUMS.raw),)
export LEGOML_FASHION_MNIST_MIRROR ?= $(SHARED_FASHION_MNIST)
endif

PYTEST_ARGS ?=
ARGS ?=
NPROC ?= 2

.PHONY: help install test test-unit test-packaging test-reliability lint typecheck contracts \
	train train-ddp eval bench bench-peers dist data clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): $(PYPROJECTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(EDITABLES) --group dev
	@touch $@

install: ## create/refresh .venv: every distribution editable + dev tools
	@rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

# Verified once, then again only when a data file or legoml-data's code changes: the stamp
# spares `make train` a Python start-up (loading re-checks each file's size/mtime stamp anyway).
DATA_DIR := $(or $(LEGOML_DATA_DIR),data)
DATA_STAMP := $(DATA_DIR)/.legoml-verified
$(DATA_STAMP): $(STAMP) $(wildcard packages/data/src/legoml/data/*.py) \
		$(wildcard $(DATA_DIR)/mnist/*.gz $(DATA_DIR)/fashion-mnist/*.gz)
	$(PY) -m legoml.data --all
	@touch $@

data: $(DATA_STAMP) ## prepare verified MNIST and Fashion-MNIST under data/

test: $(STAMP) data ## unit + integration tests, mypy --strict, import contracts, ruff
	$(PY) -m pytest -m "not slow and not packaging" $(PYTEST_ARGS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .

# A torch-only environment that each library wheel is tried in, alone with its dependencies.
PKG_VENV := .venv-pkg
$(PKG_VENV)/.torch-installed:
	@test -x $(PKG_VENV)/bin/python || $(PYTHON) -m venv $(PKG_VENV)
	$(PKG_VENV)/bin/python -m pip install -q torch torchvision
	@touch $@

test-packaging: $(STAMP) dist $(PKG_VENV)/.torch-installed ## install each wheel alone with only its declared dependencies
	$(PY) -m pytest -m packaging tests/packaging $(PYTEST_ARGS)

test-reliability: $(STAMP) data ## long kill-and-resume / fault-injection variants
	$(PY) -m pytest -m slow tests/reliability $(PYTEST_ARGS)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

typecheck: $(STAMP) ## mypy --strict on every package
	$(VENV)/bin/mypy

contracts: $(STAMP) ## import-linter dependency contracts
	$(VENV)/bin/lint-imports

train: $(STAMP) data ## train the default MNIST experiment (ARGS="--epochs 2 ...")
	$(VENV)/bin/legoml-mnist train $(ARGS)

train-ddp: $(STAMP) data ## distributed training under torchrun (NPROC=2)
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC) -m legoml_mnist train --distributed $(ARGS)

eval: $(STAMP) data ## evaluate the latest checkpoint (or CKPT=path)
	$(VENV)/bin/legoml-mnist eval $(if $(CKPT),--checkpoint $(CKPT)) $(ARGS)

# Ignite and Lightning live only in this venv: never a dependency of any LegoML package.
PEERS_VENV := .venv-peers

bench: $(STAMP) data $(PEERS_VENV)/.installed ## run benchmarks/ (the end-to-end one against Lightning too), write benchmarks/results/*.json, print a table
	$(PY) benchmarks/run_all.py

$(PEERS_VENV)/.installed: $(PYPROJECTS)
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q torch pytorch-ignite lightning \
		-e packages/core -e packages/track
	@touch $@

bench-peers: $(PEERS_VENV)/.installed ## loop overhead of Ignite and Lightning beside LegoML (separate venv)
	$(PEERS_VENV)/bin/python benchmarks/bench_peers.py

dist: $(STAMP) ## build a wheel + sdist per distribution into dist/
	@rm -rf dist
	@for d in $(DISTRIBUTIONS); do $(PY) -m build --no-isolation --outdir dist $$d >/dev/null || exit 1; done
	@ls dist

clean: ## remove build outputs (keeps data/ and runs/)
	rm -rf dist .mypy_cache .pytest_cache .ruff_cache

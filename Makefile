# The README's commands. Every target installs what it needs, so a fresh clone works with
# `make demo` or `make test` alone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.ganops-installed
export TMPDIR ?= /tmp
# Python's default, whatever the shell says: cached bytecode (__pycache__, ignored by git).
# Without it every test worker, CLI and pipeline-step process compiles our ~400 modules and
# pytest rewrites every test module again (seconds of CPU each, measured on this machine).
export PYTHONDONTWRITEBYTECODE :=
# Three workers on two cores: a third of the suite's time is waits (servers starting,
# Prometheus scrapes, subprocesses), which a third worker fills (6 min 35 s against 6 min 58 s
# with two, measured on this 2-core machine).
TEST_WORKERS ?= 3

.PHONY: setup prometheus postgresql demo test test-all test-fast lint bench clean images constraints

REGISTRY ?= ghcr.io/example
VERSION := $(shell $(PYTHON) -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
# <version>-<commit>: a tag names one build, so what is deployed can be traced to its source.
TAG ?= $(VERSION)-$(shell git rev-parse --short HEAD)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# pip, so torch and torchvision come from whatever index or wheel store pip is configured with.
	$(PIP) install -q -e '.[all]'
	@touch $(STAMP)

setup: $(STAMP)

prometheus:
	@bash scripts/ensure-prometheus.sh

postgresql:
	@bash scripts/ensure-postgresql.sh

demo: setup prometheus
	$(VENV)/bin/ganops demo $(DEMO_ARGS)

# How the tests are spread over the workers: a whole module at a time, so a module-scoped
# fixture (a pipeline run, a server) is built once, not once on each worker; in
# tests/conftest.py's order (the heaviest modules first), not xdist's (the most tests first).
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Lint, then every test but the end-to-end demo, on three workers (pytest-xdist; each test's
# servers and folders are its own). The ten slowest are listed at the end.
test: setup prometheus postgresql lint
	$(PY) -m pytest -q $(XDIST) -m "not e2e" --durations=10 $(PYTEST_ARGS)

# `make test`, then what truly needs minutes: the shortened demo end to end. CI runs this.
test-all: test
	$(PY) -m pytest -q -m e2e $(PYTEST_ARGS)

# Unit and contract tests only: no training runs, pipelines or external processes.
test-fast: setup
	$(PY) -m pytest -q $(XDIST) -m "not slow and not e2e" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup prometheus
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Both images from the one Dockerfile, tagged <version>-<commit> for REGISTRY (push them
# yourself). Put the tag in the overlay's one images: entry; its replacements carry it to the
# bot's image and GANOPS_IMAGE (docs/cluster.md).
images:
	docker build --target bot -t $(REGISTRY)/ganops-bot:$(TAG) .
	docker build --target trainer -t $(REGISTRY)/ganops-trainer:$(TAG) .
	docker build --target steps -t $(REGISTRY)/ganops-steps:$(TAG) .
	@echo "overlay images: newTag: $(TAG)"

# The pins the images install with, from this venv (all extras).
constraints: setup
	{ sed -n '1,/^#   make constraints/p' constraints.txt; \
	  $(PIP) freeze --exclude-editable | grep -viE '^ganops(==| @)'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .ganops build *.egg-info .pytest_cache .mypy_cache .ruff_cache

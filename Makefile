# RTM developer and CI entry points. CI runs `make test` (through .ci/run).
# Targets are grouped in sections; add new ones to the section they belong to.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# Prerequisites are listed in the order they must run (Docker before the
# engine image, the venv before lint): keep make from reordering them.
.NOTPARALLEL:
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Same default as scripts/ensure-deps.sh, which writes test.env there.
RTM_DEV_DIR ?= $(CURDIR)/.rtm-dev
TEST_ENV := $(RTM_DEV_DIR)/test.env

PACKAGES := libs/rtm-core services/rtm-api services/rtm-jobs services/rtm-watcher services/rtm-reconciler
DEV_TOOLS := pytest==9.2.0 pytest-asyncio==1.5.0 testcontainers==4.15.0 tox==4.67.15 \
	ruff==0.17.6 mypy==2.4.1
LINT_PATHS := libs services tests migrations bench
PYTEST_ARGS ?=

.PHONY: help venv deps engine-image lint test

help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- environment

venv: $(VENV)/.installed ## .venv with every RTM package (editable) and the dev tools

# Reinstalls only when a pyproject.toml changed (the stamp is older). After
# changing DEV_TOOLS, `rm .venv/.installed`.
$(VENV)/.installed: pyproject.toml $(addsuffix /pyproject.toml,$(PACKAGES))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check \
		$(addprefix -e ,$(PACKAGES)) $(DEV_TOOLS)
	touch $@

deps: ## Docker, PostgreSQL, Redis (reused or installed + started); writes test.env
	scripts/ensure-deps.sh

engine-image: ## galaxy/test-engine:* images (skipped when current)
	scripts/build-test-engine.sh

# --------------------------------------------------------------------- checks

lint: venv ## ruff check, ruff format --check, mypy (strict on rtm_core)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy libs/rtm-core/src

# pytest exits 5 when it collected no test: make fails on it like on any other
# non-zero exit, and it must stay that way (an empty run proves nothing).
test: deps venv engine-image lint ## everything CI runs: deps, venv, images, lint, pytest
	source $(TEST_ENV) && $(BIN)/pytest $(PYTEST_ARGS)

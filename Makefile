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
	ruff==0.17.6 mypy==2.4.1 PyYAML==6.0.3 kubernetes-validate==1.37.0
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

# ===================================================================== deploy
# Images, the compose stack and the Helm chart (deploy/, docs/deploy.md).
# Compose settings: shell > deploy/compose/.env > .rtm-dev/images.env (what
# the last `make images` built: offline path -> rtm-postgres/rtm-redis) >
# the compose file's defaults. Nothing here is exported to other targets.

RTM_VERSION ?= $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' libs/rtm-core/pyproject.toml | head -n1)
RTM_IMAGE ?= galaxy/rtm:$(RTM_VERSION)
DEPLOY_ENV := RTM_VERSION=$(RTM_VERSION) RTM_IMAGE=$(RTM_IMAGE)
COMPOSE := $(DEPLOY_ENV) deploy/scripts/compose.sh
SERVICE ?=

.PHONY: images up down down-engines logs ps helm-check helm-sync

images: ## build galaxy/rtm:<version> (+ rtm-postgres:15, rtm-redis:7 when offline)
	deploy/scripts/ensure-docker.sh
	$(DEPLOY_ENV) deploy/images/build.sh

up: ## Docker, images, galaxy-net, compose up -d, wait for /readyz (RTM_UP_TIMEOUT); RTMANAGER_* from the env, e.g. RTMANAGER_AUTO_RESTART=on
	$(DEPLOY_ENV) deploy/scripts/up.sh

down: ## remove the stack's containers, networks, volumes (not game state, not engines)
	$(COMPOSE) down -v --remove-orphans

down-engines: ## remove this stack's engine containers (owner=rtmanager + stack labels)
	deploy/scripts/down-engines.sh

logs: ## last 200 log lines (SERVICE=rtm-api for one, FOLLOW=1 to follow)
	$(COMPOSE) logs --tail=200 $(if $(FOLLOW),--follow) $(SERVICE)

ps: ## the stack's containers and their health
	$(COMPOSE) ps

helm-check: ## helm lint + template (default, ci values) + kubernetes-validate --strict
	deploy/helm/check.sh

helm-sync: ## copy deploy/monitoring's rules and dashboard into the chart (deploy/helm/rtm/files)
	deploy/helm/sync-monitoring.sh

# ========================================================= integration & docs
# The compose stack driven from outside (tests/integration, docs/runbook.md
# blocks) and Prometheus on it. Owner: stack-level tests; see
# tests/integration/README.md. `make test` never collects tests/integration
# (pyproject addopts --ignore); these targets run it against a live stack.

# Stack settings for the integration run (compose honours them, see
# deploy/compose/.env.example): reconcile passes every few seconds so
# dispose/adopt are seen quickly, and a shorter claim idle and game lease so a
# SIGKILLed rtm-jobs' entries and leases are taken over within the suite's
# timeouts. A plain `make up` afterwards puts the defaults back.
INTEGRATION_STACK_ENV ?= RTMANAGER_RECONCILE_INTERVAL=3s RTMANAGER_JOBS_CLAIM_IDLE=10s \
	RTMANAGER_GAME_LEASE_TTL_SECONDS=20
INTEGRATION_ARGS ?=

.PHONY: integration docs-check monitoring-up monitoring-down

integration: venv engine-image ## stack + Prometheus up (short reconcile interval), then pytest tests/integration
	$(INTEGRATION_STACK_ENV) $(MAKE) --no-print-directory monitoring-up
	RTM_INTEGRATION=1 $(INTEGRATION_STACK_ENV) $(BIN)/pytest tests/integration -m integration $(INTEGRATION_ARGS)

docs-check: engine-image ## stack up if needed, then every `sh` block of docs/runbook.md against it
	$(MAKE) --no-print-directory up
	python3 scripts/docs_check.py

monitoring-up: ## the stack plus Prometheus (profile monitoring) on 127.0.0.1:9090
	RTM_BUILD_MONITORING=1 $(MAKE) --no-print-directory up
	$(COMPOSE) --profile monitoring up -d prometheus
	deploy/scripts/wait-prometheus.sh

monitoring-down: ## stop and remove Prometheus only (its data volume stays until `make down`)
	$(COMPOSE) --profile monitoring rm -f -s -v prometheus

# ----------------------------------------------------------------- benchmarks
# SPEC §10 targets, measured against real Docker/PostgreSQL/Redis (never in tests).

.PHONY: bench
bench: deps venv engine-image ## SPEC §10 benchmarks (bench/*.py), one after the other
	source $(TEST_ENV) && for b in api jobs watcher reconcile; do \
		echo "== bench_$$b"; $(BIN)/python bench/bench_$$b.py; done

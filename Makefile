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

PACKAGES := libs/rtm-core services/rtm-api services/rtm-jobs services/rtm-watcher services/rtm-reconciler \
	tools/rtmctl
# uv (version pinned in pyproject.toml's dev group) from a bootstrap venv:
# scripts/ensure-uv.sh installs it when missing and prints its path.
ENSURE_UV := PYTHON=$(PYTHON) RTM_DEV_DIR=$(RTM_DEV_DIR) scripts/ensure-uv.sh
# Never fetch an interpreter: python3.11 comes from Debian (ensure-deps.sh).
export UV_PYTHON_DOWNLOADS := never
LINT_PATHS := libs services tools tests migrations bench
PYTEST_ARGS ?=

.PHONY: help venv lock deps engine-image lint unit test

help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- environment

venv: $(VENV)/.installed ## .venv = uv.lock: every RTM package (editable) + the dev group

# `uv sync --frozen` installs exactly what uv.lock says (and removes anything
# else); it never re-resolves. Re-run when the lock or a pyproject.toml
# changed (the stamp is older).
$(VENV)/.installed: uv.lock pyproject.toml $(addsuffix /pyproject.toml,$(PACKAGES))
	uv=$$($(ENSURE_UV)) && UV_PROJECT_ENVIRONMENT=$(VENV) $$uv sync --frozen --all-packages --compile-bytecode --python $(PYTHON)
	touch $@

lock: ## re-resolve uv.lock after editing a pin in a pyproject.toml (then commit it)
	uv=$$($(ENSURE_UV)) && $$uv lock --python $(PYTHON)

deps: ## Docker, PostgreSQL, Redis (reused or installed + started); writes test.env
	scripts/ensure-deps.sh

engine-image: ## galaxy/test-engine:* images (skipped when current)
	scripts/build-test-engine.sh

# --------------------------------------------------------------------- checks

lint: venv ## uv.lock up to date, ruff check, ruff format --check, mypy strict on every package
	uv=$$($(ENSURE_UV)) && $$uv lock --check --python $(PYTHON)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy $(addsuffix /src,$(PACKAGES)) tests/unit

# The unit tier: rtm-core's rules over in-memory fakes of its ports. Needs no
# Docker, PostgreSQL or Redis (a socket connect fails the test); seconds.
unit: venv ## the unit tier alone (tests/unit), no Docker/PostgreSQL/Redis needed
	$(BIN)/pytest tests/unit -q

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

# ENGINE_BACKEND=swarm (or RTMANAGER_ENGINE_BACKEND in deploy/compose/.env): engines as
# Swarm services; `up` inits a one-node swarm when the daemon is in none (docs/scale-out.md).
ENGINE_BACKEND ?=

up: ## Docker, images, engine backend + network, compose up -d, wait for /readyz (ENGINE_BACKEND=swarm; RTMANAGER_* from the env, e.g. RTMANAGER_AUTO_RESTART=on)
	ENGINE_BACKEND=$(ENGINE_BACKEND) $(DEPLOY_ENV) deploy/scripts/up.sh

down: ## remove the stack (containers, networks, volumes) and the swarm/overlay `up` created (not game state, not engines)
	$(DEPLOY_ENV) deploy/scripts/down.sh

down-engines: ## remove this stack's engines: containers, and services on a swarm (owner=rtmanager + stack labels)
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

# Chaos drill (tests/chaos; docs/runbook.md "Chaos drill"): the stack with the
# integration settings and rtm-jobs scaled to CHAOS_REPLICAS, then a load of
# games while faults go in one after the other (SIGKILLs, Redis and PostgreSQL
# restarts, a pause, a Docker daemon restart). Needs root, and restarts the
# daemon: nothing else may use it meanwhile, or pass
# CHAOS_ARGS='--skip docker-restart'. Last line: lost/duplicate/stuck figures.
CHAOS_REPLICAS ?= 3
CHAOS_ARGS ?=
CHAOS_RUN = $(INTEGRATION_STACK_ENV) $(MAKE) --no-print-directory up && \
	$(INTEGRATION_STACK_ENV) $(COMPOSE) up -d --no-deps --scale rtm-jobs=$(CHAOS_REPLICAS) rtm-jobs && \
	RTM_DEV_DIR=$(RTM_DEV_DIR) PYTHONPATH=tests $(BIN)/python -m chaos --replicas $(CHAOS_REPLICAS)

.PHONY: chaos chaos-ci

chaos: venv engine-image ## chaos drill: 100 games, every fault; report docs/drills/<date>-chaos.md
	$(CHAOS_RUN) $(CHAOS_ARGS)

chaos-ci: venv engine-image ## its CI variant: 20 games, each fault once; report in .rtm-dev/drills/
	$(CHAOS_RUN) --ci $(CHAOS_ARGS)

# ---------------------------------------------------------------------- swarm
# The swarm backend's suites run on dockerds of their own, each in its own
# network namespace (tests/swarm/nodes.py), never on the machine's daemon.
# Root only. `make test` runs tests/swarm too; these run just the swarm parts.

MULTINODE_ARGS ?=

.PHONY: test-swarm swarm-multinode

test-swarm: deps venv engine-image ## the swarm suites only (tests/swarm + tests/unit/test_swarm_spec.py), one-node swarm
	source $(TEST_ENV) && $(BIN)/pytest tests/swarm tests/unit/test_swarm_spec.py $(PYTEST_ARGS)

swarm-multinode: deps venv engine-image ## 3 dockerds in netns: 12 games, spread, remote death, drain, restart on its node; measures
	tests/swarm/multinode.sh $(MULTINODE_ARGS)

# ----------------------------------------------------------------- benchmarks
# SPEC §10 and issue 14 targets, measured against real Docker/PostgreSQL/Redis
# (never in tests). BENCH_ARGS='--only read,api' re-runs some, keeping the others.
BENCH_ARGS ?=

.PHONY: bench bench-ci
bench: deps venv engine-image ## issue 14 benchmarks, each beside its raw floor; writes bench/RESULTS.md (~20 min)
	source $(TEST_ENV) && $(BIN)/python bench/run_all.py $(BENCH_ARGS)

bench-ci: deps venv engine-image ## the short variant (a few minutes); writes .rtm-dev/bench/RESULTS-ci.md
	source $(TEST_ENV) && $(BIN)/python bench/run_all.py --ci $(BENCH_ARGS)

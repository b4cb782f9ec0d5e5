# The commands people use; CI (.ci/run) calls the same targets.
#   make run    bring the whole stack up locally (installs/starts Redis and PostgreSQL if needed)
#   make stop   stop what `make run` started
#   make test   the whole test suite against real Redis and PostgreSQL
#   make lint   rustfmt check + clippy -D warnings
#   make bench  benchmarks (release build), figures printed and written under .run/bench/
#   make helm-check  lint, render and schema-validate the helm chart (default and production values)

SHELL := /bin/bash
CARGO ?= cargo
TEST_REDIS_URL ?= redis://127.0.0.1:6379
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: help run stop status test lint fmt build bench helm-check

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

run:
	@bash scripts/stack.sh up

stop:
	@bash scripts/stack.sh down

status:
	@bash scripts/stack.sh status

build:
	$(CARGO) build --workspace --bins

# Tests make sure Redis and PostgreSQL answer first (starting them if needed), then create their own
# databases and key prefixes, so they run in parallel and leave nothing behind.
test:
	@REDIS_URL=$(TEST_REDIS_URL) DATABASE_URL=$(TEST_DATABASE_URL) bash scripts/deps.sh up
	@REDIS_URL=$(TEST_REDIS_URL) bash scripts/test-keys-gc.sh
	NCY_TEST_REDIS_URL=$(TEST_REDIS_URL) NCY_TEST_DATABASE_URL=$(TEST_DATABASE_URL) \
		$(CARGO) test --workspace --all-targets --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	@bash scripts/bench.sh
	@bash scripts/bench/jobs.sh
	@bash scripts/bench/cache.sh
	@bash scripts/bench/realtime.sh

helm-check:
	@bash scripts/helm-check.sh

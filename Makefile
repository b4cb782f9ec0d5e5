# The commands people use; CI (.ci/run) calls the same targets.
#   make run    bring the whole stack up locally (installs/starts Redis and PostgreSQL if needed)
#   make stop   stop what `make run` started
#   make test   the whole test suite against real Redis and PostgreSQL
#   make lint   rustfmt check + clippy -D warnings
#   make bench  benchmarks (release build), figures printed and written under .run/bench/
#   make helm-check  lint, render and schema-validate the helm chart (default and production values)
#   make fuzz   coverage-guided fuzzing (nightly + cargo-fuzz), FUZZ_SECS per target (60), FUZZ_TARGETS to pick; not in CI

SHELL := /bin/bash
CARGO ?= cargo
TEST_REDIS_URL ?= redis://127.0.0.1:6379
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
FUZZ_CARGO ?= cargo +nightly
FUZZ_TARGETS ?= ws_frame jwt_claims cron_expr job_payload page_token
FUZZ_SECS ?= 60
FUZZ_RSS_MB ?= 2048
FUZZ_TIMEOUT ?= 10

.PHONY: help run stop status test lint fmt build bench helm-check fuzz

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
# databases and key prefixes, so they run in parallel and leave nothing behind. With cargo-nextest
# installed they run through it (.config/nextest.toml: every binary's tests scheduled together),
# otherwise through cargo test, binary after binary (slower, same tests). TEST_RUNNER=cargo forces
# the latter.
TEST_RUNNER ?= $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo nextest || echo cargo)

test:
	@REDIS_URL=$(TEST_REDIS_URL) DATABASE_URL=$(TEST_DATABASE_URL) bash scripts/deps.sh up
	@REDIS_URL=$(TEST_REDIS_URL) bash scripts/test-keys-gc.sh
ifeq ($(TEST_RUNNER),nextest)
	NCY_TEST_REDIS_URL=$(TEST_REDIS_URL) NCY_TEST_DATABASE_URL=$(TEST_DATABASE_URL) \
		$(CARGO) nextest run --workspace --all-targets --no-fail-fast
else
	@echo "cargo-nextest not found: running cargo test (slower; 'cargo install cargo-nextest --locked' to speed it up)"
	NCY_TEST_REDIS_URL=$(TEST_REDIS_URL) NCY_TEST_DATABASE_URL=$(TEST_DATABASE_URL) \
		$(CARGO) test --workspace --all-targets --no-fail-fast
endif

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
	@bash scripts/bench/console.sh

helm-check:
	@bash scripts/helm-check.sh

# Fuzzing (docs/fuzzing.md): each target runs FUZZ_SECS seconds, one process, in turn, from its corpus
# (fuzz/corpus/<target>, git-ignored, grows run after run) and the committed seeds (fuzz/seeds/<target>).
# A crash, leak past FUZZ_RSS_MB, or an input slower than FUZZ_TIMEOUT seconds is saved under
# fuzz/artifacts/<target>/; the other targets still run and make fails at the end naming them.
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz"; exit 1; }
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t fuzz/seeds/$$t; \
		echo "== fuzz $$t: $(FUZZ_SECS)s"; \
		$(FUZZ_CARGO) fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-max_total_time=$(FUZZ_SECS) -rss_limit_mb=$(FUZZ_RSS_MB) -malloc_limit_mb=$(FUZZ_RSS_MB) \
			-timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
			|| failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failures in:$$failed (inputs under fuzz/artifacts/)"; exit 1; fi

# Two commands matter to a new user: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL_PACKAGES := -e shared -e services/intake -e services/agreements -e services/notifications -e services/casework
NO_EMIT := --no-emit-package agency-shared --no-emit-package wechat-agency-intake \
           --no-emit-package wechat-agency-agreements --no-emit-package wechat-agency-notifications --no-emit-package wechat-agency-casework

.PHONY: run test check test-faults lint pytest system-deps broker lock clean bench asyncapi

# The virtualenv is rebuilt whenever a lock file changes.
$(BIN)/.installed: requirements-dev.lock requirements.lock shared/pyproject.toml services/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(LOCAL_PACKAGES)
	touch $@

# Debian packages the test suite uses: docker-compose validates the compose file
# offline, chromium is the browser the page tests drive, fonts-wqy-zenhei lets it
# draw Chinese in the screenshots.
SYSTEM_PACKAGES := docker-compose chromium fonts-wqy-zenhei
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(BIN)/.installed
	$(BIN)/python scripts/run_local.py

test: $(BIN)/.installed system-deps broker lint pytest

# The fast loop: lint, types and the unit tests (tests/unit), no server started or needed.
check: $(BIN)/.installed lint
	$(BIN)/pytest -m unit tests/unit

# The tests use the machine's RabbitMQ: start it if it is installed but down, restart it if it stopped
# answering, enable its management API (see scripts/run_local.py).
broker: $(BIN)/.installed
	$(BIN)/python scripts/run_local.py --check-broker

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The unit and integration tests on three workers (each its own SecantusDB, every test its own vhost
# and SMTP server); then the whole-system tests (four services, Chromium) on two, so they do not
# starve each other or the broker on two cores; then the fault tests alone: they stop and start the
# machine's RabbitMQ.
pytest: $(BIN)/.installed broker
	$(BIN)/pytest -m "not faults and not e2e" -n 3 --dist loadfile
	$(BIN)/pytest -m e2e -n 2 --dist loadfile
	$(BIN)/pytest -m faults

# Only the fault tests (kill, restart, outage; they are part of `make test` too).
test-faults: $(BIN)/.installed system-deps broker
	$(BIN)/pytest tests/faults -s

# Rewrite docs/asyncapi/<service>.yaml from the services' code (no broker needed); the tests compare them.
asyncapi: $(BIN)/.installed
	$(BIN)/python scripts/asyncapi.py

# Benchmarks (figures, not pass/fail): wrk from Debian drives the HTTP load. See README "Performance".
BENCH_PACKAGES := wrk
bench: $(BIN)/.installed broker
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_PACKAGES) >/dev/null; }
	$(BIN)/python -m bench.run

# Re-pin every dependency (uv is pinned in the dev lock).
lock: $(BIN)/.installed
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes $(NO_EMIT) requirements.in -o requirements.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --prerelease=if-necessary-or-explicit --generate-hashes $(NO_EMIT) \
	  requirements-dev.in -o requirements-dev.lock
	# Each image's part of requirements.lock (services/<name>/requirements.lock).
	$(BIN)/python scripts/service_locks.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

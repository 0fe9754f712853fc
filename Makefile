# Developer and CI entry points. Every target works from a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
INI ?= development.ini
# `make run PORT=6544` when 6543 is taken.
PORT ?= 6543
PYTEST_ARGS ?=
# When set, `make test` also writes pytest's own exit code here, because make
# itself collapses every failure to exit status 2.
PYTEST_EXIT_FILE ?=

.PHONY: venv services browser test run lint bench bench-sustained soak

venv: $(STAMP)

# The stamp is only refreshed after a successful install, so an interrupted
# install is retried on the next run.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[testing]'
	touch $@ $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e .
	touch $@

services:
	scripts/ensure-services

browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium is already installed"; \
	else \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			chromium chromium-driver; \
	fi

test: venv services
	rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$(PYTEST_EXIT_FILE)" ]; then echo $$rc > "$(PYTEST_EXIT_FILE)"; fi; \
	exit $$rc

# Serving needs only the app's own dependencies, not the test tools; --reload
# restarts the server when a Python file changes (templates are re-read anyway).
# Ctrl+C stops it cleanly (exit 0); a port in use is said in one line.
run: $(RUN_STAMP)
	@$(BIN)/python -m myapp.scripts.devserver --check-port --port $(PORT) $(INI)
	$(BIN)/alembic -c $(INI) upgrade head
	printf '%s\n' demo-password | $(BIN)/myapp-create-user --ini $(INI) --if-missing --password-stdin demo
	@$(BIN)/python -m myapp.scripts.devserver --reload --port $(PORT) $(INI)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The benchmark (docs/performance.md): about 20 minutes, then the sustained writes (about
# 40 more); BENCH_ARGS=--quick for a smoke run of the first part.
BENCH_ARGS ?=
bench: venv services
	$(BIN)/python -c "import pyramid_session_redis, matplotlib, pyinstrument" 2>/dev/null \
		|| $(BIN)/pip install -e '.[testing,bench]'
	@[ -x /usr/bin/wrk ] || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(MAKE) bench-sustained

# Sustained writes (docs/performance.md): 100,000 sessions written 20 times, small and
# 10 KB, against a Django-style table, on a throwaway PostgreSQL; then the capacity
# figures (docs/capacity.md) from these and the results above.
SUSTAINED_ARGS ?=
bench-sustained: venv
	$(BIN)/python -m bench.sustained $(SUSTAINED_ARGS)
	$(BIN)/python -m bench.capacity

# Load and soak (docs/reliability.md): PostgreSQL killed under traffic, then a
# 100,000-request soak on throwaway servers; SOAK_ARGS=--quick for a smoke run.
SOAK_ARGS ?=
soak: venv
	$(BIN)/python -m bench.load_soak $(SOAK_ARGS)

# spendwatch — every target creates .venv on first use and is safe to repeat.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANIFEST := target/manifest.json
# The report's browser test drives Debian's chromium through Playwright (Playwright's own browser
# download is not reachable); `make test` installs it when it is missing (as root, or with sudo).
CHROMIUM := /usr/bin/chromium
export SPENDWATCH_HOME ?= $(CURDIR)/.spendwatch
export DAGSTER_HOME ?= $(SPENDWATCH_HOME)/dagster
export DBT_PROFILES_DIR := $(CURDIR)
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install demo test test-spark ui lint format docs bench eval-detection soak manifest clean

install: $(STAMP)

# constraints.txt pins every package to the versions the tests passed with.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[warehouse,dev]"
	touch $@

# dbt's manifest, which the Dagster definitions load; parsed once here, never at import time.
$(MANIFEST): $(STAMP) dbt_project.yml profiles.yml $(shell find models macros seeds tests/dbt -type f 2>/dev/null)
	$(BIN)/dbt parse --quiet
	touch $@

manifest: $(MANIFEST)

demo: $(MANIFEST)
	$(BIN)/spendwatch demo

# Of the Spark tests `make test` runs the engine comparison (5 minutes alone, about 8 beside
# the rest; started first by tests/conftest.py so it runs beside all the others); the Spark
# load's and the suites' own corpora run in `make test-spark`.
test: $(MANIFEST) $(CHROMIUM)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=5 -m "not spark or engine_parity"

# The same landing files built on DuckDB and on Spark (SPENDWATCH_TARGET=spark), every table
# compared (tests/test_spark_target.py), then the Spark load's and the suites' corpora on both
# engines, and a Connect server left behind by a killed run (tests/test_spark_server.py)
test-spark: $(MANIFEST)
	$(BIN)/python -m pytest -q -s -m spark tests/test_spark_target.py tests/test_spark_load.py tests/test_spark_quality.py tests/test_spark_server.py

$(CHROMIUM):
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo -E ) apt-get install -y -qq chromium

ui: $(MANIFEST)
	mkdir -p "$(DAGSTER_HOME)"
	# dbt on PATH: under `dagster dev`, DbtProject.prepare_if_dev() re-parses the project on load
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dagster dev -m orchestration.definitions

lint: $(STAMP)
	$(BIN)/ruff check spendwatch orchestration tests benchmarks
	$(BIN)/ruff format --check spendwatch orchestration tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format spendwatch orchestration tests benchmarks
	$(BIN)/ruff check --fix spendwatch orchestration tests benchmarks

docs: $(MANIFEST)
	mkdir -p "$(SPENDWATCH_HOME)"
	$(BIN)/dbt docs generate --quiet
	@echo "dbt docs written to target/ (index.html, catalog.json); serve with: $(BIN)/dbt docs serve"

# spendwatch at SIZE (default: 10M calls over 100 days, about an hour; small: 500k calls over
# 14 days, minutes; tiny: what the smoke test runs) against the DuckDB floor and a pandas peer,
# then the micro-benchmarks; the scale table goes into docs/benchmarks.md
SIZE ?= default
bench: $(MANIFEST)
	$(BIN)/python -m benchmarks --size $(SIZE)

# Every writer and reader of one warehouse at once for a few minutes; then no line lost or
# loaded twice (not in `make test`: it takes minutes by design)
soak: $(MANIFEST)
	$(BIN)/python -m benchmarks.soak --minutes $${SOAK_MINUTES:-4}

# The detectors on the real traffic traces of ../shared/data/traffic (about 11 minutes on 2 cores);
# writes the table into docs/detection.md. A small version runs in `make test`.
eval-detection: $(MANIFEST)
	$(BIN)/python -m benchmarks.detection_eval --write-docs

clean:
	rm -rf target logs .pytest_cache .ruff_cache

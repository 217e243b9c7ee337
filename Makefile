# salepulse: `make demo` runs the whole pipeline on embedded defaults; `make test` runs the test suite.
# Both create .venv and install on first use; the local Kafka jars come through Maven on first broker start.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test lint bench profile kafka-up kafka-down clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/salepulse demo $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The dashboard tests drive Debian's headless Chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "the dashboard tests need Chromium: sudo apt-get install -y chromium" >&2; exit 1; fi; }

test: install lint browser
	$(BIN)/salepulse schemas check
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/salepulse bench $(BENCH_ARGS)

# py-spy profiles of each role (issue #13): docs/profiles/*.txt and the profile section of BENCHMARKS.md.
profile: install
	$(BIN)/salepulse bench --profile $(BENCH_ARGS)

kafka-up: install
	$(BIN)/salepulse kafka up

kafka-down: install
	$(BIN)/salepulse kafka down

clean:
	-$(BIN)/salepulse kafka down
	rm -rf .salepulse .pytest_cache .ruff_cache

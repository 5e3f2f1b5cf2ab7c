# chronolog — `make help` lists the targets. CI runs `.ci/run`, which calls
# `make lint` and `make test`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BUILD := build
DEMO_TRACE := $(BUILD)/demo.clog
PYTHONS := $(shell scripts/pythons.sh)

.PHONY: help demo test test-rust test-python test-spark lint fmt schemas bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml Cargo.toml $(shell find format analyze recorder python schemas -type f -not -path '*/__pycache__/*')
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet .
	touch $@

demo: $(VENV)/.installed ## set up .venv with chronolog, record fixtures/programs/demo.py, show what the trace holds
	@mkdir -p $(BUILD)
	@echo "== chronolog record fixtures/programs/demo.py (its own output follows)"
	$(VENV)/bin/chronolog record -o $(DEMO_TRACE) fixtures/programs/demo.py
	@echo "== chronolog info"
	$(VENV)/bin/chronolog info $(DEMO_TRACE)
	@echo "== the exception that was swallowed (chronolog silenced)"
	$(VENV)/bin/chronolog silenced $(DEMO_TRACE)
	@echo "== every call of parse_price, with its argument and what it returned (chronolog sql)"
	$(VENV)/bin/chronolog sql $(DEMO_TRACE) "SELECT function, args, return_value FROM calls WHERE function = 'parse_price' ORDER BY start_seq"
	@echo "== how 'total' evolved (chronolog history)"
	$(VENV)/bin/chronolog history $(DEMO_TRACE) total

test: test-rust test-python ## all Rust tests, then pytest on every CPython 3.11-3.13 present

test-rust: ## cargo test of the whole workspace
	cargo test --workspace --quiet

test-python: ## build a wheel per CPython present and run pytest against it
	@test -n "$(PYTHONS)" || { echo "no CPython 3.11-3.13 found"; exit 1; }
	@set -- $(PYTHONS); while [ $$# -gt 0 ]; do \
	  version=$$1; python=$$2; shift 2; venv=$(BUILD)/venv-$$version; \
	  echo "== CPython $$version ($$python)"; \
	  [ -x $$venv/bin/python ] || $$python -m venv $$venv; \
	  $$venv/bin/pip install --quiet --upgrade pip maturin pytest pysnooper pyarrow duckdb polars; \
	  rm -rf $(BUILD)/wheels/$$version; \
	  $$venv/bin/maturin build --quiet --release --interpreter $$venv/bin/python --out $(BUILD)/wheels/$$version; \
	  $$venv/bin/pip install --quiet --force-reinstall --no-deps $(BUILD)/wheels/$$version/*.whl; \
	  $$venv/bin/python -m pytest -q tests; \
	done

test-spark: ## the user guide's Spark example too (downloads pyspark, ~450 MB; needs Java 17+)
	@py312=$$(scripts/pythons.sh | awk '$$1 == "3.12" { print $$2 }'); venv=$(BUILD)/venv-spark; \
	test -n "$$py312" || { echo "needs CPython 3.12"; exit 1; }; \
	command -v java >/dev/null || { echo "needs Java 17+ (Debian: openjdk-17-jre-headless)"; exit 1; }; \
	[ -x $$venv/bin/python ] || $$py312 -m venv $$venv; \
	$$venv/bin/pip install --quiet --upgrade pip maturin pytest pyarrow duckdb polars pyspark; \
	rm -rf $(BUILD)/wheels/spark; \
	$$venv/bin/maturin build --quiet --release --interpreter $$venv/bin/python --out $(BUILD)/wheels/spark; \
	$$venv/bin/pip install --quiet --force-reinstall --no-deps $(BUILD)/wheels/spark/*.whl; \
	CHRONOLOG_GUIDE_REQUIRE=pyspark $$venv/bin/python -m pytest -q tests/test_guide.py

lint: ## rustfmt, clippy (warnings are errors) and ruff
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	@# The recorder compiles per CPython version (3.11 backend vs 3.12+): lint the 3.12+ one too.
	@py312=$$(scripts/pythons.sh | awk '$$1 == "3.12" { print $$2 }'); \
	if [ -n "$$py312" ]; then PYO3_PYTHON=$$py312 cargo clippy -p chronolog-recorder --all-targets --quiet -- -D warnings; fi
	@[ -x $(BUILD)/venv-lint/bin/ruff ] || { $(PYTHON) -m venv $(BUILD)/venv-lint && $(BUILD)/venv-lint/bin/pip install --quiet ruff; }
	$(BUILD)/venv-lint/bin/ruff check python tests scripts benches/sql
	$(BUILD)/venv-lint/bin/ruff format --check python tests scripts benches/sql

fmt: ## format Rust and Python code
	cargo fmt --all
	@[ -x $(BUILD)/venv-lint/bin/ruff ] || { $(PYTHON) -m venv $(BUILD)/venv-lint && $(BUILD)/venv-lint/bin/pip install --quiet ruff; }
	$(BUILD)/venv-lint/bin/ruff format python tests scripts benches/sql

schemas: ## regenerate format/src/generated from schemas/*.capnp (needs Debian's capnproto)
	CHRONOLOG_UPDATE_SCHEMAS=1 cargo test -p chronolog-format --test schema_drift --quiet

bench: ## format benchmarks (encode/decode throughput, bytes per event); see benches/README.md
	cargo bench -p chronolog-benches --bench format

clean: ## remove build products and virtual environments
	rm -rf target $(BUILD) $(VENV)

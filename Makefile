# One command each: `make demo` and `make test` set up everything they need on a machine
# with only Python 3.11 (virtualenv, install, warehouse, dbt manifest).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := dbt_project/dbt_project.yml dbt_project/profiles.yml \
	$(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f 2>/dev/null)

.PHONY: install manifest lint test demo docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

manifest: $(MANIFEST)

# Dagster loads the dbt project from this manifest; it is built here, never at import.
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	cd dbt_project && DBT_SEND_ANONYMOUS_USAGE_STATS=false ../$(BIN)/dbt parse --quiet \
		--profiles-dir . --project-dir .
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) $(MANIFEST) lint
	$(BIN)/pytest

demo: $(STAMP) $(MANIFEST)
	$(BIN)/billing demo

# The dbt documentation site for finance, against the configured warehouse.
docs: $(STAMP) $(MANIFEST)
	$(BIN)/python -c "from orchestration.pipeline import run_dbt; run_dbt(['docs', 'generate'])"
	@echo "open dbt_project/target/index.html, or: cd dbt_project && ../$(BIN)/dbt docs serve --profiles-dir ."

clean:
	-$(BIN)/billing db down
	rm -rf $(VENV) dbt_project/target dbt_project/logs

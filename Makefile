# One command each: `make demo` and `make test` set up everything they need on a machine
# with only Python 3.11 (virtualenv, install, warehouse, dbt manifest).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := dbt_project/dbt_project.yml dbt_project/profiles.yml dbt_project/selectors.yml \
	$(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f 2>/dev/null)

PEER := .billing/peer/.installed
# svc-infra, the peer of bench/peer_bench.py, without its dependencies (they would pull a
# web stack we do not need) plus the few its billing module imports, apart from our venv.
PEER_PACKAGES := svc-infra==1.22.2 greenlet pyjwt cashews redis itsdangerous fastapi-users \
	email-validator dnspython makefun pwdlib argon2-cffi argon2-cffi-bindings cffi pycparser \
	bcrypt aiofiles

.PHONY: install manifest lint ruff mypy pytest test demo docs bench clean

install: $(STAMP)

# uv installs what pip would, in half the time on a new machine (no cache: 58 s with the
# bytecode compiled as pip compiles it, against pip's 110 s). It is installed into the venv
# by pip; --native-tls: the machine's certificates, which pip is given here too.
UV := $(BIN)/uv pip install --quiet --native-tls --python $(BIN)/python

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.13,<0.14'
	$(UV) --compile-bytecode -e '.[dev,spark]'
	touch $@

manifest: $(MANIFEST)

# Dagster loads the dbt project from this manifest; it is built here, never at import.
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	cd dbt_project && DBT_SEND_ANONYMOUS_USAGE_STATS=false ../$(BIN)/dbt parse --quiet \
		--profiles-dir . --project-dir .
	touch $@

lint: ruff mypy

ruff: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

mypy: $(STAMP)
	$(BIN)/mypy

$(PEER): $(STAMP)
	$(UV) --no-deps --target .billing/peer $(PEER_PACKAGES)
	touch $@

pytest: $(STAMP) $(MANIFEST) $(PEER)
	$(BIN)/pytest

# The type check runs beside the dbt manifest and the tests rather than before them: on a
# new machine (CI) it has no cache and takes a minute of one core, which the tests' two
# workers then share. Either failing fails `make test`; the tests run to the end whatever
# mypy finds.
test: ruff
	$(MAKE) --no-print-directory --keep-going -j2 mypy pytest

# Every benchmark, figures against their baselines, into bench/RESULTS.md (not part of test).
bench: $(STAMP) $(MANIFEST) $(PEER)
	$(BIN)/python -m bench.run_all

demo: $(STAMP) $(MANIFEST)
	$(BIN)/billing demo

# The dbt documentation site for finance, against the configured warehouse.
docs: $(STAMP) $(MANIFEST)
	$(BIN)/python -c "from orchestration.pipeline import run_dbt; run_dbt(['docs', 'generate'])"
	@echo "open dbt_project/target/index.html, or: cd dbt_project && ../$(BIN)/dbt docs serve --profiles-dir ."

clean:
	-$(BIN)/billing db down
	rm -rf $(VENV) dbt_project/target dbt_project/logs

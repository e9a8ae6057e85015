# Two commands on a fresh machine: `make run` (every test plan on the twin bench, with the report)
# and `make test` (the rig's own tests). Both create .venv and install the project when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Allure 3 (npm package `allure`, pinned in package.json/package-lock.json) builds the HTML report, no Java
NODE_STAMP := node_modules/.installed
NODE_FOR_TESTS := $(if $(shell command -v npm),$(NODE_STAMP))

.PHONY: run report test lint schema clean labgrid

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# labgrid (shared benches: `rig run --place`) in a virtual environment of its own: it installs a pyserial fork
LABGRID_STAMP := .venv-labgrid/.installed

$(LABGRID_STAMP): requirements-labgrid.txt
	test -x .venv-labgrid/bin/python || $(PYTHON) -m venv .venv-labgrid
	.venv-labgrid/bin/python -m pip install --quiet -r requirements-labgrid.txt
	touch $(LABGRID_STAMP)

labgrid: $(LABGRID_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The plans, then the report of that run (also when plans fail); the plans' exit status is kept.
run: $(STAMP) $(NODE_STAMP)
	@before=$$(readlink results/latest 2>/dev/null); \
	$(BIN)/rig run; status=$$?; \
	after=$$(readlink results/latest 2>/dev/null); \
	if [ -n "$$after" ] && [ "$$after" != "$$before" ]; then \
		$(BIN)/rig report "results/$$after" || { [ $$status -ne 0 ] || status=1; }; \
	else \
		echo "no new run folder in results/: no report" >&2; \
	fi; \
	exit $$status

report: $(STAMP) $(NODE_STAMP)
	$(BIN)/rig report

test: $(STAMP) $(NODE_FOR_TESTS) $(LABGRID_STAMP)
	$(BIN)/pytest -n 3 --dist loadgroup -m 'not serial'
	$(BIN)/pytest -m serial

lint: $(STAMP)
	$(BIN)/ruff check .

schema: $(STAMP)
	$(BIN)/rig schema -o benches/bench.schema.json

clean:
	rm -rf $(VENV) .venv-labgrid results node_modules

# Two commands on a fresh machine:  `make run` (the app, locally)  and  `make test` (the suite).
# Both create .venv, install requirements*.txt and Azurite (npm) first; re-runs are no-ops.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
AZURITE_DIR := tools/azurite

.PHONY: setup run test lint bench mutation lock
setup: $(VENV)/.installed $(AZURITE_DIR)/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/pip check --quiet
	touch $@

$(AZURITE_DIR)/node_modules/.installed: $(AZURITE_DIR)/package.json $(AZURITE_DIR)/package-lock.json
	cd $(AZURITE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(PY) -m tools.devhost

test: setup
	$(PY) -m ruff check --output-format concise .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

# Recompiles the locks after an edit of requirements*.in, keeping every pin that still fits (add
# --upgrade-package NAME to move one). Needs the package index; tests/test_lock.py checks the result
# offline. --strip-extras: pip's constraint files take no extras. --allow-unsafe: pip and setuptools
# are pinned too (pip-tools needs both), so the dev lock is complete. No --generate-hashes: the
# remote build and CI may fetch the same release from different mirrors, whose files need not be
# byte-identical to PyPI's; the exact versions are what makes the builds alike. No index or
# find-links lines, so the remote build uses its own index, never this machine's mirrors.
LOCK_FLAGS := --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host
lock: $(VENV)/.installed
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) -o requirements.txt requirements.in
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) -o requirements-dev.txt requirements-dev.in

# Mutation testing of the pure core (not part of `make test`): see docs/testing.md. mutmut copies the
# tree into mutants/ and keeps results there, so a re-run only tests mutants whose code changed.
mutation: setup
	$(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results

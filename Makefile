# Two commands on a fresh machine:  `make run` (the app, locally)  and  `make test` (the suite).
# Both create .venv, install requirements*.txt and Azurite (npm) first; re-runs are no-ops.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
AZURITE_DIR := tools/azurite

.PHONY: setup run test lint bench
setup: $(VENV)/.installed $(AZURITE_DIR)/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

$(AZURITE_DIR)/node_modules/.installed: $(AZURITE_DIR)/package.json $(AZURITE_DIR)/package-lock.json
	cd $(AZURITE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(PY) -m tools.devhost

test: setup
	$(PY) -m ruff check --output-format concise .
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

# `make serve` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install serve test bench lint clean screenshots

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# axe-core, injected by the accessibility tests into the page (npm, from package.json).
node_modules/.installed: package.json
	npm install --no-audit --no-fund --no-package-lock --silent
	touch $@

serve: install
	$(BIN)/python -m bitmail serve $(if $(CONFIG),--config $(CONFIG))

test: install node_modules/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

screenshots: install
	$(BIN)/python scripts/screenshots.py

# The pipeline alternates with the first wave's code (7c01667), which had the
# message model before issue 9: both sides' figures come from one run.
bench: install
	$(BIN)/python bench/pipeline.py --baseline 7c01667 --rounds 3 $(BENCH_ARGS)
	$(BIN)/python bench/compose.py --baseline 7c01667
	$(BIN)/python bench/providers.py
	$(BIN)/python bench/store_lookup.py
	$(BIN)/python bench/relay_vs_postfix.py
	$(BIN)/python bench/queue_scale.py
	$(BIN)/python bench/pipeline.py --store postgres --processes 1,2 --sizes 2048 --messages 4000

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) bitmail-data .pytest_cache node_modules

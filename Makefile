# ttag — the two Quick start commands: `make demo` (set up, generate a clip with the built-in synth model)
# and `make test` (set up with every test dependency, lint, run the whole suite).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
PROMPT ?= lofi hip hop with piano, 85 bpm

.PHONY: demo test lint bench clean

demo: $(VENV)/.installed-base
	$(BIN)/ttag generate "$(PROMPT)" --seed 1 -o out

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check ttag_tui runners

bench: $(VENV)/.installed-test
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e '.[test,musicgen,diffusion]'
	touch $@ $(VENV)/.installed-base

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

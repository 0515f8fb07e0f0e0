# ttag — the two Quick start commands: `make demo` (set up, generate a clip with the built-in synth model)
# and `make test` (set up with every test dependency, lint, run the whole suite).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# pip shows its own progress (what it collects, downloads and installs); `step` says what each stage is for.
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt
PROMPT ?= lofi hip hop with piano, 85 bpm
step    = @printf '\n==> %s\n' $(1)

.PHONY: demo test lint bench clean

demo: $(VENV)/.installed-base
	$(call step,'generating "$(PROMPT)" with the synth model into out/')
	$(BIN)/ttag generate "$(PROMPT)" --seed 1 -o out

# Test worker processes (pytest-xdist): many tests wait on servers, browsers and subprocesses, so 4 keep 2 cores busy.
# A file's tests stay on one worker (tests/conftest.py), so its module fixtures are made once.
WORKERS ?= 4

test: lint
	$(call step,'the test suite on $(WORKERS) workers (tests that need tmux / a sound device / Chromium / the audiocraft env / Ray skip without them)')
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

lint: $(VENV)/.installed-test
	$(call step,'lint: ruff check; ruff format --check; the import contracts of pyproject.toml; mypy (0 errors)')
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

$(VENV)/bin/python:
	$(call step,'creating $(VENV)')
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(call step,'installing ttag (editable) and its base dependencies: about 1.5 minutes and 300 MB the first time')
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(call step,'installing ttag with the musicgen and diffusion extras and the dev tools: about 4 minutes and 2 GB \
	the first time (CPU torch; transformers; diffusers; librosa; Playwright without a browser)')
	$(BIN)/python -m pip install --disable-pip-version-check --quiet --upgrade 'pip>=25.1'  # for --group
	$(PIP) -e '.[musicgen,diffusion]' --group dev
	$(call step,'compiling the numba kernels of librosa (the tests measure audio with it) into the environment once')
	$(BIN)/python tests/warm_numba_cache.py
	touch $@ $(VENV)/.installed-base

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

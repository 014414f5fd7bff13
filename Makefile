# hmt-stream: `make run` serves the configured model, `make demo` the tiny demo model, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A pinned torch: on a Linux box with a GPU, PyPI's wheel of this version is the CUDA build; on a machine that
# keeps the CPU wheel of it on disk, pip takes that one. Override for another CUDA: make run TORCH=torch==X.Y.Z
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

# make mutate: at most MUTATE_MINUTES a run (a later run goes on where it stopped), MUTATE_CHILDREN at a time.
MUTATE_MINUTES ?= 60
MUTATE_CHILDREN ?= 1

.PHONY: install run demo test test-deps lint bench mutate clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[test,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(PY) -m hmt_stream serve --config config.toml

demo: install
	$(PY) -m hmt_stream serve --config config.toml --model demo

test-deps:
	bash scripts/test-deps.sh

test: install test-deps
	$(PY) -m pytest -v -ra --durations=15 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check hmt_stream tests bench setup.py
	$(VENV)/bin/mypy hmt_stream tests bench

bench: install
	$(PY) -m bench

# Mutation testing of the core with mutmut (the [mutmut] section of setup.cfg); never part of make test.
# The score and the survivors judged harmless are kept in docs/testing.md.
mutate: install
	-timeout --signal=INT $(MUTATE_MINUTES)m $(VENV)/bin/mutmut run --max-children $(MUTATE_CHILDREN)
	$(VENV)/bin/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache mutants

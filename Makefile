# The two commands a new user needs: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP_BASE := $(VENV)/.installed-base
STAMP_TEST := $(VENV)/.installed-test
PYTEST_ARGS ?=
# Two worker processes (CI has two cores), a test file per worker at a time (its module fixtures built once);
# tests marked `wallclock` run alone (tests/conftest.py). PYTEST_WORKERS=0 runs in this process.
PYTEST_WORKERS ?= 2

.PHONY: demo test bench venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP_BASE): $(PY) setup.cfg pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(STAMP_TEST): $(PY) setup.cfg pyproject.toml
	$(PIP) install --quiet -e '.[test,dist,rl]'
	touch $@ $(STAMP_BASE)

venv: $(STAMP_BASE)

demo: $(STAMP_BASE)
	$(VENV)/bin/abrkit demo

test: $(STAMP_TEST)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP_TEST)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# xen-boot orchestrator. `make test` is what CI runs (.ci/run); `make check` lints.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: all venv test test-unit test-sandbox check dry-run measure clean

all: test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## every test tier present in tests/ (unit, sandbox)
test: venv
	$(PY) -m pytest -q tests

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-sandbox: venv
	$(PY) -m pytest -q tests/sandbox

## ruff and mypy (strict) over the package
check: venv
	$(VENV)/bin/ruff check orchestrator tests tools initramfs-hooks
	$(VENV)/bin/mypy

## what a boot would do with the shipped example, on this machine
dry-run: venv
	$(VENV)/bin/orchestrate --dry-run --units units

## start-up time and memory figures for the issue notes
measure: venv
	$(PY) tools/measure.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# xen-boot orchestrator. `make test` is what CI runs (.ci/run); `make check` lints.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
XEN    ?= 4.17
LAB    := build/lab-$(XEN)

SETUP  := tools/setup-system

.PHONY: all venv lab images bench test test-unit test-sandbox test-lab check dry-run measure \
	clean setup setup-unit setup-sandbox setup-lab

all: test

## the Debian packages of tools/system-packages: installed when root, else one line saying how
setup:
	$(SETUP) venv unit sandbox lab

setup-unit:
	$(SETUP) venv unit

setup-sandbox:
	$(SETUP) venv sandbox

setup-lab:
	$(SETUP) venv lab

$(VENV)/.installed: pyproject.toml
	$(SETUP) venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## the main job: build the images, boot the lab (real Xen under QEMU), review its console
lab: setup-lab images
	$(PY) -m tests.lab.runner --out $(LAB)
	$(VENV)/bin/orchestrate review $(LAB)/capture-ok.log --svg $(LAB)/capture-ok.svg

## orchestrate against the seeds' sequential script: same lab, same images, two boots
bench: setup-lab images
	$(PY) -m tests.lab.bench --out $(LAB)

## the dom0 and guest images from Debian's packages (needs root: chroot check)
images: setup-lab venv
	$(PY) initramfs-hooks/build.py --xen $(XEN) --out $(LAB)

## every test tier: unit, sandbox, and the lab (real Xen under QEMU, about 2 minutes)
test: setup venv
	$(PY) -m pytest -q tests

test-unit: setup-unit venv
	$(PY) -m pytest -q tests/unit

test-sandbox: setup-sandbox venv
	$(PY) -m pytest -q tests/sandbox

test-lab: setup-lab venv
	$(PY) -m pytest -q tests/lab

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

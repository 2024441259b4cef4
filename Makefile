# scipion-em-deepemhancer: engine + Scipion 3 plugin.
#
# On a fresh machine (Python >= 3.10 with venv and tkinter; Debian: python3-venv python3-tk; plus xvfb for the GUI
# test) two commands set everything up:
#
#   make demo   Scipion venv (.venv) + headless Scipion home (.scipion) + the plugin's install hook (managed engine
#               env under .scipion/software/em), then a real Scipion project on the bundled example map
#               (the EMD-0093 example) -> demo-output/: output, confidence, figure, evaluation report
#   make test   the whole suite: engine tests (pytest, in the managed env) then the plugin tests (pyworkflow runner)
#
# Other targets: venv, install, engine-test-deps, test-engine, test-plugin, clean.
# Overrides: PYTHON (interpreter for the venvs), VENV, SCIPION_HOME.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= $(CURDIR)/.venv
SCIPION_HOME ?= $(CURDIR)/.scipion
DEMO_OUTPUT ?= $(CURDIR)/demo-output

ENGINE_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' deepemhancer/__init__.py)
EM_ROOT := $(SCIPION_HOME)/software/em
ENGINE_ENV := $(EM_ROOT)/deepemhancer-$(ENGINE_VERSION)
ENGINE_PY := $(ENGINE_ENV)/venv/bin/python
PLUGIN_TESTS := test_install test_form_gui test_protocol_postprocess test_template_viewer test_beyond

# Headless Scipion without the launcher (see README): these are what `scipion3` would export.
export SCIPION_HOME
export SCIPION_DOMAIN := pwem
export SCIPION_USER_DATA := $(SCIPION_HOME)/userdata
export SCIPION_TESTS := $(SCIPION_HOME)/data/tests
export SCIPION_TEST_NOSYNC := 1
export SCIPION_NOTIFY := False
export MPLBACKEND := Agg
export EM_ROOT
# The managed env is a venv here; a conda-configured Scipion would make a conda env instead.
export CONDA_ACTIVATION_CMD :=
# Protocol runs start `python3` from PATH: it must be the Scipion venv's.
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
unexport PYTHONPATH DISPLAY

.PHONY: help venv install engine-test-deps test test-engine test-plugin demo clean

help:
	@sed -n '3,13p' Makefile | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------- Scipion side
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[scipion]' scipion-app
	$(VENV)/bin/python -c "import tkinter, pwem, deepemhancer_plugin" # tkinter is required by pwem
	touch $@

$(SCIPION_HOME)/config/hosts.conf: $(VENV)/.installed
	mkdir -p $(dir $@) $(SCIPION_USER_DATA) $(EM_ROOT)
	$(VENV)/bin/python -c "import pyworkflow.protocol as p; p.HostConfig.writeBasic('$@')"

venv: $(VENV)/.installed $(SCIPION_HOME)/config/hosts.conf

# ---------------------------------------------------------------- the plugin's install hook (real scipion installb)
install: venv
	cd $(SCIPION_HOME) && $(VENV)/bin/scipion installb deepemhancer deepemhancerModels

# The tests compare the OpenVINO runtime with Keras and train small models: they add the Keras backends (torch, and
# TensorFlow through tf_keras, which writes the official checkpoints' Keras 2 format) to the lean managed env.
$(ENGINE_ENV)/test-requirements-installed.txt: | install
	$(ENGINE_PY) -m pip install pytest tf_keras gemmi matplotlib torch==2.13.0
	touch $@

engine-test-deps: install $(ENGINE_ENV)/test-requirements-installed.txt

# ---------------------------------------------------------------- tests and demo
test-engine: engine-test-deps
	KERAS_BACKEND=torch $(ENGINE_PY) -m pytest -q tests

test-plugin: engine-test-deps
	@command -v Xvfb >/dev/null || echo "NOTE: Xvfb not found: the Tk form tests will be skipped (apt-get install xvfb)"
	cd $(SCIPION_HOME) && failed=""; \
	for module in $(PLUGIN_TESTS); do \
	  echo "=== deepemhancer_plugin.tests.$$module"; \
	  python -m pyworkflow.apps.pw_run_tests deepemhancer_plugin.tests.$$module || failed="$$failed $$module"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED plugin test modules:$$failed"; exit 1; fi; \
	echo "All plugin test modules passed."

# Both halves always run; the target fails if either failed.
test:
	@status=0; \
	$(MAKE) --no-print-directory test-engine || status=1; \
	$(MAKE) --no-print-directory test-plugin || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see above)"; else echo "make test: all passed"; fi; \
	exit $$status

demo: install
	cd $(SCIPION_HOME) && python -m deepemhancer_plugin.demo --output $(DEMO_OUTPUT)

clean:
	rm -rf $(DEMO_OUTPUT) $(SCIPION_USER_DATA)/projects

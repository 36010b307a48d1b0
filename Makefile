# cvserve's front door. `make serve` sets everything up and serves the default models;
# `make test` runs the whole test suite (what CI runs).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cvserve-installed
VERSION ?=
CONFIG ?=

# The two default models: config file -> checkpoint it writes.
CLASSIFIER_CKPT := checkpoints/digit_classifier/1.0/model.pt
SEGMENTER_CKPT := checkpoints/digit_segmenter/1.0/model.pt

.PHONY: install train archive serve stop test test-unit test-integration bench eval-pipeline demo \
	install-browser \
	lint format clean help

help:
	@echo "make serve   set up, train and archive if needed, start TorchServe with the default models"
	@echo "make test    run the whole test suite"
	@echo "make install | train [CONFIG=... VERSION=...] | archive [VERSION=...] | stop | demo"
	@echo "make bench | eval-pipeline | install-browser | lint | format | clean"

install: $(STAMP)

# Re-runs only when the requirements change: a second `make install` is a no-op.
$(STAMP): requirements.txt pyproject.toml tools/check_java.sh
	@bash tools/check_java.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

$(CLASSIFIER_CKPT): | $(STAMP)
	$(PY) -m training.train training/configs/digits_tinyvgg.yaml

$(SEGMENTER_CKPT): | $(STAMP)
	$(PY) -m training.train training/configs/scenes_unet.yaml

# `make train` trains the two defaults; `make train CONFIG=training/configs/x.yaml VERSION=2.0`
# trains any experiment (VERSION overrides the card's version).
train: $(STAMP)
ifeq ($(CONFIG),)
	$(MAKE) $(CLASSIFIER_CKPT) $(SEGMENTER_CKPT)
else
	$(PY) -m training.train $(CONFIG) $(if $(VERSION),version=$(VERSION))
endif

archive: $(STAMP) $(CLASSIFIER_CKPT) $(SEGMENTER_CKPT)
	$(PY) -m tools.archive $(if $(VERSION),--version $(VERSION))

serve: archive
	$(PY) -m tools.serve start

stop: $(STAMP)
	$(PY) -m tools.serve stop

test: $(STAMP)
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration tests/robustness

# Scores the served pipeline on held-out digit pages (and issue 15's table); needs `make serve`.
eval-pipeline: $(STAMP)
	$(PY) -m tools.eval_pipeline --issue

# Benchmarks against the in-process limit, a Flask server and LitServe.
bench: archive
	$(PY) -m tools.bench

DEMO_PORT ?= 8090
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The demo page on http://127.0.0.1:$(DEMO_PORT)/ (starts TorchServe first unless it is running).
demo: serve
	$(PY) -m tools.demo --port $(DEMO_PORT)

# Debian's chromium + chromium-driver, for tests/integration/test_demo_browser.py (skipped,
# with this hint, where they are missing). Selenium itself comes with `make install`.
install-browser: $(STAMP)
	$(SUDO) apt-get install -y chromium chromium-driver || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf model_store/*.mar model_store/*.war logs .pytest_cache .ruff_cache

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

.PHONY: install install-wandb install-yolo train ship-defaults archive serve stop test test-unit test-integration bench eval-pipeline demo \
	install-browser tensorboard lint format clean help image cluster-demo install-haproxy k8s-render

help:
	@echo "make serve   set up, archive the shipped default models (defaults/), start TorchServe"
	@echo "make test    run the whole test suite"
	@echo "make install | train [CONFIG=... VERSION=...] | ship-defaults | archive [VERSION=...] | stop | demo"
	@echo "make tensorboard [LOGDIR=...] | install-wandb | install-yolo | bench | eval-pipeline | install-browser | lint | format | clean"
	@echo "make image [IMAGE=...] | k8s-render [OVERLAY=...] | cluster-demo | install-haproxy"

install: $(STAMP)

# Weights & Biases is an optional extra (`tracking.wandb: true`); `make test` installs it to
# test the offline W&B run.
WANDB_STAMP := $(VENV)/.cvserve-wandb-installed
install-wandb: $(WANDB_STAMP)

$(WANDB_STAMP): requirements-wandb.txt | $(STAMP)
	$(PY) -m pip install --quiet -r requirements-wandb.txt
	@touch $@

# ultralytics (YOLO-seg) is an optional AGPL-3.0 extra for the architecture study only, never
# in the archives or the image; `make test` installs it to test training/yolo.
YOLO_STAMP := $(VENV)/.cvserve-yolo-installed
install-yolo: $(YOLO_STAMP)

$(YOLO_STAMP): requirements-yolo.txt | $(STAMP)
	$(PY) -m pip install --quiet -r requirements-yolo.txt
	@touch $@

PATCH_SOURCES := $(shell find frontend_patch/src -name '*.java' 2>/dev/null)

# Re-runs only when the requirements or the frontend patch change: a second `make install` is
# a no-op. The frontend patch (frontend_patch/README.md) is compiled with javac and applied to
# the venv's TorchServe 0.12.0; without a JDK it warns and TorchServe runs unpatched. The
# venv's activate script points TorchServe at ./config.properties (TS_CONFIG_FILE), so
# `make archive && torchserve --start` works from the repo root.
$(STAMP): requirements.txt pyproject.toml tools/check_java.sh tools/frontend_patch.py $(PATCH_SOURCES)
	@bash tools/check_java.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m tools.frontend_patch apply
	$(PY) -m tools.venv_hook install
	@touch $@

# The two defaults ship trained in defaults/ (defaults/README.md says how they were made): a
# first `make serve` copies them instead of training for an hour on 2 cores. A checkpoint
# already in checkpoints/ (yours, retrained) is never overwritten.
DEFAULTS := defaults
SHIPPED := model.pt report.json config.yaml

checkpoints/%/1.0/model.pt: | $(STAMP)
	@mkdir -p $(@D)
	cp $(addprefix $(DEFAULTS)/$*/1.0/,$(SHIPPED)) $(@D)/

# `make train` retrains the two defaults from their configs into checkpoints/;
# `make train CONFIG=training/configs/x.yaml VERSION=2.0` trains any experiment (VERSION
# overrides the card's version).
train: $(STAMP)
ifeq ($(CONFIG),)
	$(PY) -m training.train training/configs/digits_tinyvgg.yaml
	$(PY) -m training.train training/configs/scenes_unet.yaml
else
	$(PY) -m training.train $(CONFIG) $(if $(VERSION),version=$(VERSION))
endif

# After `make train` and a look at the floors: ship the retrained defaults (then commit them;
# tests/unit/test_defaults.py checks them).
ship-defaults:
	@for name in digit_classifier digit_segmenter; do \
		mkdir -p $(DEFAULTS)/$$name/1.0 && \
		cp $(addprefix checkpoints/$$name/1.0/,$(SHIPPED)) $(DEFAULTS)/$$name/1.0/ || exit 1; \
	done

archive: $(STAMP) $(CLASSIFIER_CKPT) $(SEGMENTER_CKPT)
	$(PY) -m tools.archive $(if $(VERSION),--version $(VERSION))

serve: archive
	$(PY) -m tools.serve start

stop: $(STAMP)
	$(PY) -m tools.serve stop

test: $(STAMP) $(WANDB_STAMP) $(YOLO_STAMP)
	$(PY) -m pytest

test-unit: $(STAMP) $(WANDB_STAMP) $(YOLO_STAMP)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration tests/robustness

# Scores the served pipeline on held-out digit pages (and issue 15's table); needs `make serve`.
eval-pipeline: $(STAMP)
	$(PY) -m tools.eval_pipeline --issue

# Benchmarks against the in-process limit, a Flask server and LitServe.
# It waits up to 20 min for the load that installing and archiving leave to settle, so the
# run counts as idle (tools/bench/machine.py); a run that starts busy is not published.
bench: archive
	$(PY) -m tools.bench --wait-idle 1200

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

# --- Beyond one machine (deploy/README.md) ---------------------------------------------------
IMAGE ?= cvserve:1.0
OVERLAY ?= base
# The serving image (needs a container engine; the archives of `make archive` are copied in).
image: archive
	docker build -f deploy/Dockerfile -t $(IMAGE) .

# The Kubernetes objects of one overlay (base, gpu, kserve, prometheus-operator, queue-latency).
k8s-render:
	kubectl kustomize deploy/k8s/$(if $(filter base,$(OVERLAY)),base,overlays/$(OVERLAY))

# Debian's HAProxy, the rehearsal's load balancer (tests/integration/test_cluster_rehearsal.py
# is skipped, with this hint, where it is missing).
install-haproxy:
	command -v haproxy >/dev/null || $(SUDO) apt-get install -y haproxy || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y haproxy)

# 2 replicas of the image's entrypoint behind HAProxy: spread, pipeline, 1 vs 2 replicas,
# SIGKILL under load, rolling update to 2.0 under load (tools/cluster_demo.py).
cluster-demo: archive install-haproxy
	$(PY) -m tools.cluster_demo

TB_PORT ?= 6006
LOGDIR ?=
COMMA := ,
# TensorBoard on http://127.0.0.1:$(TB_PORT)/ (loopback only) for every training run under
# checkpoints/ and every study under studies/; LOGDIR=studies/<study> shows one folder.
tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard $(if $(LOGDIR),--logdir $(LOGDIR),--logdir_spec \
		checkpoints:checkpoints$(COMMA)studies:studies) --host 127.0.0.1 --port $(TB_PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf model_store/*.mar model_store/*.war logs .pytest_cache .ruff_cache

# Two set-up commands (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo
DEMO_STEPS ?= 12000

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Train the default preset (sngan, class-conditional on shapes) at 16 px and width 32 for a CPU-sized run:
# classes through D2D-CE (loss.d2d_ce.weight=1) instead of the projection D, 1 D step per G step, batch 32,
# constant lr 1e-3 (G) / 2e-3 (D), EMA of G, 12000 steps; about 40 minutes on 2 AVX2-only cores (benchmarks/RESULTS.md, run
# K1). Replaces $(DEMO_OUT); then samples 4 images per class and writes the report.
demo: install
	$(BIN)/cgantool train --preset sngan --data shapes:16 --steps $(DEMO_STEPS) --out $(DEMO_OUT) --force \
		--set model.g_channels=32 --set model.d_channels=32 --set loss.d2d_ce.weight=1 \
		--set train.d_steps_per_g_step=1 --set train.batch_size=32 --set optim.lr_g=1e-3 --set optim.lr_d=2e-3 \
		--set optim.lr_decay=none --set train.ema_decay=0.999 --set train.ema_start_step=250 \
		--set train.sample_every=1000 --set train.checkpoint_every=1000 --set train.log_every=50
	$(BIN)/cgantool sample $(DEMO_OUT)/checkpoints/last.safetensors --per-class 4 --out $(DEMO_OUT)/demo-samples --force
	$(BIN)/cgantool report $(DEMO_OUT)
	@echo ""
	@echo "Run directory:   $(DEMO_OUT)"
	@echo "Checkpoint:      $(DEMO_OUT)/checkpoints/last.safetensors"
	@echo "Training grids:  $(DEMO_OUT)/samples/"
	@echo "Sample grid:     $(DEMO_OUT)/demo-samples/grid.png"
	@echo "Metrics:         $(DEMO_OUT)/metrics.jsonl"
	@echo "Report:          $(DEMO_OUT)/report.html"

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info

# Two set-up commands (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo
DEMO_STEPS ?= 3000

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

# Train the default preset (sngan, class-conditional on shapes) at 16 px and reduced width for a CPU-sized
# run (about 9 minutes on 2 idle AVX-512 cores, about 50 on 2 AVX2-only cores; replaces $(DEMO_OUT)), then sample 4 images per class and write the report.
demo: install
	$(BIN)/cgantool train --preset sngan --data shapes:16 --steps $(DEMO_STEPS) --out $(DEMO_OUT) --force \
		--set model.g_channels=64 --set model.d_channels=64 --set train.d_steps_per_g_step=2 \
		--set optim.lr_decay=none --set train.sample_every=500 --set train.checkpoint_every=500 --set train.log_every=50
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

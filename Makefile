# Quick start:  make train   (main job: train on the default scenario, then compare with the heuristics)
#               make test    (the test suite)
# Both create .venv on first use: CPU torch 2.13.0 first (this keeps pip from pulling a
# multi-GB CUDA build for the project's open torch range), then the project with its dev extra.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: train test bench paper clean-venv

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

train: $(BIN)/.installed
	$(BIN)/python train.py $(ARGS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.sim_throughput
	$(BIN)/python -m benchmarks.env_step

paper: $(BIN)/.installed
	$(BIN)/python evaluate.py --scenario paper --policies baseline,pool,hierarchical

clean-venv:
	rm -rf $(VENV)

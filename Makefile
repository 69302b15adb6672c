# decovlm: set-up and the two main jobs. `make demo` and `make test` work on a fresh machine.
# torch is installed first with an exact pin: an unpinned torch pulls a multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0

.PHONY: install install-test demo test lint format clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .
	touch $@

# lmms-eval goes in without its declared dependencies (they would replace the CPU torch with a
# CUDA build); the `eval` extra holds the ones its import path and our adapter need.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,eval,serve,browser]"
	$(PIP) install -q --no-deps lmms-eval==0.7.3
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

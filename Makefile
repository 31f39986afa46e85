# The two quickstart commands: `make demo` and `make test`. Each one creates or refreshes the local
# virtual environment (.venv) from pyproject.toml, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Extra `key=value` overrides for the demo run, e.g. `make demo ARGS="rounds.num_rounds=2"`.
ARGS ?=

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: venv
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/spin train --config configs/default.yaml $(ARGS)

# The worker tests join a two-node Ray cluster and kill actors; a pytest process that already ran a
# local Ray runtime (store actor, trainer end-to-end tests) cannot reliably start another one with
# different settings, so they run in a process of their own.
test: venv
	$(BIN)/python -m pytest --ignore=tests/workers
	$(BIN)/python -m pytest tests/workers

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs wandb .pytest_cache .ruff_cache

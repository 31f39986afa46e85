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

# Each test folder runs in a pytest process of its own (and each distributed test file too): a
# process that already ran a local Ray runtime cannot reliably start another one with different
# settings (worker tests join a two-node cluster, distributed tests run Ray Train and ray start),
# and folders keep their own conftest modules.
TEST_GROUPS = tests/test_*.py tests/body tests/data tests/evaluation tests/experiments tests/faults \
	tests/seeds tests/smplify tests/store tests/training tests/e2e tests/workers \
	$(sort $(wildcard tests/distributed/test_*.py))

test: venv
	@set -e; for group in $(TEST_GROUPS); do echo "== $$group"; $(BIN)/python -m pytest $$group; done

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs wandb .pytest_cache .ruff_cache

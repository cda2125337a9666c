# `make demo` and `make test` set up .venv on first use (pinned versions), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out/demo

.PHONY: demo quick test lint clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench,flower]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/guardians demo --out $(OUT)

quick: $(STAMP)
	$(BIN)/guardians demo --quick --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

test: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

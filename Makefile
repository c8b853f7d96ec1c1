# Two commands set everything up on a fresh machine:
#   make demo   runs the DeDUCE protocol on the shipped demo classifier (about 10 min, 2 cores)
#   make test   runs the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: setup demo test lint bench
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxcf explain explain/deduce/configs/demo.py --workdir workdir/demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m benchmarks.pixel_search

# Two commands set everything up on a fresh machine:
#   make demo   runs the DeDUCE protocol on the shipped demo classifier (about 10 min, 2 cores)
#   make test   runs the test suite
# and one builds the documentation site into site/:
#   make docs   mkdocs build --strict (installs the docs extra on first use)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

.PHONY: setup demo test lint bench docs
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxcf explain explain/deduce/configs/demo.py --workdir workdir/demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

bench: $(STAMP)
	$(VENV)/bin/jaxcf bench pixel_search

# Strict: a page missing from the nav, a broken link or anchor, or a docstring cross-reference
# that does not resolve fails the build. NO_MKDOCS_2_WARNING silences mkdocs-material's banner
# about its own end of life, which is no warning about these pages.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

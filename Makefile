# Two commands set everything up on a fresh machine:
#   make demo   runs the DeDUCE protocol on the shipped demo classifier (about 10 min, 2 cores)
#   make test   runs the test suite (installing the test extras and Chromium on first use)
# and one builds the documentation site into site/:
#   make docs   mkdocs build --strict (installs the docs extra on first use)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
TEST_STAMP := $(VENV)/.installed-test
# What the test suite exercises beyond the core: the PyTorch and DiCE peers, the HTML report in
# a real browser (Playwright driving the system's Chromium), Equinox models and Parquet tables.
# Without any of them the tests that need it skip.
TEST_EXTRAS := dev,torch,dice,browser,equinox,parquet

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[$(TEST_EXTRAS)]'
	@# The browser tests drive the distribution's Chromium (never `playwright install`): added
	@# with apt-get when missing and run as root; otherwise those tests skip.
	@command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "chromium not installed (apt-get install chromium): the browser tests will skip"
	touch $(TEST_STAMP)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

.PHONY: setup demo test lint bench docs
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxcf explain explain/deduce/configs/demo.py --workdir workdir/demo

test: $(TEST_STAMP)
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

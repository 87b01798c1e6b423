# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint unit setup-docker setup-browser bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

# Run the wine-quality example end to end and say where its results are.
demo: $(STAMP)
	$(VENV)/bin/mlpipe run notebooks/wine_quality.ipynb

setup-docker:
	bash scripts/setup-docker.sh

setup-browser: $(STAMP)
	bash scripts/setup-browser.sh $(VENV)

lint: $(STAMP)
	$(VENV)/bin/ruff check mlpipe_jupyter tests bench scripts

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

# The whole suite: unit, real kernels, a real Docker engine, real Chromium. Nothing is skipped.
test: $(STAMP) setup-docker setup-browser lint
	$(PY) -m pytest -q -p no:cacheprovider -o addopts="" tests

bench: $(STAMP)
	$(PY) bench/run.py

bench-smoke: $(STAMP)
	$(PY) bench/run.py --smoke

clean:
	rm -rf $(VENV) .mlpipe notebooks/.mlpipe

# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint unit setup-docker setup-browser labextension bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

# Run the wine-quality example end to end and say where its results are.
demo: $(STAMP)
	$(VENV)/bin/mlpipe run notebooks/wine_quality.ipynb

# The JupyterLab extension (opens a step's executed notebook from the widget): built with the
# npm registry and the venv's jupyter-builder, then reinstalled so the venv's share/ holds it.
LABEXT := mlpipe_jupyter/labextension/package.json
$(LABEXT): $(STAMP) labextension/package.json labextension/package-lock.json labextension/tsconfig.json labextension/src/index.ts
	cd labextension && npm install --no-save --no-audit --no-fund --loglevel=error && PATH="$(abspath $(VENV))/bin:$$PATH" npm run build --silent
	$(VENV)/bin/pip install -q --no-deps -e .

labextension: $(LABEXT)

setup-docker:
	bash scripts/setup-docker.sh

setup-browser: $(STAMP)
	bash scripts/setup-browser.sh $(VENV)

lint: $(STAMP)
	$(VENV)/bin/ruff check mlpipe_jupyter tests bench scripts

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

# The whole suite: unit, real kernels, a real Docker engine, real Chromium. Nothing is skipped.
test: $(STAMP) $(LABEXT) setup-docker setup-browser lint
	$(PY) -m pytest -q -p no:cacheprovider -o addopts="" tests

bench: $(STAMP)
	$(PY) bench/run.py

bench-smoke: $(STAMP)
	$(PY) bench/run.py --smoke

clean:
	rm -rf $(VENV) .mlpipe notebooks/.mlpipe labextension/node_modules labextension/lib mlpipe_jupyter/labextension

# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint unit setup-docker setup-browser labextension bench bench-smoke clean upgrade

# The tested versions (pip freeze of a venv with '.[test]', pip and the build backend included;
# pyproject.toml keeps ranges). `make upgrade` rewrites it.
LOCK := requirements/constraints.txt
# the built JupyterLab extension (see its rule below)
LABEXT := mlpipe_jupyter/labextension/package.json

# pip first, at its locked version (the constraint pins it), then the project from the lock;
# --build-constraint pins hatchling for the editable build too.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c $(LOCK) pip
	$(VENV)/bin/pip install -q -c $(LOCK) --build-constraint $(LOCK) -e '.[test]'
	touch $(STAMP)

# Run the wine-quality example end to end and say where its results are; the JupyterLab
# extension is built and installed first, so `jupyter lab` in the venv has all of mlpipe.
demo: $(STAMP) $(LABEXT)
	$(VENV)/bin/mlpipe run notebooks/wine_quality.ipynb

# The JupyterLab extension (opens a step's executed notebook from the widget): built with the
# npm registry (`npm ci`: exactly package-lock.json) and the venv's jupyter-builder, then the
# project is reinstalled: hatchling's editable install copies shared-data (the built extension
# into share/jupyter/labextensions/mlpipe-jupyter, the server extension's config into
# etc/jupyter) at install time, so a new build needs a new install.
$(LABEXT): $(STAMP) labextension/package.json labextension/package-lock.json labextension/tsconfig.json labextension/src/index.ts
	cd labextension && npm ci --no-audit --no-fund --loglevel=error && PATH="$(abspath $(VENV))/bin:$$PATH" npm run build --silent
	$(VENV)/bin/pip install -q --no-deps --build-constraint $(LOCK) -e .
	test -f $(VENV)/share/jupyter/labextensions/mlpipe-jupyter/package.json \
	  || { echo "the editable install did not put the labextension into $(VENV)/share"; exit 1; }

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

# New versions: resolve '.[test]' (and .venv-bench's Ploomber) afresh in throwaway venvs, write
# the locks, print what changed, refresh the npm lock, then rebuild the venv from the new lock
# and run the whole suite on it.
upgrade:
	PYTHON=$(PYTHON) bash scripts/upgrade-locks.sh
	rm -rf $(VENV)
	$(MAKE) test

clean:
	rm -rf $(VENV) .mlpipe notebooks/.mlpipe labextension/node_modules labextension/lib mlpipe_jupyter/labextension

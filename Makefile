# Two entry points for a fresh machine: `make run` (the whole pipeline on params/default.yaml)
# and `make test`. Both create .venv once; the stamp file makes a second call skip the install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PARAMS ?= params/default.yaml
ARGS   ?=
# JupyterLab is installed on first `make lab` (not every test machine needs it); same pin as environment.yml.
JUPYTERLAB := jupyterlab==4.6.6
# Containers usually run as root, where Jupyter refuses to start without --allow-root.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: run test test-fast lint smoke lab list bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (workbench)" >/dev/null
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m workbench run -f $(PARAMS) $(ARGS)

smoke: $(STAMP)
	$(PY) -m workbench run -f params/smoke.yaml $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

# Everything not marked slow (no papermill pipeline runs): under a minute here.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

# ruff (lint), mypy (types, lenient: see pyproject.toml) and the import-layering contracts.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

list: $(STAMP)
	$(PY) -m workbench list

# `make lab ARGS="--port 8890 --ip 0.0.0.0"`: extra arguments go to `jupyter lab` (later ones win).
lab: $(STAMP)
	$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install --quiet $(JUPYTERLAB)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir . $(ROOT_FLAG) $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_inference.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_serve.py

clean-venv:
	rm -rf $(VENV)

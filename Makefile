# Two entry points for a fresh machine: `make run` (the whole pipeline on params/default.yaml)
# and `make test`. Both create .venv once; the stamp file makes a second call skip the install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PARAMS ?= params/default.yaml
ARGS   ?=
TEST_WORKERS ?= 2
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

# On TEST_WORKERS processes (pytest-xdist); tests that read the shared smoke run stay on one of them.
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=20 $(ARGS)

# Everything not marked slow (no papermill pipeline runs): under a minute here.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

# ruff (lint and format), mypy (types, lenient: see pyproject.toml) and the import-layering contracts.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
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

# ---- Hailo install profiles (issue 12): stages 06-08 on the Hailo machines, no torch, numpy<2 ---------
# install-pi : Raspberry Pi 5 (Raspberry Pi OS Bookworm, system Python 3.11, HailoRT from `apt install
#              hailo-all`). A venv over the system Python with --system-site-packages, so the system's
#              hailo_platform stays importable; requirements-pi.txt pins numpy 1.26.4 (HailoRT needs <2).
# install-dfc: x86_64 with the Dataflow Compiler wheel already installed in the active Python 3.10
#              environment: installs requirements-dfc.txt into that same environment (numpy left to
#              the DFC's own pin). Neither installs torch: stages 01-02 run on the workbench machine.
PI_PYTHON  ?= /usr/bin/python3
PI_VENV    ?= .venv-pi
DFC_PYTHON ?= python3
PROFILE_TESTS ?= tests/unit/hailo tests/unit/evaluate tests/unit/reliability tests/notebooks/test_hailo_notebook.py tests/e2e/test_profile_no_torch.py

.PHONY: install-pi install-dfc test-profiles

install-pi:
	test -x $(PI_VENV)/bin/python || $(PI_PYTHON) -m venv --system-site-packages $(PI_VENV)
	$(PI_VENV)/bin/python -m pip install --quiet -r requirements-pi.txt
	$(PI_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(PI_VENV)/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (workbench)" >/dev/null
	$(PI_VENV)/bin/python -m workbench doctor || echo "install-pi: installed; doctor reports FAIL lines above"

install-dfc:
	$(DFC_PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 10) else "install-dfc: the DFC wheels run on Python <= 3.10 and the workbench on >= 3.10, but %s is %d.%d: activate the DFC environment or pass DFC_PYTHON=..." % (sys.executable, *v))'
	$(DFC_PYTHON) -m pip install --quiet -r requirements-dfc.txt
	$(DFC_PYTHON) -m pip install --quiet --no-deps -e .
	$(DFC_PYTHON) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (workbench)" >/dev/null
	$(DFC_PYTHON) -m workbench doctor --no-device || echo "install-dfc: installed; doctor reports FAIL lines above"

# Both profiles on this machine, next to the default environment (run by .ci/run after `make test`).
test-profiles: $(STAMP)
	PROFILE_TESTS="$(PROFILE_TESTS)" bash .ci/profiles.sh

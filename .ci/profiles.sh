#!/usr/bin/env bash
# The two Hailo install profiles, proven on this machine (issue 12; `make test-profiles`).
#   DFC profile: Python 3.10 (pyenv) in a venv that stands in for the DFC environment: numpy 1.23.3 is
#                installed first, as hailo-dataflow-compiler 3.30.0 pins it, then `make install-dfc`.
#   Pi profile:  Debian's system Python 3.11 (the same Python as Raspberry Pi OS Bookworm), then
#                `make install-pi` (venv with --system-site-packages).
# Neither has torch. A parent run with stages 01-05 comes from the default environment; each profile
# runs the Hailo, evaluation and reliability tests and `--from 06` / `--from 07` runs on it with the fake
# DFC and HailoRT (tests/e2e/test_profile_no_torch.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY310=${PY310:-/root/.pyenv/versions/3.10.13/bin/python}
PY311=${PY311:-/usr/bin/python3.11}
OUT=${PROFILE_DIR:-build/profiles}
TESTS=${PROFILE_TESTS:-tests/unit/hailo tests/unit/evaluate tests/unit/reliability tests/notebooks/test_hailo_notebook.py tests/e2e/test_profile_no_torch.py}

need() {  # interpreter, expected major.minor
  if [ ! -x "$1" ]; then echo "ERROR: Python $2 not found at $1 (needed for the Hailo profiles; set PY${2/./}=...)" >&2; exit 1; fi
  local got; got=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$got" != "$2" ]; then echo "ERROR: $1 is Python $got, expected $2" >&2; exit 1; fi
}
need "$PY310" 3.10
need "$PY311" 3.11
rm -rf "$OUT"
mkdir -p "$OUT"
t0=$SECONDS

# The parent run and the two installs are independent, and so are the two test sessions: each pair runs
# side by side (two cores here), with its output kept in a log that is printed whole afterwards.
echo "== parent run: stages 01-05 in the default environment (torch), in the background"
# (the quantization comparison and sensitivity passes of stage 05 are skipped: stages 06-08 do not read them)
.venv/bin/python -m workbench run -f params/smoke.yaml -p run_label profile-parent -p quant_compare false \
  -p quant_sensitivity false --to 05 --outputs "$OUT/outputs" --no-progress >"$OUT/parent.log" 2>&1 &
parent_pid=$!

echo "== DFC profile: Python 3.10, numpy 1.23.3 (the DFC 3.30 wheel's pin), make install-dfc"
"$PY310" -m venv "$OUT/dfc-env"
"$OUT/dfc-env/bin/python" -m pip install --quiet --upgrade pip
"$OUT/dfc-env/bin/python" -m pip install --quiet numpy==1.23.3
make --no-print-directory install-dfc DFC_PYTHON="$OUT/dfc-env/bin/python"

echo "== Pi profile: system Python 3.11, make install-pi"
make --no-print-directory install-pi PI_PYTHON="$PY311" PI_VENV="$OUT/pi-env"

if ! wait "$parent_pid"; then cat "$OUT/parent.log"; echo "ERROR: the parent run failed" >&2; exit 1; fi
tail -n 3 "$OUT/parent.log"
PARENT=$(ls -d "$OUT"/outputs/*/ | head -n 1)

pids=()
for env in dfc-env pi-env; do
  py="$OUT/$env/bin/python"
  "$py" -m pip install --quiet pytest==9.2.0
  "$py" - <<'PY'
import importlib.util, sys
import numpy
assert int(numpy.__version__.split(".")[0]) < 2, f"numpy {numpy.__version__}: the Hailo profiles need numpy<2"
assert importlib.util.find_spec("torch") is None, "torch is installed in a Hailo profile"
print(f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, no torch")
PY
  echo "== $env: tests (in the background, log $OUT/$env-tests.log)"
  # shellcheck disable=SC2086
  WORKBENCH_NO_TORCH=1 WORKBENCH_PARENT_RUN="$PARENT" "$py" -m pytest -p no:cacheprovider -q \
    --basetemp "$OUT/$env-pytest" $TESTS >"$OUT/$env-tests.log" 2>&1 &
  pids+=($!)
done
# Passing sessions first (their summary), failing ones last and whole, so the end of the log shows the failure.
failed=()
for i in 0 1; do
  env=$([ "$i" = 0 ] && echo dfc-env || echo pi-env)
  if wait "${pids[$i]}"; then
    echo "== $env: tests passed"
    tail -n 25 "$OUT/$env-tests.log"
  else
    failed+=("$env")
  fi
done
for env in "${failed[@]}"; do
  echo "== $env: tests FAILED"
  cat "$OUT/$env-tests.log"
done
echo "profiles done in $((SECONDS - t0)) s; failed: ${failed[*]:-none}"
[ "${#failed[@]}" = 0 ]

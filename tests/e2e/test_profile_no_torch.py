"""Stages 06-09 on a run directory made elsewhere, without torch: what the Hailo machines do.

A parent run with stages 01-05 (they need torch) comes from ``WORKBENCH_PARENT_RUN`` (``make
test-profiles`` makes it with the default environment and runs this module in the Python 3.10 and
3.11 no-torch environments); where it is not set and torch is installed, the suite's smoke run is it.
Then ``workbench run --from 06 --parent R`` and ``--from 07 --parent <that run>`` run through the CLI
in a fresh interpreter, with the fake DFC and HailoRT (tests/fakes) on the path. Where torch is
installed it is blocked for these runs, so a stray ``import torch`` fails here too. Every notebook
gets one extra last cell that reports ``"torch" in sys.modules`` from its own kernel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from support.hailo import FAKES_BIN, FAKES_DIR

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MARK = "WORKBENCH_TORCH_LOADED"
PROBE = f'import sys\nprint("{MARK}", "torch" in sys.modules)'


@pytest.fixture(scope="session")
def parent_run(request) -> Path:
    ref = os.environ.get("WORKBENCH_PARENT_RUN")
    if ref:
        path = Path(ref)
        assert (path / "artifacts" / "05_calibrate_int8").is_dir(), f"{path} has no stage 05"
        return path
    if importlib.util.find_spec("torch") is None:
        pytest.fail(
            "no torch here and WORKBENCH_PARENT_RUN is not set: make the parent run (stages 01-05) with "
            "the default environment and point WORKBENCH_PARENT_RUN at it (make test-profiles does)"
        )
    return request.getfixturevalue("smoke_run").path  # the suite's one smoke run (stages 01-08)


@pytest.fixture(scope="session")
def probe_env(tmp_path_factory) -> dict:
    """Notebooks with the probe cell, fakes on PYTHONPATH and PATH, torch blocked where installed."""
    tmp = tmp_path_factory.mktemp("probe")
    nb_dir = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", nb_dir)
    for nb_path in nb_dir.glob("0[6-9]_*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(PROBE))
        nbformat.write(nb, nb_path)
    paths = [str(FAKES_DIR)]
    if importlib.util.find_spec("torch") is not None:
        block = tmp / "block"
        (block / "torch").mkdir(parents=True)
        (block / "torch" / "__init__.py").write_text(
            'raise ImportError("torch is blocked in this test: stages 06-08 must run without it")\n'
        )
        paths.insert(0, str(block))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PATH"] = os.pathsep.join([str(FAKES_BIN), env.get("PATH", "")])
    env["WORKBENCH_NOTEBOOKS"] = str(nb_dir)
    env["HAILO_FAKE_DEVICE_LOCK"] = str(tmp / "device.lock")
    return env


def _cli_run(env: dict, outputs: Path, *args: str) -> Path:
    """`workbench run ...` in a fresh interpreter; returns the new run directory. The interpreter also
    reports whether the pipeline process itself imported torch. Every call names a parent, whose
    params.yaml the run starts from (the parent may have skipped stage-05 passes that 06-08 do not read)."""
    code = (
        "import sys\nfrom workbench.cli import main\nrc = main(sys.argv[1:])\n"
        f"print('PIPELINE', '{MARK}', 'torch' in sys.modules)\nsys.exit(rc)"
    )
    before = set(outputs.iterdir()) if outputs.is_dir() else set()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "run",
            "--outputs",
            str(outputs),
            "--no-progress",
            *args,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"PIPELINE {MARK} False" in proc.stdout, proc.stdout[-2000:]
    (new,) = set(outputs.iterdir()) - before
    return new


def _probe_results(run_dir: Path) -> dict[str, str]:
    out = {}
    for nb_path in sorted((run_dir / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        out[nb_path.stem] = next((ln.split()[-1] for ln in text.splitlines() if ln.startswith(MARK)), "missing")
    return out


def _check_07(run_dir: Path) -> None:
    man = json.loads((run_dir / "manifest.json").read_text())
    backends = set(man["stages"]["07_evaluate_on_device"]["backends"])
    assert {"ort-fp32", "ort-int8-emulated", "hailo-emulator", "hailo8-device"} <= backends, backends
    assert "torch-fp32" not in backends
    cli = json.loads((run_dir / "artifacts" / "07_evaluate_on_device" / "hailortcli.json").read_text())
    # the device was released for hailortcli: both measurements ran, nothing was refused
    assert cli["errors"] == {} and cli["measure_latency"] and cli["benchmark"], cli


@pytest.fixture(scope="session")
def from_06(parent_run, probe_env, tmp_path_factory) -> Path:
    return _cli_run(probe_env, tmp_path_factory.mktemp("runs06"), "--from", "06", "--parent", str(parent_run))


def test_from_06_runs_without_torch(from_06):
    man = json.loads((from_06 / "manifest.json").read_text())
    assert man["status"] == "succeeded"
    assert man["stages"]["06_compile_hailo"]["status"] == "compiled"
    assert man["reused_from_parent"] == [
        "01_train_or_load",
        "02_export_onnx",
        "03_inspect_graph",
        "04_split_at_round",
        "05_calibrate_int8",
    ]
    assert _probe_results(from_06) == {
        "06_compile_hailo": "False",
        "07_evaluate_on_device": "False",
        "08_reliability": "False",
        "09_deploy": "False",
    }
    _check_07(from_06)
    rel = json.loads((from_06 / "artifacts" / "08_reliability" / "reliability.json").read_text())
    assert {s["backend"] for s in rel["sources"] if s["used"]} >= {"ort-fp32", "hailo8-device"}


def test_from_07_on_the_copied_run_without_torch(from_06, probe_env, tmp_path_factory):
    copy = tmp_path_factory.mktemp("copied") / from_06.name  # a run directory moved to another machine
    shutil.copytree(from_06, copy)
    run07 = _cli_run(probe_env, tmp_path_factory.mktemp("runs07"), "--from", "07", "--parent", str(copy))
    assert json.loads((run07 / "manifest.json").read_text())["status"] == "succeeded"
    assert _probe_results(run07) == {"07_evaluate_on_device": "False", "08_reliability": "False", "09_deploy": "False"}
    _check_07(run07)


def test_the_bundle_serves_stage07_answers_without_torch(from_06, probe_env):
    """The Pi's last step in this environment: `workbench serve` on stage 09's bundle (CPU INT8 path, as
    on a Pi without a Hailo-8) answers /infer with stage 07's ort-int8-emulated levels. The DFC profile
    does not install the service, and says so by skipping."""
    pytest.importorskip("fastapi", reason="the service is not installed here: make install-pi installs it")
    import io
    import urllib.request

    import numpy as np

    from support.serving import Served
    from workbench.data.windowset import WindowSet
    from workbench.runs import Run

    run = Run(from_06)
    with np.load(run.artifact("predictions_ort-int8-emulated"), allow_pickle=False) as z:
        index, levels = z["index"][:32], z["levels"][:32]
    ws, _ = WindowSet.load(run.artifact("windows"))
    body = io.BytesIO()
    np.save(body, ws.X[index], allow_pickle=False)
    server = Served(run.artifact("deploy_manifest").parent, "--backend", "ort-int8", env=probe_env).wait_ready()
    try:
        req = urllib.request.Request(
            server.url + "/infer", data=body.getvalue(), headers={"content-type": "application/octet-stream"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            got = json.loads(resp.read())
    finally:
        server.stop()
    assert got["backend"] == "ort-int8-emulated" and got["run_id"] == from_06.name
    assert np.array_equal(np.array([p["fsq_levels"] for p in got["predictions"]], dtype=np.float32), levels)

"""Notebook 06 headless: bundle-only here; 'compiled' when the fake DFC is on the kernel's path."""
from __future__ import annotations

import json
import os

import nbformat
import numpy as np
import pytest

from support.hailo import TINY, fakes_env, make_tiny_npu_onnx
from workbench.data.layout import nchw_to_nhwc
from workbench.runs import Run

NB = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks", "06_compile_hailo.ipynb")
C, S, T = TINY["C"], TINY["S"], TINY["T"]


def _run_with_04_05(tmp_path) -> Run:
    run = Run.create("nb06", root=tmp_path / "outputs")
    d04, d05 = run.stage_dir("04"), run.stage_dir("05")
    split = make_tiny_npu_onnx(d04 / "npu.onnx")
    (d04 / "split.json").write_text(json.dumps(split))
    calib = nchw_to_nhwc(np.random.default_rng(0).normal(size=(24, C, S, T)).astype(np.float32))
    np.save(d05 / "calibset_nhwc.npy", calib)
    (d05 / "calibset_nhwc.json").write_text(json.dumps({"layout": "NHWC", "shape": list(calib.shape),
                                                        "strategy": "stratified",
                                                        "normalisation": {"applied": True}}))
    return run


def _execute(run: Run, tmp_path, env=None):
    import papermill as pm
    out = tmp_path / "out06.ipynb"
    old = dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.environ["WORKBENCH_HEADLESS"] = "1"
        pm.execute_notebook(NB, str(out), parameters={"run_dir": str(run.path), "hailo_calib_batch_size": 8,
                                                      "hailo_run_emulator": False},
                            kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nbformat.read(out, as_version=4), _child_of(run)


def _child_of(run: Run) -> Run:
    """Papermill on a run that is not open for it makes a child run beside it (the run contract): the
    stage-06 artifacts are there, and the hand-made parent gains no stage 06."""
    children = [Run(d) for d in run.path.parent.iterdir()
                if d.is_dir() and d != run.path and Run(d).manifest().get("parent") == run.run_id]
    assert len(children) == 1, [c.run_id for c in children]
    assert not (run.path / "artifacts" / "06_compile_hailo").exists()
    return children[0]


def _text(nb) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") or json.dumps(o.get("data", {})))
    return "\n".join(parts)


@pytest.mark.slow
def test_headless_bundle_only(tmp_path):
    run = _run_with_04_05(tmp_path)
    nb, child = _execute(run, tmp_path)
    d06 = child.path / "artifacts" / "06_compile_hailo"
    status = json.loads((d06 / "stage_status.json").read_text())
    assert status["status"] == "bundle-only" and status["hef"] is None and status["backend"] is None
    for f in ("npu.onnx", "calibset_nhwc.npy", "model.alls", "split.json", "compile.sh", "README.txt"):
        assert (d06 / f).is_file(), f
    assert not (d06 / "model.hef").exists()
    text = _text(nb)
    assert text.count("Hailo Dataflow Compiler not installed: wrote the bundle for a DFC machine; "
                      "no HEF was built") == 1
    assert "calibset_size=24" in (d06 / "model.alls").read_text()


@pytest.mark.slow
def test_headless_compiled_with_fake_dfc(tmp_path):
    run = _run_with_04_05(tmp_path)
    _, child = _execute(run, tmp_path, env=fakes_env())
    d06 = child.path / "artifacts" / "06_compile_hailo"
    status = json.loads((d06 / "stage_status.json").read_text())
    assert status["status"] == "compiled" and status["dfc_version"] == "0.0.0+fake"
    assert (d06 / "model.hef").read_bytes()[:4] == bytes.fromhex("01484546")
    assert "Using dataset with 24 entries for calibration" in (d06 / "dfc.log").read_text()


@pytest.mark.slow
def test_stage05_remedy_reaches_the_bundle_and_the_dfc(tmp_path):
    """Issue 14: the equalized graph, the host transform and the 16-bit ONNX names picked in stage 05 go
    into the bundle, and the fake DFC gets a16_w16 lines resolved from the parsed HN."""
    from workbench.quant.remedies import fold_input_scale
    run = _run_with_04_05(tmp_path)
    d04, d05 = run.stage_dir("04"), run.stage_dir("05")
    scale = [0.25, 1.0, 0.5][:C]
    fold_input_scale(d04 / "npu.onnx", d05 / "npu_deploy.onnx", scale)
    (d05 / "quant_remedy.json").write_text(json.dumps({
        "remedy": "equalize_clip", "input_transform": {"scale": scale, "clip": [-4.0, 4.0]},
        "sixteen_bit_onnx_nodes": ["conv1", "relu1"], "sixteen_bit_inputs": ["imu"], "sixteen_bit_tail": False}))
    _, child = _execute(run, tmp_path, env=fakes_env())
    d06 = child.path / "artifacts" / "06_compile_hailo"
    assert (d06 / "npu.onnx").read_bytes() == (d05 / "npu_deploy.onnx").read_bytes()
    assert json.loads((d06 / "input_transform.json").read_text())["scale"] == scale
    assert json.loads((d06 / "sixteen_bit.json").read_text())["inputs"] == ["imu"]
    assert (d06 / "resolve16.py").is_file() and "resolve16.py" in (d06 / "compile.sh").read_text()
    resolved = (d06 / "model_resolved.alls").read_text()
    assert "quantization_param(input_layer1, precision_mode=a16_w16)" in resolved
    assert "quantization_param(conv1, precision_mode=a16_w16)" in resolved
    assert "output_layer1" not in (d06 / "model.alls").read_text()        # no 16-bit tail was picked

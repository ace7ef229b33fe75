"""Bring your own model, end to end: models the workbench did not write through every stage.

Each test trains a foreign model for a few steps on the smoke data (as its author would, with their own
code and normalisation), hands the workbench the files the author would hand over, and runs the
pipeline. The runs are kept cheap (smoke data, no quantization comparison or sensitivity pass); the
acceptance test uses params/default.yaml as the issue's command does, with the same cheapening overrides.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support import byom_models as bm
from workbench.cli import main
from workbench.config import load_params
from workbench.data.prepare import prepare_data
from workbench.data.windowset import WindowSet
from workbench.runs import Run
from workbench.runs.pipeline import run_pipeline

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CHEAP = {
    "quant_compare": False,
    "quant_sensitivity": False,
    "parity_windows": 64,
    "quant_calib_size": 32,
    "quant_eval_windows": 128,
    "latency_iterations": 20,
    "latency_warmup": 5,
    "bootstrap_samples": 50,
    "hailortcli_seconds": 1,
}


def _author(tmp_path: Path, kind: str, param_files: list) -> dict:
    data = prepare_data(load_params(param_files))
    tr = data.splits.train
    return bm.author_files(tmp_path / "author", kind, data.windows.X[tr], data.windows.y[tr])


def _test_windows(run: Run) -> tuple[np.ndarray, np.ndarray]:
    ws, split = WindowSet.load(run.artifact("windows"))
    idx = np.flatnonzero(np.asarray(split).astype(str) == "test")
    return ws.X[idx], ws.y[idx]


def _stage07_accuracy(run: Run, backend: str) -> float:
    return next(
        m["value"]
        for m in run.metrics()
        if m["stage"] == "07_evaluate_on_device" and m["name"] == "accuracy" and m["backend"] == backend
    )


def test_acceptance_cli_import_of_an_onnx_file(tmp_path):
    """`workbench run -f params/default.yaml -p mode import -p model_path <onnx> -p normalizer_path <json>`:
    every stage runs, the split is proven bit-exact, the FSQ levels come from the graph, and the ort-fp32
    accuracy equals the author's own evaluation of the same windows."""
    author = _author(tmp_path, "predecessor", [ROOT / "params" / "default.yaml"])
    out = tmp_path / "outputs"
    args = [
        "run",
        "--outputs",
        str(out),
        "-f",
        str(ROOT / "params" / "default.yaml"),
        "-p",
        "mode",
        "import",
        "-p",
        "model_path",
        str(author["onnx"]),
        "-p",
        "normalizer_path",
        str(author["normalizer"]),
        "--no-progress",
    ]
    for k, v in CHEAP.items():
        args += ["-p", k, json.dumps(v)]
    assert main(args) == 0
    run = Run(next(d for d in out.iterdir() if (d / "manifest.json").exists()))
    man = run.manifest()
    assert man["status"] == "succeeded"
    model = man["stages"]["01_train_or_load"]["stage_status"]["model"]
    assert model["origin"] == "onnx" and model["files"]["onnx"]["sha256"] == bm_sha(author["onnx"])
    split = json.loads(run.artifact("split").read_text())
    assert split["proof"]["recomposition"]["levels_bitwise_equal"]
    assert all(split["proof"]["recomposition"]["outputs_bitwise_equal"].values())
    assert split["fsq_levels"] == [8, 6, 5, 5, 4] and split["fsq_levels_source"] == "graph constants"
    assert split["npu_end_nodes"] == ["/fsq_model/fsq/Sub"]  # where the predecessor cut by hand
    X, y = _test_windows(run)
    own = bm.author_accuracy(author["model"], X, y, author["norm"])
    assert _stage07_accuracy(run, "ort-fp32") == pytest.approx(own, abs=0)
    backends = man["stages"]["07_evaluate_on_device"]["backends"]
    assert "torch-fp32" not in backends and "ort-fp32" in backends
    parity = json.loads(run.artifact("parity").read_text())["parity"]["model_dynamic.onnx"]
    assert parity["reference_backend"].startswith("ort-fp32") and parity["passed"]


def bm_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _run(tmp_path: Path, over: dict) -> Run:
    params = load_params([ROOT / "params" / "smoke.yaml"], {"mode": "import", **CHEAP, **over})
    return run_pipeline(params, root=tmp_path / "outputs", progress=False, log=lambda *_: None)


def test_vector_quantize_pytorch_model_from_its_factory(tmp_path, monkeypatch):
    """A Conv2d model with vector_quantize_pytorch.FSQ, imported as module:function + weights: the
    workbench exports it itself, so torch-fp32 exists and agrees with ort-fp32 on every FSQ code."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # the papermill kernels import the factory
    author = _author(tmp_path, "lucidrains", [ROOT / "params" / "smoke.yaml"])
    run = _run(
        tmp_path,
        {
            "model_path": "support.byom_models:build_lucidrains",
            "fsq_levels": [8, 5, 5, 5],
            "weights_path": str(author["weights"]),
            "normalizer_path": str(author["normalizer"]),
        },
    )
    man = run.manifest()
    assert man["status"] == "succeeded"
    assert {"torch-fp32", "ort-fp32", "ort-int8-emulated"} <= set(man["stages"]["07_evaluate_on_device"]["backends"])
    table = {r["backend"]: r for r in _csv(run.artifact("backend_table"))}
    assert float(table["ort-fp32"]["code_agreement"]) == 1.0  # against torch-fp32
    split = json.loads(run.artifact("split").read_text())
    assert split["fsq"]["straight_through"] and len(split["fsq"]["other_rounds"]) == 1
    X, y = _test_windows(run)
    assert _stage07_accuracy(run, "torch-fp32") == bm.author_accuracy(author["model"], X, y, author["norm"])


def test_encoder_without_class_output_runs_every_stage_that_needs_no_logits(tmp_path):
    author = _author(tmp_path, "encoder", [ROOT / "params" / "smoke.yaml"])
    run = _run(tmp_path, {"model_path": str(author["onnx"]), "model_input_layout": "NTC", "fsq_levels": [7, 5, 5, 5]})
    man = run.manifest()
    assert man["status"] == "succeeded"
    split = json.loads(run.artifact("split").read_text())
    assert split["logits_output"] is None and split["proof"]["recomposition"]["levels_bitwise_equal"]
    names = {(m["stage"], m["name"]) for m in run.metrics()}
    assert ("07_evaluate_on_device", "code_agreement") in names
    assert not any(n == "accuracy" for _, n in names)
    nb = (run.path / "notebooks" / "08_reliability.ipynb").read_text()
    assert "conformal prediction sets: skipped - the model has no class-logit output" in nb
    nb7 = (run.path / "notebooks" / "07_evaluate_on_device.ipynb").read_text()
    assert "accuracy: skipped" in nb7 and "macro_f1: skipped" in nb7


def test_round_that_is_not_fsq_stops_before_a_run_exists(tmp_path, capsys):
    author = _author(tmp_path, "rounder", [ROOT / "params" / "smoke.yaml"])
    out = tmp_path / "outputs"
    code = main(
        [
            "run",
            "--outputs",
            str(out),
            "-f",
            str(ROOT / "params" / "smoke.yaml"),
            "-p",
            "mode",
            "import",
            "-p",
            "model_path",
            str(author["onnx"]),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'/Round'" in err and "cut_tensor" in err
    assert not out.exists() or not any(out.iterdir())


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))

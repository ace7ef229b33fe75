"""Papermill smoke run of every notebook on params/smoke.yaml, then a --from rerun and a comparison.

The run is the session-scoped ``smoke_run`` fixture (tests/conftest.py): the whole suite pays for the
pipeline once, and no test writes into it (reruns are child runs).
"""

import json
from pathlib import Path

import nbformat
import pytest

from workbench.cli import main
from workbench.runs import STAGE_NAMES, Run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_every_stage_ran(smoke_run):
    man = smoke_run.manifest()
    assert man["status"] == "succeeded", man
    assert list(man["stages"]) == list(STAGE_NAMES.values())
    statuses = {k: v["status"] for k, v in man["stages"].items()}
    # without the DFC, stage 06 must say so instead of pretending to compile
    assert statuses.pop("06_compile_hailo") == "bundle-only"
    assert set(statuses.values()) == {"succeeded"}, statuses
    assert man["stages"]["07_evaluate_on_device"]["backends"] == ["ort-fp32", "ort-int8-emulated", "torch-fp32"]
    assert man["stages"]["06_compile_hailo"]["stage_status"]["hef"] is None


def test_every_notebook_executed_and_rendered(smoke_run):
    for name in STAGE_NAMES.values():
        nb = nbformat.read(str(smoke_run.path / "notebooks" / f"{name}.ipynb"), as_version=4)
        errors = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.get("output_type") == "error"
        ]
        assert not errors, (name, errors)
        for suffix in ("", ".results"):
            html = (smoke_run.path / "html" / f"{name}{suffix}.html").read_text()
            assert "<img" in html or name in ("06_compile_hailo", "09_deploy"), f"{name}{suffix}.html has no figure"


@pytest.mark.parametrize(
    "artifact",
    [
        "checkpoint",
        "windows",
        "model_onnx",
        "npu_onnx",
        "host_onnx",
        "split",
        "calibset",
        "calibset_info",
        "npu_int8_onnx",
        "quant_comparison",
        "model_alls",
        "compile_sh",
        "backend_table",
        "latency_table",
        "reliability",
    ],
)
def test_artifact_contract(smoke_run, artifact):
    assert smoke_run.artifact(artifact).stat().st_size > 0


def test_no_hef_claimed_without_compiler(smoke_run):
    assert not smoke_run.artifact("hef", must_exist=False).exists()
    backends = {m["backend"] for m in smoke_run.metrics()}
    assert "hailo8-device" not in backends and "hailo-emulator" not in backends
    assert {"torch-fp32", "ort-fp32", "ort-int8-emulated"} <= backends


def test_metrics_are_labelled(smoke_run):
    metrics = smoke_run.metrics()
    assert metrics and all(m["backend"] and m["stage"] and m["name"] for m in metrics)
    acc = {m["backend"] for m in metrics if m["stage"] == "07_evaluate_on_device" and m["name"] == "accuracy"}
    assert {"torch-fp32", "ort-fp32", "ort-int8-emulated"} <= acc


def test_index_page(smoke_run):
    index = (smoke_run.path / "html" / "index.html").read_text()
    assert "synthetic data" in index and "Report card" in index and "ort-int8-emulated" in index
    assert "data:image/png;base64," in index
    for name in STAGE_NAMES.values():
        assert f"{name}.html" in index and f"{name}.results.html" in index


def test_rerun_from_stage_05_and_compare(smoke_run, tmp_path, capfd):
    """Also the terminal of a run whose output is not a TTY (here captured, as in a log file): whole
    progress lines per stage, no carriage-return fragments, no kernel TCP warning."""
    root = smoke_run.path.parent
    before = set(root.iterdir())  # the shared smoke run has other children made by other tests
    code = main(
        [
            "run",
            "--outputs",
            str(root),
            "-f",
            str(ROOT / "params" / "smoke.yaml"),
            "-p",
            "quant_calib_strategy",
            "random_windows",
            "--from",
            "05",
            "--parent",
            smoke_run.run_id,
        ]
    )
    assert code == 0
    terminal = capfd.readouterr()
    progress = [ln for ln in terminal.err.splitlines() if ln.startswith("[0")]
    assert {ln.split()[0] for ln in progress} == {"[05]", "[06]", "[07]", "[08]", "[09]"}, terminal.err[-2000:]
    assert all("cell" in ln for ln in progress), progress
    assert any("100%" in ln for ln in progress if ln.startswith("[05]")), progress
    assert "\r" not in terminal.err and "\x1b[" not in terminal.err
    assert "without encryption" not in terminal.err + terminal.out
    (new,) = set(root.iterdir()) - before
    child = Run(new)
    assert child.manifest().get("parent") == smoke_run.run_id
    man = child.manifest()
    assert man["reused_from_parent"] == [STAGE_NAMES[s] for s in ("01", "02", "03", "04")]
    assert json.loads(child.artifact("calibset_info").read_text())["strategy"] == "random_windows"
    assert main(["compare", "--outputs", str(root), smoke_run.run_id, child.run_id]) == 0
    out = capfd.readouterr().out
    cmp_dir = Path(out.strip().split("comparison written: ")[1]).parent
    assert "quant_calib_strategy" in (cmp_dir / "params_diff.csv").read_text()
    assert (cmp_dir / "compare_runs.html").exists()


@pytest.mark.skipif(
    __import__("workbench.runs.index_page", fromlist=["find_chromium"]).find_chromium() is None,
    reason="chromium not installed (apt-get install chromium)",
)
def test_index_renders_in_headless_chromium(smoke_run, tmp_path):
    from workbench.runs.index_page import screenshot_index

    r = screenshot_index(smoke_run, tmp_path / "index.png")
    assert r["images_in_page"] >= 2 and r["images_decoded"] == r["images_in_page"]
    assert r["has_report_card"]
    assert len(r["metric_names_shown"]) == r["metric_names_total"]
    assert {"torch-fp32", "ort-fp32", "ort-int8-emulated"} <= set(r["backends_shown"])
    assert (tmp_path / "index.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hailo_stages_with_fake_dfc_and_hailort(smoke_run_fake_hailo):
    """Stages 06-08 where hailo_sdk_client and hailo_platform import (the fakes from tests/fakes, which
    compute real outputs with ONNX Runtime): a HEF is compiled, stage 07 adds the emulator and device
    backends, stage 08 analyses the device and lists the emulator as replay-only instead of crashing."""
    run = smoke_run_fake_hailo
    stages = run.manifest()["stages"]
    assert stages["06_compile_hailo"]["status"] == "compiled"
    assert run.artifact("hef").read_bytes()[:4] == b"\x01HEF"
    assert set(stages["07_evaluate_on_device"]["backends"]) >= {"hailo-emulator", "hailo8-device"}
    cli = json.loads(run.artifact("device_cli").read_text())
    assert cli["errors"] == {} and cli["measure_latency"] and cli["benchmark"]  # device released for hailortcli
    sources = {s["backend"]: s for s in json.loads(run.artifact("reliability").read_text())["sources"]}
    assert sources["hailo8-device"]["used"] and not sources["hailo-emulator"]["used"]
    assert "replays stored test-window outputs" in sources["hailo-emulator"]["reason"]

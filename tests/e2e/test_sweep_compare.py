"""Sweeps and comparisons on stand-in notebooks (the real notebooks are covered by the smoke run)."""

from pathlib import Path

import pytest
import yaml
from test_pipeline import _nb

from workbench.runs import Run
from workbench.runs.compare import CompareError, metrics_table, open_runs, param_diff
from workbench.runs.sweep import SweepError, read_sweep, run_sweep, variations

pytestmark = pytest.mark.slow


@pytest.fixture()
def standin_notebooks(tmp_path, monkeypatch):
    d = tmp_path / "nbs"
    d.mkdir()
    _nb(
        [
            'run_dir = ""\nepochs = 30',
            "from workbench.runs import open_stage\n"
            'open_stage(run_dir, "01").path("model.txt").write_text(str(epochs))',
        ],
        d / "01_train_or_load.ipynb",
    )
    _nb(
        [
            'run_dir = ""\nquant_calib_size = 1024\nquant_calib_strategy = "stratified"',
            'from workbench.runs import open_stage\nst = open_stage(run_dir, "02")\n'
            'assert st.run.path.joinpath("artifacts/01_train_or_load/model.txt").exists()\n'
            'st.record_metric("code_flip_rate", 1.0 / quant_calib_size, backend="ort-int8-emulated")',
        ],
        d / "02_export_onnx.ipynb",
    )
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(d))  # read by the `workbench run` subprocesses
    return d


def _sweep_file(tmp_path, **over) -> Path:
    spec = {
        "base": [],
        "from": "02",
        "to": "02",
        "workers": 2,
        "grid": {"quant_calib_size": [64, 1024], "quant_calib_strategy": ["random_windows", "stratified"]},
    }
    spec.update(over)
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump(spec))
    return f


def test_sweep_runs_every_variation_with_one_parent(tmp_path, standin_notebooks):
    out = run_sweep(_sweep_file(tmp_path), root=tmp_path / "out", log=lambda *_: None)
    import json

    summary = json.loads((out / "sweep.json").read_text())
    runs = [Run.open(v["run"], tmp_path / "out") for v in summary["variations"]]
    assert len(runs) == 4 and all(v["error"] is None for v in summary["variations"])
    parents = {r.manifest()["parent"] for r in runs}
    assert parents == {summary["parent"]} and summary["parent"] is not None
    flips = sorted(r.metrics()[0]["value"] for r in runs)
    assert flips == pytest.approx([1 / 1024, 1 / 1024, 1 / 64, 1 / 64])
    assert (out / "comparison" / "metrics.csv").exists()


def test_invalid_variation_rejected_before_anything_runs(tmp_path, standin_notebooks):
    f = _sweep_file(tmp_path, grid={"quant_calib_size": [64, -1]})
    with pytest.raises(SweepError, match="quant_calib_size"):
        run_sweep(f, root=tmp_path / "out", log=lambda *_: None)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sweep_file_errors(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("grid: {seed: []}\n")
    with pytest.raises(SweepError, match="non-empty lists"):
        read_sweep(f)
    f.write_text("grid: {seed: [1]}\nworkerz: 2\n")
    with pytest.raises(SweepError, match="unknown keys"):
        read_sweep(f)
    assert variations({"grid": {"a": [1, 2], "b": ["x", "y", "z"]}})[-1] == {"a": 2, "b": "z"}


def test_compare_tables(tmp_path, standin_notebooks):
    out = run_sweep(
        _sweep_file(tmp_path, grid={"quant_calib_size": [64, 1024]}), root=tmp_path / "out", log=lambda *_: None
    )
    import json

    ids = [v["run"] for v in json.loads((out / "sweep.json").read_text())["variations"]]
    runs = open_runs(ids, tmp_path / "out")
    diff = param_diff(runs)
    assert list(diff.index) == ["quant_calib_size", "run_label"]
    table = metrics_table(runs)
    assert table.loc[("02_export_onnx", "code_flip_rate", "ort-int8-emulated")].tolist() == pytest.approx(
        [1 / 64, 1 / 1024]
    )
    with pytest.raises(CompareError, match="at least two"):
        open_runs(ids[:1], tmp_path / "out")


def test_sweep_reports_keyed_by_varied_parameters_with_seed_aggregation(tmp_path, standin_notebooks):
    lines: list[str] = []
    f = _sweep_file(tmp_path, grid={"quant_calib_size": [64, 1024], "seed": [0, 1]})
    out = run_sweep(f, root=tmp_path / "out", log=lines.append)
    progress = [ln for ln in lines if ln.startswith("sweep [")]
    assert len(progress) == 4 and all("ETA" in ln and "quant_calib_size=" in ln for ln in progress)
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    assert {"quant_calib_size", "seed", "run", "code_flip_rate [ort-int8-emulated]"} <= set(results.columns)
    agg = pd.read_csv(out / "aggregate.csv")
    row = agg[(agg.metric == "code_flip_rate [ort-int8-emulated]") & (agg.quant_calib_size == 64)].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(1 / 64) and row["sd"] == pytest.approx(0.0)
    assert "sweep summary" in "\n".join(lines) and "1/64" not in "\n".join(lines)
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and "± 0 (n=2)" in page


def test_sweep_on_a_local_ray_instance(tmp_path, standin_notebooks, monkeypatch):
    import ray as ray_mod  # pinned in requirements-dev.txt: missing is a failure, not a skip

    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "180")  # the shared test machine can be slow
    ray_mod.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        lines: list[str] = []
        out = run_sweep(_sweep_file(tmp_path), root=tmp_path / "out", log=lines.append, executor="ray")
    finally:
        ray_mod.shutdown()
    import json

    summary = json.loads((out / "sweep.json").read_text())
    assert summary["executor"].startswith("Ray (local Ray instance, 2 CPUs)")
    runs = [Run.open(v["run"], tmp_path / "out") for v in summary["variations"]]
    assert len(runs) == 4 and all(r.manifest()["status"] == "succeeded" for r in runs)
    assert sorted(r.metrics()[0]["value"] for r in runs) == pytest.approx([1 / 1024, 1 / 1024, 1 / 64, 1 / 64])
    assert {r.manifest()["parent"] for r in runs} == {summary["parent"]}


def test_unknown_executor_and_stray_address_are_errors(tmp_path, standin_notebooks):
    with pytest.raises(SweepError, match="unknown executor"):
        run_sweep(_sweep_file(tmp_path), root=tmp_path / "out", log=lambda *_: None, executor="slurm")
    with pytest.raises(SweepError, match="--address belongs to --executor ray"):
        run_sweep(_sweep_file(tmp_path), root=tmp_path / "out", log=lambda *_: None, address="1.2.3.4:6379")

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
    _nb(['run_dir = ""\nepochs = 30', 'from workbench.runs import open_stage\n'
         'open_stage(run_dir, "01").path("model.txt").write_text(str(epochs))'], d / "01_train_or_load.ipynb")
    _nb(['run_dir = ""\nquant_calib_size = 1024\nquant_calib_strategy = "stratified"',
         'from workbench.runs import open_stage\nst = open_stage(run_dir, "02")\n'
         'assert st.run.path.joinpath("artifacts/01_train_or_load/model.txt").exists()\n'
         'st.record_metric("code_flip_rate", 1.0 / quant_calib_size, backend="ort-int8-emulated")'],
        d / "02_export_onnx.ipynb")
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(d))  # read by the `workbench run` subprocesses
    return d


def _sweep_file(tmp_path, **over) -> Path:
    spec = {"base": [], "from": "02", "to": "02", "workers": 2,
            "grid": {"quant_calib_size": [64, 1024], "quant_calib_strategy": ["random_windows", "stratified"]}}
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
    out = run_sweep(_sweep_file(tmp_path, grid={"quant_calib_size": [64, 1024]}), root=tmp_path / "out",
                    log=lambda *_: None)
    import json
    ids = [v["run"] for v in json.loads((out / "sweep.json").read_text())["variations"]]
    runs = open_runs(ids, tmp_path / "out")
    diff = param_diff(runs)
    assert list(diff.index) == ["quant_calib_size", "run_label"]
    table = metrics_table(runs)
    assert table.loc[("02_export_onnx", "code_flip_rate", "ort-int8-emulated")].tolist() == \
        pytest.approx([1 / 64, 1 / 1024])
    with pytest.raises(CompareError, match="at least two"):
        open_runs(ids[:1], tmp_path / "out")

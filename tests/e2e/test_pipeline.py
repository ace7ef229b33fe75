"""The run mechanics on stand-in notebooks: new run dirs, manifest, failure handling, --from/--parent."""

from pathlib import Path

import nbformat
import pytest

from workbench.cli import main
from workbench.config import Params
from workbench.runs import Run, RunError, open_stage
from workbench.runs.pipeline import StageFailed, run_pipeline

pytestmark = pytest.mark.slow


def _nb(cells: list[str], path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(cells[0])
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells[1:]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture()
def notebooks(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    _nb(
        [
            'run_dir = ""\nepochs = 30',
            'from workbench.runs import open_stage\nstage = open_stage(run_dir, "01")\n'
            'stage.path("note.txt").write_text(f"epochs={epochs}")\n'
            'stage.record_metric("test_accuracy", 0.5 + epochs / 100, backend="torch-fp32")',
        ],
        d / "01_train_or_load.ipynb",
    )
    _nb(
        [
            'run_dir = ""\nfail = False',
            'from workbench.runs import open_stage\nstage = open_stage(run_dir, "02")\n'
            'print(stage.run.path.joinpath("artifacts/01_train_or_load/note.txt").read_text())',
            'if fail:\n    raise ValueError("parity check failed: cosine 0.5 < 0.99999")',
        ],
        d / "02_export_onnx.ipynb",
    )
    return d


def test_run_writes_manifest_metrics_html(tmp_path, notebooks):
    run = run_pipeline(
        Params(epochs=3),
        to_stage="02",
        root=tmp_path / "out",
        notebooks_dir=notebooks,
        progress=False,
        log=lambda *_: None,
    )
    man = run.manifest()
    assert man["status"] == "succeeded"
    assert [e["status"] for e in man["stages"].values()] == ["succeeded", "succeeded"]
    assert man["params"]["epochs"] == 3 and man["versions"]["torch"]
    assert "commit" in man["git"]
    assert (run.path / "artifacts/01_train_or_load/note.txt").read_text() == "epochs=3"
    assert run.metrics()[0] == {
        "stage": "01_train_or_load",
        "name": "test_accuracy",
        "value": 0.53,
        "backend": "torch-fp32",
    }
    for f in (
        "html/01_train_or_load.html",
        "html/01_train_or_load.results.html",
        "html/index.html",
        "notebooks/02_export_onnx.ipynb",
        "params.yaml",
    ):
        assert (run.path / f).exists(), f
    index = (run.path / "html/index.html").read_text()
    assert "test_accuracy" in index and "torch-fp32" in index and "synthetic data" in index
    # the injected parameter reached the notebook; only declared names are injected
    executed = nbformat.read(str(run.path / "notebooks/01_train_or_load.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])][0]
    assert "epochs = 3" in injected.source and "seed" not in injected.source


def test_two_runs_never_share_a_directory(tmp_path, notebooks):
    kw = dict(to_stage="01", root=tmp_path / "out", notebooks_dir=notebooks, progress=False, log=lambda *_: None)
    a, b = run_pipeline(Params(), **kw), run_pipeline(Params(), **kw)
    assert a.path != b.path and a.path.exists() and b.path.exists()


def test_failing_stage_keeps_partial_notebook_and_records_failure(tmp_path, notebooks):
    # a parameter only this stand-in declares: add it to a Params subclass for the test
    class P(Params):
        fail: bool = True

    with pytest.raises(StageFailed) as e:
        run_pipeline(
            P(), to_stage="02", root=tmp_path / "out", notebooks_dir=notebooks, progress=False, log=lambda *_: None
        )
    msg = str(e.value)
    assert "02_export_onnx" in msg and "parity check failed" in msg
    run = Run(Path(e.value.run_path))
    man = run.manifest()
    assert man["status"] == "failed" and man["failed_stage"] == "02_export_onnx"
    entry = man["stages"]["02_export_onnx"]
    assert entry["status"] == "failed" and entry["error"]["type"] == "ValueError"
    partial = nbformat.read(str(run.path / "notebooks/02_export_onnx.ipynb"), as_version=4)
    tracebacks = [
        o
        for c in partial.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert tracebacks and "parity check failed" in tracebacks[0]["evalue"]
    assert (run.path / "html/02_export_onnx.html").exists()
    assert "failed" in (run.path / "html/index.html").read_text()


def test_from_needs_parent_and_reuses_its_artifacts(tmp_path, notebooks):
    kw = dict(root=tmp_path / "out", notebooks_dir=notebooks, progress=False, log=lambda *_: None)
    with pytest.raises(RunError, match="--parent"):
        run_pipeline(Params(), from_stage="02", to_stage="02", **kw)
    parent = run_pipeline(Params(epochs=7), to_stage="01", **kw)
    before = set((tmp_path / "out").iterdir())
    with pytest.raises(RunError, match=r"epochs: parent 7, this run 30"):  # stage 01 declares epochs
        run_pipeline(Params(), from_stage="02", to_stage="02", parent=parent.run_id, **kw)
    assert set((tmp_path / "out").iterdir()) == before
    child = run_pipeline(Params(epochs=7), from_stage="02", to_stage="02", parent=parent.run_id, **kw)
    man = child.manifest()
    assert man["parent"] == parent.run_id
    assert man["reused_from_parent"] == ["01_train_or_load"]
    assert (child.path / "artifacts/01_train_or_load/note.txt").read_text() == "epochs=7"
    assert list(man["stages"]) == ["02_export_onnx"]


def test_missing_artifact_error_names_stage_and_fix(tmp_path):
    run = Run.create("x", tmp_path)
    with pytest.raises(RunError, match="01_train_or_load has not produced it"):
        run.artifact("checkpoint")


def test_cli_rejects_bad_params_before_running(tmp_path, capsys):
    code = main(["run", "--outputs", str(tmp_path), "-p", "fsq_levels", "[1, 5]"])
    assert code == 2
    assert "fsq_levels" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_list_shows_runs(tmp_path, notebooks, capsys):
    run_pipeline(Params(), to_stage="01", root=tmp_path, notebooks_dir=notebooks, progress=False, log=lambda *_: None)
    assert main(["list", "--outputs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "succeeded" in out and "test_accuracy[torch-fp32]=0.8" in out


def test_from_refuses_a_parent_stage_that_failed(tmp_path, notebooks):
    class P(Params):
        fail: bool = True

    kw = dict(root=tmp_path / "out", notebooks_dir=notebooks, progress=False, log=lambda *_: None)
    with pytest.raises(StageFailed) as e:
        run_pipeline(P(), to_stage="02", **kw)
    failed = Run(Path(e.value.run_path))
    # the stand-in for stage 03 does not exist: the refusal must come first, from the parent's manifest
    with pytest.raises(RunError, match="status 'failed'"):
        from workbench.runs import copy_stage_artifacts

        copy_stage_artifacts(failed, Run.create("child", tmp_path / "out"), ["01", "02"])


def test_interactive_notebook_never_writes_into_a_finished_stage(tmp_path, notebooks, monkeypatch):
    monkeypatch.setenv("WORKBENCH_OUTPUTS", str(tmp_path / "out"))
    monkeypatch.setenv("WORKBENCH_DOOR", "interactive")
    parent = run_pipeline(
        Params(), to_stage="02", root=tmp_path / "out", notebooks_dir=notebooks, progress=False, log=lambda *_: None
    )
    stage = open_stage("", "02")
    assert stage.run.path != parent.path
    assert stage.run.manifest()["parent"] == parent.run_id

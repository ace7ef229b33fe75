"""Every door into a run keeps the run contract (issue 10): the pipeline, papermill by hand and
JupyterLab never rewrite a stage that ran, run_dir resolves from any working directory, signals and
killed processes leave a true manifest, `list` survives damaged runs, a refused --parent leaves nothing.

Slow tests go through the real papermill and a real kernel on params/smoke.yaml; the finished run is the
session's `smoke_run`, which no test writes into (every file is hashed before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from workbench.cli import main
from workbench.errors import RunError
from workbench.runs import Run, open_stage
from workbench.runs.listing import format_run_list

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
slow = pytest.mark.slow


# ---- helpers ------------------------------------------------------------------------------------
def tree_hashes(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def run_dirs(root: Path) -> set[Path]:
    return {d for d in root.iterdir() if d.is_dir()}


def fake_run(root: Path, stages: dict[str, str], **manifest) -> Run:
    """A run with the given stage statuses and one artifact per stage (no notebooks needed)."""
    run = Run.create("fake", root)
    for name in stages:
        run.stage_dir(name[:2]).joinpath("a.txt").write_text(name)
    run.write_json(
        "manifest.json",
        {
            "run_id": run.run_id,
            "created": "2026-01-01T00:00:00+00:00",
            "status": "succeeded",
            "params": {"seed": 0},
            "stages": {n: {"status": s} for n, s in stages.items()},
            **manifest,
        },
    )
    return run


def env_for(outputs: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "JPY_"))}
    env.update(WORKBENCH_OUTPUTS=str(outputs), **extra)
    return env


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---- run_dir resolution -------------------------------------------------------------------------
@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A project root (pyproject.toml + notebooks/) whose outputs/ holds the runs."""
    proj = tmp_path / "proj"
    (proj / "notebooks").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.setenv("WORKBENCH_PROJECT_ROOT", str(proj))
    monkeypatch.delenv("WORKBENCH_OUTPUTS", raising=False)
    monkeypatch.delenv("WORKBENCH_PIPELINE_RUN", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    return proj


def test_run_dir_resolves_from_the_notebooks_folder(project, monkeypatch):
    run = fake_run(project / "outputs", {"01_train_or_load": "succeeded"})
    monkeypatch.chdir(project / "notebooks")  # where Jupyter kernels start
    for ref in (run.run_id, f"outputs/{run.run_id}", str(run.path), f"  {run.run_id} "):
        assert Run.open(ref).path == run.path.resolve(), ref
    with pytest.raises(RunError, match="python -m workbench list"):
        Run.open("outputs/no-such-run")


def test_empty_run_dir_hint_names_a_command_that_works(project, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DOOR", "papermill")
    with pytest.raises(RunError) as e:
        open_stage("", "04")
    msg = str(e.value)
    assert "03_inspect_graph" in msg and "python -m workbench run --to 03" in msg
    assert "--to 04" not in msg  # the stage guard refused `run --to 04` here before


# ---- one rule for every door --------------------------------------------------------------------
def test_finished_stage_opens_a_child_run_and_says_so_first(project, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_DOOR", "papermill")
    parent = fake_run(project / "outputs", {"01_train_or_load": "succeeded", "02_export_onnx": "succeeded"})
    before = tree_hashes(parent.path)
    stage = open_stage(parent.run_id, "02")
    first = capsys.readouterr().out.splitlines()[0]
    assert stage.run.path != parent.path and stage.run.path.parent == parent.path.parent
    assert first.startswith(f"child run {stage.run.run_id} (papermill)") and parent.run_id in first
    man = stage.run.manifest()
    assert man["parent"] == parent.run_id and man["started_by"] == "papermill"
    assert man["reused_from_parent"] == ["01_train_or_load"]
    assert (stage.run.path / "artifacts/01_train_or_load/a.txt").read_text() == "01_train_or_load"
    assert not any((stage.run.path / "artifacts/02_export_onnx").iterdir())
    assert tree_hashes(parent.path) == before
    assert stage.run.run_id in format_run_list(project / "outputs")


def test_interactive_stage_continues_only_while_open(project, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_DOOR", "interactive")
    first = open_stage("", "01")
    run = first.run
    assert run.path.parent == project / "outputs"  # the root outputs/, not notebooks/outputs
    man = run.manifest()
    assert man["started_by"] == "interactive" and man["status"] == "open" and man["pid"] == os.getpid()
    assert open_stage(run.run_id, "01").run.path == run.path  # same kernel: continue
    # another live kernel holds the stage: this one gets a child
    man["stages"]["01_train_or_load"].update(pid=os.getppid(), pid_start=None)
    run.write_json("manifest.json", man)
    first.path("w.txt").write_text("x")
    assert open_stage(run.run_id, "01").run.path != run.path
    # that kernel died (restart): the stage may be continued
    dead = subprocess.Popen(["true"])
    dead.wait()
    man["stages"]["01_train_or_load"]["pid"] = dead.pid
    run.write_json("manifest.json", man)
    assert open_stage(run.run_id, "01").run.path == run.path
    # opening the next stage closes stage 01; reopening it then makes a child
    assert open_stage(run.run_id, "02").run.path == run.path
    assert run.manifest()["stages"]["01_train_or_load"]["status"] == "done"
    capsys.readouterr()
    child = open_stage(run.run_id, "01").run
    assert child.path != run.path and "child run" in capsys.readouterr().out.splitlines()[0]


def test_pipeline_kernel_writes_only_its_own_run(project, monkeypatch):
    own = fake_run(project / "outputs", {"01_train_or_load": "running"}, status="running")
    other = fake_run(project / "outputs", {"01_train_or_load": "succeeded"})
    monkeypatch.setenv("WORKBENCH_PIPELINE_RUN", str(own.path))
    assert open_stage(str(own.path), "01").run.path == own.path.resolve()
    assert open_stage(str(other.path), "01").run.path not in (own.path, other.path)


# ---- list survives what it finds ----------------------------------------------------------------
def test_list_survives_damaged_runs_and_shows_dead_runs_as_stale(tmp_path, capsys):
    root = tmp_path / "out"
    corrupt = Run.create("corrupt", root)
    corrupt.manifest_path.write_text('{"status": "runn')
    not_a_dict = Run.create("list", root)
    not_a_dict.manifest_path.write_text("[1, 2]")
    rows = fake_run(root, {"01_train_or_load": "succeeded"})
    rows.write_json(
        "metrics.json",
        {
            "metrics": [
                {"name": "test_accuracy"},
                {"value": 0.5},
                {"name": "accuracy", "value": 0.75, "backend": "ort-fp32"},
                "junk",
            ]
        },
    )
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = fake_run(
        root, {"01_train_or_load": "running"}, status="running", pid=dead.pid, hostname=os.uname().nodename
    )
    assert main(["list", "--outputs", str(root)]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert "unreadable" in lines[corrupt.run_id] and "unreadable" in lines[not_a_dict.run_id]
    assert "accuracy[ort-fp32]=0.75" in lines[rows.run_id]
    assert lines[stale.run_id].split()[1] == "stale"


def test_write_failure_is_one_clear_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    run = Run.create("ro", tmp_path)
    real = Path.replace

    def disk_full(self, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", disk_full)
    with pytest.raises(RunError, match="cannot write .*manifest.json: No space left on device"):
        run.write_json("manifest.json", {"status": "running"})
    monkeypatch.setattr(Path, "replace", real)
    assert sorted(p.name for p in run.path.iterdir()) == ["artifacts", "html", "notebooks"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (an outputs folder nobody can write)")
def test_unwritable_outputs_is_one_clear_line(capsys):
    code = main(["run", "--outputs", "/proc/workbench-outputs", "-f", str(ROOT / "params/smoke.yaml"), "--to", "01"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot create a run directory under /proc/workbench-outputs/")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ---- slow: the real papermill, a real kernel, real signals ---------------------------------------
def readme_papermill_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### With papermill directly") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@slow
def test_readme_papermill_command_keeps_the_parent_and_makes_a_listed_child(smoke_run, capsys):
    root = smoke_run.path.parent
    before = tree_hashes(smoke_run.path)
    runs_before = run_dirs(root)
    repo_before = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    script = readme_papermill_block().replace("<run-id>", smoke_run.run_id)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env_for(root),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tree_hashes(smoke_run.path) == before  # every file of the parent byte-identical
    new = run_dirs(root) - runs_before
    assert len(new) == 1
    child = Run(new.pop())
    nb = child.path / "notebooks" / "05_calibrate_int8.ipynb"
    assert nb.exists()
    wait_for(lambda: (child.path / "html" / "05_calibrate_int8.html").exists(), 120, "the rendered notebook")
    wait_for(lambda: (child.path / "html" / "index.html").exists(), 60, "the index page")
    man = child.manifest()
    assert man["parent"] == smoke_run.run_id and man["started_by"] == "papermill"
    assert man["status"] == "succeeded" and man["stages"]["05_calibrate_int8"]["status"] == "succeeded"
    assert man["reused_from_parent"][0] == "01_train_or_load" and len(man["reused_from_parent"]) == 4
    assert man["params"]["quant_calib_size"] == 64 and man["params"]["encoder_channels"] == [8, 16]
    info = json.loads(child.artifact("calibset_info").read_text())
    assert info["size"] == 64
    assert main(["list", "--outputs", str(root)]) == 0
    listed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(child.run_id)]
    assert listed and "succeeded" in listed[0] and "papermill" in listed[0]
    repo_after = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert repo_after == repo_before  # nothing left in the repository


@slow
def test_notebook_run_from_notebooks_dir_finds_the_run_by_id(smoke_run, tmp_path):
    root = smoke_run.path.parent
    before = tree_hashes(smoke_run.path)
    out_nb = tmp_path / "03.ipynb"
    proc = subprocess.run(
        [
            str(Path(PY).parent / "papermill"),
            "03_inspect_graph.ipynb",
            str(out_nb),
            "-p",
            "run_dir",
            smoke_run.run_id,
            "-k",
            "python3",
            "--cwd",
            ".",
        ],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
        env=env_for(root),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(str(out_nb), as_version=4)
    streams = [
        o["text"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stdout"
    ]
    assert streams[0].startswith("child run ") and smoke_run.run_id in streams[0].splitlines()[0]
    child_id = streams[0].split()[2]
    child = Run(root / child_id)
    assert child.manifest()["parent"] == smoke_run.run_id
    assert (child.path / "artifacts/03_inspect_graph/nodes.csv").exists()
    assert tree_hashes(smoke_run.path) == before


def _start_stage01(root: Path) -> subprocess.Popen:
    """A pipeline run of stage 01 long enough to be stopped in the middle of training."""
    return subprocess.Popen(
        [
            PY,
            "-m",
            "workbench",
            "run",
            "-f",
            str(ROOT / "params/smoke.yaml"),
            "--to",
            "01",
            "--outputs",
            str(root),
            "--no-progress",
            "-p",
            "epochs",
            "500",
            "-p",
            "patience",
            "500",
        ],
        cwd=ROOT,
        env=env_for(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _running_run(root: Path) -> Run:
    def stage_running() -> bool:
        for d in root.iterdir() if root.is_dir() else []:
            try:
                st = Run(d).manifest().get("stages", {}).get("01_train_or_load", {})
            except RunError:
                continue
            if st.get("status") == "running":
                return True
        return False

    wait_for(stage_running, 120, "stage 01 to start")
    time.sleep(4)  # the kernel is up and training
    return Run(next(iter(run_dirs(root))))


@slow
def test_sigterm_during_a_stage_records_interrupted(tmp_path, capsys):
    root = tmp_path / "out"
    proc = _start_stage01(root)
    run = _running_run(root)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted by SIGTERM during stage 01_train_or_load" in err
    # the workbench process itself ends with one line, no traceback of its own; the kernel it stops may log
    # its own interrupted message handler (ipykernel's stderr is inherited), which is not ours to silence
    ours = [ln for ln in err.splitlines() if 'File "' in ln and "/workbench/" in ln and "ipykernel" not in ln]
    assert not ours, err
    man = run.manifest()
    assert man["status"] == "interrupted" and man["failed_stage"] == "01_train_or_load"
    assert man["stages"]["01_train_or_load"]["status"] == "interrupted"
    assert man["stages"]["01_train_or_load"]["error"]["signal"] == "SIGTERM"
    # the partial notebook does not claim that cells it never ran completed
    partial = nbformat.read(str(run.path / "notebooks/01_train_or_load.ipynb"), as_version=4)
    metas = [c.metadata.get("papermill", {}) for c in partial.cells]
    assert metas[-1].get("status") == "pending"
    assert all(m.get("status") != "completed" for m in metas if m.get("start_time") is None)
    assert main(["list", "--outputs", str(root)]) == 0
    assert "interrupted" in capsys.readouterr().out


@slow
def test_sigkill_shows_the_run_as_stale(tmp_path, capsys):
    root = tmp_path / "out"
    proc = _start_stage01(root)
    run = _running_run(root)
    proc.kill()
    proc.communicate(timeout=60)
    assert run.manifest()["status"] == "running"  # nobody could record the end...
    assert main(["list", "--outputs", str(root)]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(run.run_id)][0]
    assert line.split()[1] == "stale"  # ...and list does not repeat 'running'


@slow
def test_refused_parent_leaves_no_directory(smoke_run, tmp_path, capsys):
    root = tmp_path / "out"
    root.mkdir()
    # a parent whose stage 03 failed
    failed = root / "failed-parent"
    shutil.copytree(smoke_run.path, failed)
    man = json.loads((failed / "manifest.json").read_text())
    man["stages"]["03_inspect_graph"]["status"] = "failed"
    (failed / "manifest.json").write_text(json.dumps(man))
    before = run_dirs(root)
    smoke = str(ROOT / "params/smoke.yaml")
    code = main(["run", "--outputs", str(root), "-f", smoke, "--from", "05", "--parent", "failed-parent"])
    assert code == 2 and "status 'failed'" in capsys.readouterr().err
    assert run_dirs(root) == before
    # reused stages made with another architecture: refused with the differences listed
    code = main(
        [
            "run",
            "--outputs",
            str(root),
            "-f",
            smoke,
            "--from",
            "05",
            "--parent",
            str(smoke_run.path),
            "-p",
            "fsq_levels",
            "[8, 5]",
            "-p",
            "encoder_channels",
            "[64, 64, 64]",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "fsq_levels: parent [8, 6, 5, 5, 4], this run [8, 5]" in err
    assert "encoder_channels: parent [8, 16], this run [64, 64, 64]" in err
    assert run_dirs(root) == before and run_dirs(smoke_run.path.parent) >= {smoke_run.path}


@slow
def test_interactive_kernel_run_is_listed_and_its_notebook_saved(project, tmp_path, capsys):
    """A real kernel started the way a Jupyter server starts it (JPY_SESSION_NAME = the notebook's path,
    cwd notebooks/): the run lands in the project's outputs/ with a manifest, and on kernel shutdown the
    notebook as saved is copied into the run and rendered."""
    from jupyter_client.manager import start_new_kernel

    saved = project / "notebooks" / "01_train_or_load.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('saved by the user')")]
    nbformat.write(nb, str(saved))
    env = env_for(project / "outputs", WORKBENCH_PROJECT_ROOT=str(project), JPY_SESSION_NAME=str(saved))
    env.pop("WORKBENCH_OUTPUTS")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(project / "notebooks"), env=env)
    try:
        reply = kc.execute_interactive('from workbench.runs import open_stage\nst = open_stage("", "01")', timeout=120)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    (run_path,) = [d for d in (project / "outputs").iterdir() if d.is_dir()]
    run = Run(run_path)
    man = run.manifest()
    assert man["started_by"] == "interactive" and man["status"] == "open"
    assert man["stages"]["01_train_or_load"]["status"] == "open"
    wait_for(lambda: (run.path / "html" / "01_train_or_load.html").exists(), 120, "the rendered notebook")
    assert "saved by the user" in (run.path / "notebooks" / "01_train_or_load.ipynb").read_text()
    assert main(["list", "--outputs", str(project / "outputs")]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(run.run_id)][0]
    assert "open" in line and "interactive" in line

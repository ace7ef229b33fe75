"""Execute the stage notebooks with papermill into one run directory, render them, write the manifest.

A failing stage stops the run: the partial notebook (with the traceback) is kept and rendered, the
manifest records the failure, and the caller gets a `StageFailed` naming the stage and the cell error.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from workbench.config import Params, dump_params
from workbench.errors import RunError, StageFailed
from workbench.runs.store import STAGE_NAMES, STAGES, Run, copy_stage_artifacts, stage_key

PROJECT_ROOT = Path(__file__).resolve().parents[3]
NOTEBOOK_DIR = Path(os.environ.get("WORKBENCH_NOTEBOOKS", PROJECT_ROOT / "notebooks"))
KERNEL_NAME = "python3"

# Distribution names whose versions every manifest records (Hailo ones only when installed).
VERSIONED = ["torch", "numpy", "onnx", "onnxruntime", "onnxslim", "papermill", "nbconvert", "scipy"]
HAILO_DISTS = ["hailo-dataflow-compiler", "hailort", "hailo_sdk_client", "hailo_platform"]
# Parameters holding paths: made absolute before injection, since notebooks run with their own cwd.
PATH_PARAMS = ("data_dir", "checkpoint_path", "hef_path")


def package_versions() -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {"python": platform.python_version()}
    for dist in VERSIONED + HAILO_DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if dist not in HAILO_DISTS:
                out[dist] = None
    return out


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or None,
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def notebook_for(stage: str, notebooks_dir: Path = NOTEBOOK_DIR) -> Path:
    path = notebooks_dir / f"{STAGE_NAMES[stage_key(stage)]}.ipynb"
    if not path.exists():
        raise RunError(f"notebook for stage {stage} not found: {path}")
    return path


def declared_parameters(nb_path: Path) -> list[str]:
    import papermill as pm
    return list(pm.inspect_notebook(str(nb_path)).keys())


def _absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in PATH_PARAMS:
        if out.get(key):
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def select_stages(from_stage: str = "01", to_stage: str = "08") -> list[str]:
    keys = [n for n, _ in STAGES]
    a, b = stage_key(from_stage), stage_key(to_stage)
    if keys.index(a) > keys.index(b):
        raise RunError(f"--from {a} comes after --to {b}")
    return keys[keys.index(a): keys.index(b) + 1]


def run_pipeline(params: Params, *, from_stage: str = "01", to_stage: str = "08",
                 parent: Optional[str] = None, root: Optional[Path] = None,
                 notebooks_dir: Path = NOTEBOOK_DIR, progress: bool = True,
                 log=print) -> Run:
    """Run stages [from_stage, to_stage] into a new run directory and return it."""
    stages = select_stages(from_stage, to_stage)
    earlier = [n for n, _ in STAGES][: [n for n, _ in STAGES].index(stages[0])]
    parent_run = Run.open(parent, root) if parent else None
    if earlier and parent_run is None:
        raise RunError(f"--from {stages[0]} reuses stages {earlier[0]}-{earlier[-1]} of a parent run: "
                       f"add --parent RUN (see `python -m workbench list`)")
    notebooks = {s: notebook_for(s, notebooks_dir) for s in stages}  # fail before creating anything
    if "01" in stages:
        from workbench.data.preflight import preflight
        preflight(params)

    run = Run.create(params.run_label, root)
    if parent_run is not None:
        copy_stage_artifacts(parent_run, run, earlier)
    dump_params(params, run.path / "params.yaml")
    manifest: dict[str, Any] = {
        "run_id": run.run_id,
        "created": _now(),
        "status": "running",
        "command": " ".join(sys.argv),
        "params": params.model_dump(),
        "parent": parent_run.run_id if parent_run else None,
        "reused_from_parent": [STAGE_NAMES[s] for s in earlier],
        "versions": package_versions(),
        "git": git_commit(),
        "host": {"machine": platform.machine(), "system": platform.system(),
                 "cpus": os.cpu_count()},
        "stages": {STAGE_NAMES[s]: {"status": "pending"} for s in stages},
    }
    run.write_json("manifest.json", manifest)
    log(f"run {run.run_id}: stages {stages[0]}-{stages[-1]} -> {run.path}")

    from workbench.runs.index_page import write_index

    # Headless kernels inherit this environment: progress bars update every 20 s, not per step, so the
    # rendered notebooks keep a readable trace instead of hundreds of stderr lines.
    env_keys = {"WORKBENCH_HEADLESS": "1", "TQDM_MININTERVAL": "20"}
    env_before = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    try:
        for s in stages:
            _run_stage(run, s, notebooks[s], params, manifest, progress, log)
    except BaseException as exc:
        if manifest.get("status") != "failed":  # raised outside a notebook (render, I/O, Ctrl-C)
            manifest.update(status="failed", finished=_now(), error=_describe_error(exc))
            run.write_json("manifest.json", manifest)
        _safe_index(run, log)
        raise
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    manifest["status"] = "succeeded"
    manifest["finished"] = _now()
    run.write_json("manifest.json", manifest)
    write_index(run)
    log(f"run {run.run_id} succeeded: open {run.path / 'html' / 'index.html'}")
    return run


def _safe_index(run: Run, log) -> None:
    """On failure the index is still written, but it must never mask the stage error."""
    from workbench.runs.index_page import write_index
    try:
        write_index(run)
    except Exception as exc:
        log(f"warning: could not write the HTML index: {exc}")


def _run_stage(run: Run, s: str, nb_path: Path, params: Params, manifest: dict, progress: bool,
               log) -> None:
    import papermill as pm

    name = STAGE_NAMES[s]
    out_nb = run.path / "notebooks" / f"{name}.ipynb"
    injected = {"run_dir": str(run.path.resolve())}
    injected.update(_absolute_paths(params.stage_subset(declared_parameters(nb_path))))
    entry = manifest["stages"][name]
    entry.update(status="running", started=_now(), notebook=str(out_nb.relative_to(run.path)))
    run.write_json("manifest.json", manifest)
    log(f"[{s}] {name} ...")
    t0 = time.perf_counter()
    error: Optional[BaseException] = None
    try:
        pm.execute_notebook(str(nb_path), str(out_nb), parameters=injected, kernel_name=KERNEL_NAME,
                            cwd=str(nb_path.parent), progress_bar=progress, log_output=False)
    except BaseException as exc:  # PapermillExecutionError, KeyboardInterrupt, kernel death
        error = exc
    entry["duration_s"] = round(time.perf_counter() - t0, 2)
    entry["finished"] = _now()
    status_file = run.path / "artifacts" / name / "stage_status.json"
    if status_file.exists():
        import json
        entry["stage_status"] = json.loads(status_file.read_text())
    if error is not None:
        entry["status"] = "failed"
        entry["error"] = _describe_error(error)
        manifest["status"] = "failed"
        manifest["failed_stage"] = name
        manifest["finished"] = _now()
        if out_nb.exists():
            try:
                entry["html"] = _render(out_nb, run)
            except Exception as exc:  # keep the recorded failure even if rendering breaks
                entry["render_error"] = str(exc)
        run.write_json("manifest.json", manifest)
        log(f"[{s}] {name} FAILED after {entry['duration_s']} s: {entry['error']['summary']}")
        raise StageFailed(run.run_id, str(run.path), name, entry["error"]["summary"]) from (
            None if _is_papermill_error(error) else error)
    entry["status"] = (entry.get("stage_status") or {}).get("status", "succeeded")
    entry["backends"] = sorted({m["backend"] for m in run.metrics() if m["stage"] == name})
    run.write_json("manifest.json", manifest)
    entry["html"] = _render(out_nb, run)
    run.write_json("manifest.json", manifest)
    log(f"[{s}] {name} {entry['status']} in {entry['duration_s']} s")


def _is_papermill_error(exc: BaseException) -> bool:
    from papermill.exceptions import PapermillExecutionError
    return isinstance(exc, PapermillExecutionError)


def _describe_error(exc: BaseException) -> dict[str, Any]:
    if _is_papermill_error(exc):
        ename = getattr(exc, "ename", type(exc).__name__)
        evalue = getattr(exc, "evalue", str(exc))
        cell = getattr(exc, "exec_count", None)
        return {"type": ename, "message": evalue, "cell_execution_count": cell,
                "summary": f"{ename}: {evalue} (in cell [{cell}])"}
    return {"type": type(exc).__name__, "message": str(exc),
            "summary": f"{type(exc).__name__}: {exc}"}


def _render(nb_path: Path, run: Run) -> dict[str, str]:
    return {k: str(Path(v).relative_to(run.path)) for k, v in _render_to(nb_path, run.path / "html").items()}


def _render_to(nb_path: Path, html_dir: Path) -> dict[str, str]:
    """Full and results-only HTML side by side; images stay embedded as data URIs."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(nb_path), as_version=4)
    out = {}
    for kind, exclude in (("full", False), ("results", True)):
        exporter = HTMLExporter(exclude_input=exclude, exclude_input_prompt=exclude,
                                exclude_output_prompt=exclude)
        body, _ = exporter.from_notebook_node(nb)
        suffix = "" if kind == "full" else ".results"
        target = html_dir / f"{nb_path.stem}{suffix}.html"
        target.write_text(body, encoding="utf-8")
        out[kind] = str(target)
    return out

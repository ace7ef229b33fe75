"""The notebook doors (JupyterLab, papermill) keep the same run contract as ``workbench run``.

One rule for every door: a stage that already ran in a run is never run into it again. Opening a
stage that exists in a run makes a *child run* (a new directory beside the parent, whose manifest
names the parent, the door and the reused stages, with the parent's earlier-stage artifacts copied).
The exact rules, including when an interactive stage may be continued, are in docs/DESIGN.md
("Doors into a run"). The pipeline's own kernels are recognised by ``WORKBENCH_PIPELINE_RUN``.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from workbench.errors import RunError
from workbench.runs.store import (
    DOORS,
    REUSABLE,
    STAGE_NAMES,
    STAGES,
    Run,
    Stage,
    check_reusable,
    copy_stage_artifacts,
    outputs_root,
    process_alive,
    process_identity,
    stage_key,
)

ENV_PIPELINE_RUN = "WORKBENCH_PIPELINE_RUN"  # set by the pipeline for the kernels it starts
ENV_DOOR = "WORKBENCH_DOOR"  # explicit override: papermill | interactive
KEYS = [n for n, _ in STAGES]

_notebook_params: dict[str, Any] = {}
_hooked: set[str] = set()


def remember_notebook_params(values: dict[str, Any]) -> None:
    """Called by ``workbench.notebook.stage_params``: the values the notebook runs with, so a child run's
    manifest can describe them."""
    _notebook_params.clear()
    _notebook_params.update(values)


def current_door() -> str:
    """``pipeline`` (a kernel the pipeline started), else ``WORKBENCH_DOOR`` when set, else
    ``interactive`` for a kernel a Jupyter server started (it sets ``JPY_SESSION_NAME``) or plain
    Python, and ``papermill`` for a kernel no server serves (papermill, nbclient, nbconvert)."""
    if os.environ.get(ENV_PIPELINE_RUN):
        return "pipeline"
    forced = os.environ.get(ENV_DOOR, "")
    if forced in DOORS and forced != "pipeline":
        return forced
    if os.environ.get("JPY_SESSION_NAME"):
        return "interactive"
    return "papermill" if _in_kernel() else "interactive"


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def open_stage(run_dir: Optional[str], stage: str, create_if_missing: bool = False, log=print) -> Stage:
    key = stage_key(stage)
    name = STAGE_NAMES[key]
    door = current_door()
    if door == "pipeline":
        own = Path(os.environ[ENV_PIPELINE_RUN]).resolve()
        run = Run.open(run_dir) if run_dir else Run(own)
        if run.path.resolve() == own:
            return Stage(run, key)  # the pipeline made this run for exactly these stages
        door = "papermill"
    if not run_dir:
        if key == "01" or create_if_missing:
            run = new_notebook_run(door, label=door, root=outputs_root())
            stage_obj = _claim(run, key, door)
            log(f"new {door} run {run.run_id}: stage {name} -> {run.path}")
            return stage_obj
        run = newest_run_with(KEYS[KEYS.index(key) - 1], key)
    else:
        run = Run.open(run_dir)
    man = run.manifest()
    entry = (man.get("stages") or {}).get(name)
    started = entry is not None or any((run.path / "artifacts" / name).glob("*"))
    if not started and _accepts_new_stage(man, door):
        stage_obj = _claim(run, key, door)
        log(f"{door} run {run.run_id}: stage {name} -> {run.path}")
        return stage_obj
    if entry is not None and _continuable(man, entry, door):
        stage_obj = _claim(run, key, door)
        log(f"{door} run {run.run_id}: continuing its open stage {name} -> {run.path}")
        return stage_obj
    child = make_child(run, key, door)
    stage_obj = _claim(child, key, door)
    reused = child.manifest().get("reused_from_parent") or []
    why = f"stage {name} already ran in run {run.run_id}" if started else f"run {run.run_id} is closed"
    log(
        f"child run {child.run_id} ({door}): {why} and runs are never rewritten; reusing "
        f"{', '.join(reused) or 'no stages'} of the parent -> {child.path}"
    )
    return stage_obj


def _accepts_new_stage(man: dict, door: str) -> bool:
    """An interactive run stays open to further stages; a run reserved by ``workbench child`` takes
    its first stage from papermill or Lab; everything else (pipeline runs, papermill runs that
    started) is closed."""
    if man.get("status") == "reserved":
        return not man.get("stages")
    return man.get("status") == "open" and man.get("started_by") == "interactive" == door


def _continuable(man: dict, entry: dict, door: str) -> bool:
    """An open interactive stage may be continued by the kernel that opened it, or by any interactive
    kernel once that one is gone (a restart); never while another live kernel holds it."""
    if door != "interactive" or man.get("started_by") != "interactive" or man.get("status") != "open":
        return False
    if entry.get("status") != "open":
        return False
    return entry.get("pid") == os.getpid() or process_alive(entry) is False


def newest_run_with(prev: str, key: str) -> Run:
    """The newest run under outputs/ whose stage ``prev`` finished (or is open interactive work); runs
    without a readable manifest (orphans, damaged ones) are skipped."""
    root = outputs_root()
    prev_name = STAGE_NAMES[prev]
    found: list[tuple[str, Run]] = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        run = Run(d)
        try:
            man = run.manifest()
        except RunError:
            continue
        status = ((man.get("stages") or {}).get(prev_name) or {}).get("status")
        if status is None and prev_name in (man.get("reused_from_parent") or []):
            status = "succeeded"
        if status in REUSABLE:
            found.append((str(man.get("created", "")), run))
    if not found:
        raise RunError(
            f"no run under {root}/ has a finished stage {prev_name}; set run_dir in the "
            f"parameters cell to a run id (python -m workbench list), or make one: "
            f"python -m workbench run --to {prev}"
        )
    return max(found, key=lambda t: t[0])[1]


def new_notebook_run(
    door: str, label: str, root: Path, parent: Optional[Run] = None, reuse: tuple[str, ...] = (), status: str = ""
) -> Run:
    """A run directory with its manifest, created for a notebook door; on any failure nothing is
    left behind."""
    import shutil

    from workbench.runs.pipeline import git_commit, package_versions

    if parent is not None:
        check_reusable(parent, list(reuse))  # before any directory exists
    run = Run.create(label, root)
    try:
        params: dict[str, Any] = {}
        if parent is not None:
            copy_stage_artifacts(parent, run, list(reuse))
            params = parent.params() or (parent.manifest().get("params") or {})
            if (parent.path / "params.yaml").exists():
                shutil.copy2(parent.path / "params.yaml", run.path / "params.yaml")
        manifest = {
            "run_id": run.run_id,
            "created": _now(),
            "status": status or ("open" if door == "interactive" else "running"),
            "started_by": door,
            "command": " ".join(sys.argv),
            "params": params,
            "parent": parent.run_id if parent else None,
            "reused_from_parent": [STAGE_NAMES[s] for s in reuse],
            **process_identity(),
            "versions": package_versions(),
            "git": git_commit(),
            "stages": {},
        }
        run.write_json("manifest.json", manifest)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run


def make_child(parent: Run, key: str, door: str, status: str = "") -> Run:
    """A child of ``parent`` for stage ``key``: the parent's stages before ``key`` that have artifacts
    are copied (and must have finished); the child lives beside the parent."""
    reuse = tuple(
        s
        for s in KEYS[: KEYS.index(key)]
        if (parent.path / "artifacts" / STAGE_NAMES[s]).is_dir()
        and any((parent.path / "artifacts" / STAGE_NAMES[s]).iterdir())
    )
    return new_notebook_run(
        door,
        f"{parent.run_id.split('-', 2)[-1][:20]}-{door[:5]}-{key}",
        parent.path.parent,
        parent=parent,
        reuse=reuse,
        status=status,
    )


def reserve_child(parent_ref: str, stage: str, root: Optional[Path] = None) -> Run:
    """``workbench child RUN --stage NN``: a child run made *before* papermill starts, so the executed
    notebook can be written into its ``notebooks/``; the kernel then opens stage NN in it."""
    parent = Run.open(parent_ref, root)
    return make_child(parent, stage_key(stage), "papermill", status="reserved")


def _claim(run: Run, key: str, door: str) -> Stage:
    """Record this process as the one working on stage ``key`` (closing the run's earlier open stages)
    and hook the kernel so the manifest ends with the stage's real outcome."""
    name = STAGE_NAMES[key]
    man = run.manifest()
    stages = man.setdefault("stages", {})
    for other, e in stages.items():
        if other < name and e.get("status") == "open":
            e["status"] = "done"
            e["closed"] = _now()
    entry = stages.setdefault(name, {})
    entry.update(status="open" if door == "interactive" else "running", started_by=door, **process_identity())
    entry.setdefault("started", _now())
    if _notebook_params:
        entry["params"] = dict(_notebook_params)
        _merge_params(run, man, key)
    if man.get("status") == "reserved":
        man.update(process_identity())
        man["status"] = "open" if door == "interactive" else "running"
        man["started_by"] = door
    elif door != "interactive":
        man.update(process_identity())
    run.write_json("manifest.json", man)
    stage_obj = Stage(run, key)
    _install_hooks(run, key, door)
    return stage_obj


def _merge_params(run: Run, man: dict, key: str) -> None:
    """The notebook's values become the run's parameters, except names a reused stage also declares:
    those keep the parent's value (the reused artifacts were made with it) and the difference is
    recorded in the stage entry."""
    import yaml

    from workbench.runs.pipeline import USED_ONLY_IF, declared_parameters, notebook_for

    params = dict(man.get("params") or {})
    reused = [n[:2] for n in man.get("reused_from_parent") or []]
    owned_by_reused: set[str] = set()
    for s in reused:
        try:
            declared = declared_parameters(notebook_for(s))
        except RunError:
            continue
        if s == "01":  # the same rule as `--from/--parent`: names stage 01 uses only under a condition
            declared = [n for n in declared if n not in USED_ONLY_IF or USED_ONLY_IF[n](params)]
        owned_by_reused.update(declared)
    kept = {}
    for k, v in _notebook_params.items():
        if k in owned_by_reused and k in params:
            if params[k] != v:
                kept[k] = {"parent": params[k], "notebook": v}
            continue
        params[k] = v
    man["params"] = params
    if kept:
        man["stages"][STAGE_NAMES[key]]["params_kept_from_parent"] = kept
    try:
        (run.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    except OSError as exc:
        raise RunError(f"cannot write {run.path / 'params.yaml'}: {exc.strerror or exc}") from exc


def _install_hooks(run: Run, key: str, door: str) -> None:
    """In a papermill kernel: a cell error marks the stage failed at once; kernel exit marks it
    succeeded otherwise, and a detached process renders the executed notebook once papermill has
    written it. Interactive kernels: on exit, a detached process copies the notebook as last saved
    into the run and renders it. Nothing is hooked outside a kernel."""
    tag = f"{run.path}:{key}"
    if tag in _hooked or not _in_kernel():
        return
    _hooked.add(tag)
    from IPython import get_ipython

    ip = get_ipython()
    name = STAGE_NAMES[key]

    def on_cell(result: Any) -> None:
        err = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if err is None or door == "interactive":
            return
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        _update(
            run,
            name,
            status,
            error={"type": type(err).__name__, "message": str(err), "summary": f"{type(err).__name__}: {err}"},
        )

    def on_exit() -> None:
        if door != "interactive":
            _update(run, name, "succeeded", only_if="running")
        _spawn_finisher(run, name, door)

    ip.events.register("post_run_cell", on_cell)
    atexit.register(on_exit)


def _update(run: Run, name: str, status: str, only_if: str = "", **info: Any) -> None:
    try:
        man = run.manifest()
        entry = man.get("stages", {}).get(name, {})
        if only_if and entry.get("status") != only_if:
            return
        entry.update(status=status, finished=_now(), **info)
        entry["backends"] = sorted(
            {str(m["backend"]) for m in run.metrics() if m.get("stage") == name and m.get("backend")}
        )
        if man.get("started_by") != "interactive":
            man["status"] = status
            man["finished"] = _now()
            if status == "failed":
                man["failed_stage"] = name
        run.write_json("manifest.json", man)
    except (RunError, OSError):
        pass  # the kernel is going away; `workbench list` shows a dead owner as stale


def _spawn_finisher(run: Run, name: str, door: str) -> None:
    waited = os.environ.get("JPY_PARENT_PID", "")
    cmd = [sys.executable, "-m", "workbench.runs.finish", str(run.path), name]
    if waited.isdigit() and door != "interactive":  # papermill writes the notebook after we exit
        cmd += ["--wait-pid", waited]
    session = os.environ.get("JPY_SESSION_NAME", "")
    if door == "interactive" and session.endswith(".ipynb"):
        cmd += ["--copy-from", session]
    try:
        subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    except OSError:
        pass

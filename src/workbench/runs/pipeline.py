"""Execute the stage notebooks with papermill into one run directory, render them, write the manifest.

A failing stage stops the run: the partial notebook (with the traceback) is kept and rendered, the
manifest records the failure, and the caller gets a `StageFailed` naming the stage and the cell error.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Union

from workbench.config import Params, dump_params
from workbench.errors import RunError, RunInterrupted, StageFailed
from workbench.runs.progress import ProgressMode, papermill_progress
from workbench.runs.store import (
    STAGE_NAMES,
    STAGES,
    Run,
    check_reusable,
    copy_stage_artifacts,
    overwrite_in_place,
    process_identity,
    stage_key,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
NOTEBOOK_DIR = Path(os.environ.get("WORKBENCH_NOTEBOOKS", PROJECT_ROOT / "notebooks"))
KERNEL_NAME = "python3"

# Distribution names whose versions every manifest records (Hailo ones only when installed).
VERSIONED = ["torch", "numpy", "onnx", "onnxruntime", "onnxslim", "papermill", "nbconvert", "scipy"]
HAILO_DISTS = ["hailo-dataflow-compiler", "hailort", "hailo_sdk_client", "hailo_platform"]
# Parameters holding paths: made absolute before injection, since notebooks run with their own cwd.
PATH_PARAMS = ("data_dir", "checkpoint_path", "hef_path", "weights_path", "normalizer_path")
# Signals that end a run through the failure path with status 'interrupted'.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


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
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
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
    mp = out.get("model_path")
    if mp and (str(mp).lower().endswith(".onnx") or Path(mp).expanduser().exists()):  # not a module:function
        out["model_path"] = str(Path(mp).expanduser().resolve())
    return out


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def select_stages(from_stage: str = "01", to_stage: str = STAGES[-1][0]) -> list[str]:
    keys = [n for n, _ in STAGES]
    a, b = stage_key(from_stage), stage_key(to_stage)
    if keys.index(a) > keys.index(b):
        raise RunError(f"--from {a} comes after --to {b}")
    return keys[keys.index(a) : keys.index(b) + 1]


# Parameters whose unset value means "what the data says"; a run resolves them before it starts.
RESOLVED_FROM_DATA = ("sample_rate_hz",)
# Parameters a stage declares but uses only under a condition on the parent's values: stage 01 reads the
# INT8 calibration size and the cut only for quantization-aware fine-tuning (qat_epochs > 0). A child that
# reuses a stage 01 trained without it may change them (the usual `--from 05 -p quant_calib_size N`).
USED_ONLY_IF: dict[str, Any] = {
    "quant_calib_size": lambda parent: int(parent.get("qat_epochs") or 0) > 0,
    "cut": lambda parent: int(parent.get("qat_epochs") or 0) > 0,
}


def reused_param_differences(
    params: Params, parent: Run, reused: list[str], notebooks_dir: Path = NOTEBOOK_DIR
) -> dict[str, tuple[Any, Any]]:
    """Parameters a reused stage's notebook declares whose value differs from the parent's: the reused
    artifacts were made with the parent's value, so the new run would describe a model it lacks."""
    parent_params = parent.manifest().get("params") or parent.params() or {}
    mine = json.loads(json.dumps(params.model_dump(), default=str))
    theirs = json.loads(json.dumps(parent_params, default=str))
    out: dict[str, tuple[Any, Any]] = {}
    for s in reused:
        for name in declared_parameters(notebook_for(s, notebooks_dir)):
            if name in RESOLVED_FROM_DATA and mine.get(name) is None:
                continue  # unset = "the data's own value": the parent's resolved one is reused as is
            if s == "01" and name in USED_ONLY_IF and not USED_ONLY_IF[name](theirs):
                continue  # the parent's stage 01 did not use it
            if name in mine and name in theirs and mine[name] != theirs[name] and name not in out:
                out[name] = (theirs[name], mine[name])
    return out


def _validate_parent(
    params: Params,
    parent: Optional[str],
    root: Optional[Path],
    stages: list[str],
    earlier: list[str],
    notebooks_dir: Path,
) -> Optional[Run]:
    """Everything about --from/--parent that can be refused is refused here, before a directory exists."""
    parent_run = Run.open(parent, root) if parent else None
    if earlier and parent_run is None:
        raise RunError(
            f"--from {stages[0]} reuses stages {earlier[0]}-{earlier[-1]} of a parent run: "
            f"add --parent RUN (run ids: python -m workbench list)"
        )
    if parent_run is None:
        return None
    check_reusable(parent_run, earlier)
    diffs = reused_param_differences(params, parent_run, earlier, notebooks_dir)
    if diffs:
        listed = "; ".join(f"{k}: parent {a!r}, this run {b!r}" for k, (a, b) in diffs.items())
        raise RunError(
            f"--from {stages[0]} reuses stages {earlier[0]}-{earlier[-1]} of run "
            f"{parent_run.run_id}, which were made with other values of parameters they use "
            f"({listed}). Drop those overrides (without -f, --parent starts from the parent's "
            f"params.yaml) and override only later stages' parameters, or rerun from the "
            f"first stage that uses them (--from 01)."
        )
    return parent_run


def run_pipeline(
    params: Params,
    *,
    from_stage: str = "01",
    to_stage: str = STAGES[-1][0],
    parent: Optional[str] = None,
    root: Optional[Path] = None,
    notebooks_dir: Path = NOTEBOOK_DIR,
    progress: Union[ProgressMode, bool] = True,
    log=print,
) -> Run:
    """Run stages [from_stage, to_stage] into a new run directory and return it. ``progress``: ``bar``
    (or True) a live per-cell bar, ``lines`` a line at most every few seconds (for logs), ``off``/False."""
    stages = select_stages(from_stage, to_stage)
    earlier = [n for n, _ in STAGES][: [n for n, _ in STAGES].index(stages[0])]
    notebooks = {s: notebook_for(s, notebooks_dir) for s in stages}  # fail before creating anything
    parent_run = _validate_parent(params, parent, root, stages, earlier, notebooks_dir)
    from workbench.runs.preflight import check_inputs

    checked = check_inputs(
        params,
        stages,
        parent_windows=parent_run.artifact("windows", must_exist=False) if parent_run else None,
        parent_params=(parent_run.manifest().get("params") or parent_run.params() if parent_run else None),
    )
    params = checked.params  # resolved against the data (e.g. sample_rate_hz from the file)
    for note in checked.notes:
        log(f"note: {note}")
    unused = params.explicitly_set_not_applied()
    if unused:
        log("note: parameters set but not used by this run: " + "; ".join(f"{k} ({why})" for k, why in unused.items()))
    if "01" in stages and params.mode == "import":
        from workbench.model.importing import preflight_import

        preflight_import(params)

    run = Run.create(params.run_label, root)
    try:  # a setup that fails leaves nothing behind
        if parent_run is not None:
            copy_stage_artifacts(parent_run, run, earlier)
        dump_params(params, run.path / "params.yaml")
        manifest: dict[str, Any] = {
            "run_id": run.run_id,
            "created": _now(),
            "status": "running",
            "started_by": "pipeline",
            "command": " ".join(sys.argv),
            "params": params.model_dump(),
            "params_not_applied": params.not_applied(),  # present in "params" but without effect here
            "preflight_notes": checked.notes,
            "parent": parent_run.run_id if parent_run else None,
            "reused_from_parent": [STAGE_NAMES[s] for s in earlier],
            "versions": package_versions(),
            "git": git_commit(),
            "host": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
            **process_identity(),
            "stages": {STAGE_NAMES[s]: {"status": "pending"} for s in stages},
        }
        run.write_json("manifest.json", manifest)
    except BaseException as exc:
        shutil.rmtree(run.path, ignore_errors=True)
        if isinstance(exc, OSError):
            raise RunError(f"cannot set up run {run.run_id}: {exc.strerror or exc}") from exc
        raise
    log(f"run {run.run_id}: stages {stages[0]}-{stages[-1]} -> {run.path}")

    from workbench.runs.index_page import write_index

    # Headless kernels inherit this environment (progress bars off; see runs.kernel). The run path tells
    # open_stage that this kernel belongs to the pipeline's own run.
    from workbench.runs.kernel import HEADLESS_ENV

    env_keys = {**HEADLESS_ENV, "WORKBENCH_PIPELINE_RUN": str(run.path.resolve())}
    env_before = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    handlers = _install_signal_handlers()
    try:
        for s in stages:
            _run_stage(run, s, notebooks[s], params, manifest, progress, log)
        manifest["status"] = "succeeded"
        manifest["finished"] = _now()
        run.write_json("manifest.json", manifest)
    except BaseException as exc:
        _ignore_signals()  # a second signal must not cut the failure record short
        if manifest.get("status") not in ("failed", "interrupted"):  # outside a notebook
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest.update(
                status=status, finished=_now(), error=_describe_error(exc), failed_stage=_current_stage(manifest)
            )
            for entry in manifest["stages"].values():
                if entry.get("status") == "running":
                    entry["status"] = status
        _final_manifest(run, manifest, log)
        _safe_index(run, log)
        if isinstance(exc, KeyboardInterrupt):
            raise RunInterrupted(run.run_id, str(run.path), _current_stage(manifest), _signal_name(exc)) from None
        if isinstance(exc, OSError):
            raise RunError(
                f"run {run.run_id} stopped: {exc.strerror or exc} "
                f"({getattr(exc, 'filename', '') or run.path}); free some space or make "
                f"the outputs folder writable, then run again"
            ) from exc
        raise
    finally:
        _restore_signal_handlers(handlers)
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    write_index(run)
    log(f"run {run.run_id} succeeded: open {run.path / 'html' / 'index.html'}")
    return run


def _final_manifest(run: Run, manifest: dict, log) -> None:
    """Record the end of a failed run; when even that write fails (disk full) rewrite the file in place
    so it never stays at 'running' (``workbench list`` shows a dead owner as stale anyway)."""
    try:
        run.write_json("manifest.json", manifest)
    except RunError as exc:
        if not overwrite_in_place(run.manifest_path, manifest):
            log(f"warning: {exc}")


def _current_stage(manifest: dict) -> str:
    """The stage a run stopped in: the last one that started."""
    started = [n for n, e in manifest["stages"].items() if e.get("status") != "pending"]
    return (started or list(manifest["stages"]))[-1]


def _signal_name(exc: BaseException) -> str:
    return str(exc) if str(exc).startswith("SIG") else "SIGINT (Ctrl-C)"


def _on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _install_signal_handlers() -> dict[int, Any]:
    """SIGTERM and SIGHUP (and SIGINT) become a KeyboardInterrupt naming the signal, so every way of
    stopping a run goes through the same failure path. Only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}


def _ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _safe_index(run: Run, log) -> None:
    """On failure the index is still written, but it must never mask the stage error."""
    from workbench.runs.index_page import write_index

    try:
        write_index(run)
    except Exception as exc:
        log(f"warning: could not write the HTML index: {exc}")


def _run_stage(
    run: Run, s: str, nb_path: Path, params: Params, manifest: dict, progress: Union[ProgressMode, bool], log
) -> None:
    import papermill as pm

    from workbench.runs.kernel import kernel_options

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
        pm.execute_notebook(
            str(nb_path),
            str(out_nb),
            parameters=injected,
            kernel_name=KERNEL_NAME,
            cwd=str(nb_path.parent),
            progress_bar=papermill_progress(progress, f"[{s}] {name}", sys.stderr),
            log_output=False,
            **kernel_options(),
        )
    except BaseException as exc:  # PapermillExecutionError, KeyboardInterrupt, kernel death
        error = exc
    entry["duration_s"] = round(time.perf_counter() - t0, 2)
    entry["finished"] = _now()
    status_file = run.path / "artifacts" / name / "stage_status.json"
    if status_file.exists():
        entry["stage_status"] = json.loads(status_file.read_text())
    if isinstance(error, KeyboardInterrupt):
        entry["status"] = manifest["status"] = "interrupted"
        entry["error"] = manifest["error"] = {
            "type": "interrupted",
            "signal": _signal_name(error),
            "summary": f"interrupted by {_signal_name(error)}",
        }
        manifest["failed_stage"] = name
        manifest["finished"] = _now()
        _ignore_signals()
        _mark_unrun_cells(out_nb)
        if out_nb.exists():
            try:
                entry["html"] = _render(out_nb, run)
            except Exception as exc:
                entry["render_error"] = str(exc)
        _final_manifest(run, manifest, log)
        log(f"[{s}] {name} INTERRUPTED by {_signal_name(error)} after {entry['duration_s']} s")
        raise error
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
            None if _is_papermill_error(error) else error
        )
    entry["status"] = (entry.get("stage_status") or {}).get("status", "succeeded")
    entry["backends"] = sorted({m["backend"] for m in run.metrics() if m["stage"] == name})
    run.write_json("manifest.json", manifest)
    entry["html"] = _render(out_nb, run)
    run.write_json("manifest.json", manifest)
    log(f"[{s}] {name} {entry['status']} in {entry['duration_s']} s")


def _mark_unrun_cells(nb_path: Path) -> None:
    """Papermill marks every pending cell 'completed' when execution stops without a cell error (an
    interrupt): put the cells that never started back to 'pending' so the partial notebook is true."""
    if not nb_path.exists():
        return
    try:
        import nbformat

        nb = nbformat.read(str(nb_path), as_version=4)
        for cell in nb.cells:
            pm_meta = cell.get("metadata", {}).get("papermill")
            if pm_meta is not None and pm_meta.get("start_time") is None:
                pm_meta["status"] = "pending"
        nbformat.write(nb, str(nb_path))
    except Exception:  # a partial notebook that cannot be fixed is still kept as it is
        pass


def _is_papermill_error(exc: BaseException) -> bool:
    from papermill.exceptions import PapermillExecutionError

    return isinstance(exc, PapermillExecutionError)


def _describe_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, KeyboardInterrupt):
        return {"type": "interrupted", "signal": _signal_name(exc), "summary": f"interrupted by {_signal_name(exc)}"}
    if _is_papermill_error(exc):
        ename = getattr(exc, "ename", type(exc).__name__)
        evalue = getattr(exc, "evalue", str(exc))
        cell = getattr(exc, "exec_count", None)
        return {
            "type": ename,
            "message": evalue,
            "cell_execution_count": cell,
            "summary": f"{ename}: {evalue} (in cell [{cell}])",
        }
    return {"type": type(exc).__name__, "message": str(exc), "summary": f"{type(exc).__name__}: {exc}"}


def _render(nb_path: Path, run: Run) -> dict[str, str]:
    return {k: str(Path(v).relative_to(run.path)) for k, v in _render_to(nb_path, run.path / "html").items()}


# Added to every rendered notebook: wide tables and long outputs scroll inside the page instead of being
# cut off, figures never overflow, and stderr (warnings) reads as a note rather than an error block.
RENDER_CSS = """<style>
.jp-RenderedHTMLCommon table, .jp-OutputArea-output table{display:block;overflow-x:auto;max-width:100%}
.jp-OutputArea-output pre{overflow-x:auto;white-space:pre}
.jp-RenderedImage img, .jp-OutputArea-output img{max-width:100%;height:auto}
.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]{background:#fff8e1;color:#5d4300}
</style>"""


# The HTML the sanitiser keeps: what Markdown, pandas tables (DataFrame and Styler) and nbconvert's
# own wrappers produce. No script, img, iframe, form, object or event-handler attributes; links only
# with http(s)/mailto or in-page targets (bleach's default protocols).
SAFE_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "span",
        "strong",
        "style",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    }
)
SAFE_ATTRIBUTES = {
    "*": ["class", "id", "title", "style"],
    "a": ["href", "title", "class", "id"],
    "th": ["colspan", "rowspan", "class", "id", "style"],
    "td": ["colspan", "rowspan", "class", "id", "style"],
    "table": ["border", "class", "id"],
    "style": ["type", "scoped"],
    "ol": ["start"],
}


def sanitize_html(fragment: Any) -> str:
    """Backstop for rendered reports: bleach with an allow-list wide enough for Markdown and pandas tables.

    Notebooks escape data-derived text themselves (``workbench.notebook``); this runs on every HTML and
    Markdown output and Markdown cell, so markup that slipped through is shown as text, never executed.
    ``<style>`` stays allowed because pandas' Styler puts its colours there (CSS cannot run script);
    inline styles pass bleach's CSS property allow-list.
    """
    import bleach
    from bleach.css_sanitizer import CSSSanitizer

    text = fragment.decode() if isinstance(fragment, bytes) else str(fragment)
    return bleach.clean(
        text, tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES, strip=False, strip_comments=True, css_sanitizer=CSSSanitizer()
    )


def _render_to(nb_path: Path, html_dir: Path) -> dict[str, str]:
    """Full and results-only HTML side by side; images stay embedded as data URIs.

    nbconvert's ``sanitize_html`` is on: Markdown cells, HTML and Markdown outputs pass ``clean_html``,
    JavaScript outputs are dropped. nbconvert 7's own ``clean_html`` allows too few tags for our reports
    (no headings, paragraphs or table headers: they would show as literal tags), so the filter is
    replaced by :func:`sanitize_html`.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(nb_path), as_version=4)
    out = {}
    for kind, exclude in (("full", False), ("results", True)):
        exporter = HTMLExporter(
            exclude_input=exclude,
            exclude_input_prompt=exclude,
            exclude_output_prompt=exclude,
            sanitize_html=True,
            filters={"clean_html": sanitize_html},
        )
        body, _ = exporter.from_notebook_node(nb)
        body = body.replace("</head>", RENDER_CSS + "\n</head>", 1)
        suffix = "" if kind == "full" else ".results"
        target = html_dir / f"{nb_path.stem}{suffix}.html"
        target.write_text(body, encoding="utf-8")
        out[kind] = str(target)
    return out

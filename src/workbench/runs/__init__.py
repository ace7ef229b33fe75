"""workbench.runs: everything about runs rather than about models.

``store`` (run directories, manifest, artifact names, stages), ``pipeline`` (papermill execution and
HTML renders), ``sweep`` (grids of runs), ``listing`` (``workbench list``), ``compare`` (runs side by
side) and ``index_page`` (the reviewer's index). Notebooks import ``open_stage`` from here.
"""

from workbench.runs.store import (
    ARTIFACTS,
    STAGE_NAMES,
    STAGES,
    Run,
    RunError,
    Stage,
    copy_stage_artifacts,
    new_run_id,
    open_stage,
    outputs_root,
    stage_key,
)

__all__ = [
    "ARTIFACTS",
    "STAGE_NAMES",
    "STAGES",
    "Run",
    "RunError",
    "Stage",
    "copy_stage_artifacts",
    "new_run_id",
    "open_stage",
    "outputs_root",
    "stage_key",
]

"""Terminal views of a run: the plan `workbench run --dry-run` prints before anything exists, and the
closing table after a run (stages, seconds, what was found, what did not run and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from workbench.config import Params
from workbench.runs.store import STAGE_NAMES, STAGES, Run
from workbench.runs.sweep_report import format_table


def format_plan(
    params: Params,
    from_stage: str = "01",
    to_stage: str = "08",
    parent: Optional[str] = None,
    root: Optional[Path] = None,
) -> str:
    """Resolved parameters (values that differ from the schema default marked with *) and, per stage,
    whether it runs, is reused from the parent or is left out, with the parameters its notebook reads."""
    from workbench.runs.pipeline import declared_parameters, notebook_for, select_stages

    chosen = select_stages(from_stage, to_stage)
    parent_run = Run.open(parent, root) if parent else None
    defaults = {n: f.default for n, f in Params.model_fields.items()}
    values = params.model_dump()
    lines = ["resolved parameters (* differs from the default):"]
    for name, value in values.items():
        mark = "*" if value != defaults.get(name) else " "
        lines.append(f" {mark} {name}: {yaml.safe_dump(value, default_flow_style=True).strip()}".replace("\n...", ""))
    rows = []
    for key, _ in STAGES:
        name = STAGE_NAMES[key]
        if key in chosen:
            nb = notebook_for(key)
            reads = [p for p in declared_parameters(nb) if p in values]
            rows.append([name, "run", ", ".join(reads)])
        elif [k for k, _ in STAGES].index(key) < [k for k, _ in STAGES].index(chosen[0]):
            rows.append([name, f"reused from {parent_run.run_id}" if parent_run else "needs --parent", ""])
        else:
            rows.append([name, "not run (after --to)", ""])
    lines += [
        "",
        "stage plan (nothing has been run; drop --dry-run to run it):",
        format_table(["stage", "action", "parameters read"], rows),
    ]
    return "\n".join(lines)


def closing_table(run: Run) -> str:
    """What `workbench run` prints last: one row per stage, then the run's summary in a few lines."""
    from workbench.runs.summary import stage_statuses, summarize

    rows = []
    for name, entry in stage_statuses(run).items():
        status = "reused" if entry.get("reused_from") else entry.get("status", "?")
        seconds = entry.get("duration_s")
        note = (entry.get("error") or {}).get("summary") or (entry.get("stage_status") or {}).get("reason") or ""
        if entry.get("reused_from"):
            note = f"from {entry['reused_from']}"
        rows.append([name, status, f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "", note[:100]])
    out = [format_table(["stage", "status", "seconds", "note"], rows)]
    try:
        s = summarize(run)
    except Exception as exc:  # the table above already tells the stage story
        return "\n".join(out + [f"(summary unavailable: {exc})"])
    for backends, acc in s.accuracy:
        out.append(f"accuracy {acc:.4f}  {' = '.join(backends)}  ({s.accuracy_source})")
    if "delta_accuracy" in s.int8:
        out.append(
            f"INT8 effect: accuracy {100 * s.int8['delta_accuracy']:+.2f} points"
            + (f", code flips {100 * s.int8['code_flip_rate']:.2f} %" if "code_flip_rate" in s.int8 else "")
        )
    for backends, (before, after) in s.ece:
        out.append(f"ECE {before:.4f} -> {after:.4f} after temperature scaling  {' = '.join(backends)}")
    for n in s.not_run:
        out.append(f"{n.what} not run: {n.reason}")
    out.append(f"open {run.path / 'html' / 'index.html'}")
    return "\n".join(out)

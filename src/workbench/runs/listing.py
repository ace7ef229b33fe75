"""`workbench list`: one line per run with its status, data and headline metrics.

The list never crashes on what it finds: a manifest that cannot be read is shown as ``unreadable``,
metric rows missing keys are skipped, and a run whose process is gone shows as ``stale``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from workbench.errors import RunError
from workbench.runs.store import Run, outputs_root, process_alive

# Metric names shown in the list, in order; each appears once per backend that reported it.
HEADLINE = ("test_accuracy", "accuracy", "ece_after_ts", "code_flip_rate", "latency_e2e_p95")
# Statuses that claim a live process; shown as 'stale' when that process is gone.
LIVE = ("running",)


def runs_under(root: Optional[Path] = None) -> list[Run]:
    root = Path(root) if root else outputs_root()
    if not root.is_dir():
        return []
    return [Run(d) for d in sorted(root.iterdir()) if (d / "manifest.json").exists()]


def headline(rows: list[Any], limit: int = 6) -> str:
    picked = []
    for name in HEADLINE:
        for m in rows:
            if not isinstance(m, dict):
                continue
            value, backend = m.get("value"), m.get("backend", "?")
            if m.get("name") == name and isinstance(value, (int, float)) and not isinstance(value, bool):
                picked.append(f"{name}[{backend}]={value:.4g}")
    return "  ".join(picked[:limit]) or "-"


def display_status(man: dict) -> str:
    """The manifest's status, except that a run claiming a live process whose process is gone (killed,
    machine rebooted) is 'stale'."""
    status = str(man.get("status", "?"))
    if status in LIVE and process_alive(man) is False:
        return "stale"
    return status


def run_line(run: Run) -> str:
    try:
        man = run.manifest()
        if not isinstance(man, dict):
            raise RunError("manifest.json is not a JSON object")
    except RunError:
        return f"{run.run_id:<44} {'unreadable':<12} manifest.json cannot be read"
    stages = man.get("stages") if isinstance(man.get("stages"), dict) else {}
    done = sum(
        1
        for e in stages.values()
        if isinstance(e, dict) and e.get("status") not in ("pending", "running", "failed", "interrupted", "open")
    )
    done += len(man.get("reused_from_parent") or [])
    params = man.get("params") if isinstance(man.get("params"), dict) else {}
    try:
        rows = run.metrics()
    except (RunError, AttributeError):
        rows = []
    door = str(man.get("started_by", "pipeline"))
    return (
        f"{run.run_id:<44} {display_status(man):<12} {door:<12} {str(params.get('dataset', '?')):<10} "
        f"{done:<7} {headline(rows if isinstance(rows, list) else [])}"
    )


def format_run_list(root: Optional[Path] = None) -> str:
    runs = runs_under(root)
    if not runs:
        return f"no runs under {Path(root) if root else outputs_root()}/ yet (make run)"
    lines = [f"{'run':<44} {'status':<12} {'started by':<12} {'dataset':<10} {'stages':<7} headline metrics"]
    lines += [run_line(run) for run in runs]
    return "\n".join(lines)


def format_metric_list(names: list[str], root: Optional[Path] = None) -> str:
    """`workbench list --metrics a,b`: one column per chosen metric and backend that reported it (reused
    stages' numbers come from the parent run), ids never truncated, columns aligned to their content."""
    from workbench.runs.summary import lineage_metrics
    from workbench.runs.sweep_report import format_table

    runs = runs_under(root)
    if not runs:
        return f"no runs under {Path(root) if root else outputs_root()}/ yet (make run)"
    values: list[dict[str, str]] = []
    columns: list[str] = []
    for run in runs:
        row: dict[str, str] = {}
        for m in lineage_metrics(run):
            if m["name"] in names and isinstance(m["value"], (int, float)) and not isinstance(m["value"], bool):
                col = f"{m['name']} [{m['backend']}]"
                row[col] = f"{m['value']:.4g}"
                if col not in columns:
                    columns.append(col)
        values.append(row)
    missing = [n for n in names if not any(c.startswith(n + " [") for c in columns)]
    columns.sort(key=lambda c: (names.index(c.split(" [")[0]), c))
    table = format_table(
        ["run", "status"] + columns,
        [[r.run_id, r.manifest().get("status", "?")] + [v.get(c, "-") for c in columns] for r, v in zip(runs, values)],
    )
    return table + (f"\n(no run recorded: {', '.join(missing)})" if missing else "")

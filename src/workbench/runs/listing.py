"""`workbench list`: one line per run with its status, data and headline metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from workbench.runs.store import Run, outputs_root

# Metric names shown in the list, in order; each appears once per backend that reported it.
HEADLINE = ("test_accuracy", "accuracy", "ece_after_ts", "code_flip_rate", "latency_e2e_p95")


def runs_under(root: Optional[Path] = None) -> list[Run]:
    root = Path(root) if root else outputs_root()
    if not root.is_dir():
        return []
    return [Run(d) for d in sorted(root.iterdir()) if (d / "manifest.json").exists()]


def headline(run: Run, limit: int = 6) -> str:
    picked = []
    for name in HEADLINE:
        for m in run.metrics():
            if m["name"] == name and isinstance(m["value"], (int, float)):
                picked.append(f"{name}[{m['backend']}]={m['value']:.4g}")
    return "  ".join(picked[:limit]) or "-"


def format_run_list(root: Optional[Path] = None) -> str:
    runs = runs_under(root)
    if not runs:
        return f"no runs under {Path(root) if root else outputs_root()}/ yet (make run)"
    lines = [f"{'run':<44} {'status':<10} {'dataset':<10} {'stages':<7} headline metrics"]
    for run in runs:
        man = run.manifest()
        stages = man.get("stages", {})
        done = sum(1 for e in stages.values() if e.get("status") not in ("pending", "running", "failed"))
        done += len(man.get("reused_from_parent", []))
        lines.append(f"{run.run_id:<44} {man.get('status', '?'):<10} "
                     f"{man.get('params', {}).get('dataset', '?'):<10} {done:<7} {headline(run)}")
    return "\n".join(lines)

"""Runs side by side: parameters that differ, metrics per backend, stage-05 comparisons, reliability.

Functions take runs and return tables; `compare_runs` is the I/O edge that writes a comparison folder
(CSV tables, the executed 09_compare_runs notebook and its HTML, an index page).
"""
from __future__ import annotations

import datetime as _dt
import json
import secrets
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from workbench.runs import STAGE_NAMES, Run, outputs_root


class CompareError(ValueError):
    pass


def open_runs(refs: Sequence[str | Path], root: Optional[Path] = None) -> list[Run]:
    runs = [Run.open(r, root) for r in refs]
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs (see `python -m workbench list`)")
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise CompareError(f"the same run was named twice: {ids}")
    return runs


def param_diff(runs: Sequence[Run]) -> pd.DataFrame:
    """Only the parameters whose values differ between the runs (rows) per run (columns)."""
    params = {r.run_id: r.params() for r in runs}
    names = sorted(set().union(*[p.keys() for p in params.values()]))
    rows = {}
    for n in names:
        values = [json.dumps(params[r].get(n), sort_keys=True) for r in params]
        if len(set(values)) > 1:
            rows[n] = {r: params[r].get(n) for r in params}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "parameter"
    return df


def metrics_table(runs: Sequence[Run]) -> pd.DataFrame:
    """(stage, metric, backend) x run: every headline number under the backend that produced it."""
    records = []
    for r in runs:
        for m in r.metrics():
            if isinstance(m.get("value"), (int, float)) and not isinstance(m.get("value"), bool):
                records.append({"stage": m["stage"], "metric": m["name"], "backend": m["backend"],
                                "run": r.run_id, "value": m["value"]})
    if not records:
        return pd.DataFrame()
    df = pd.DataFrame(records)
    table = df.pivot_table(index=["stage", "metric", "backend"], columns="run", values="value",
                           aggfunc="first")
    return table[[r.run_id for r in runs if r.run_id in table.columns]]  # the order the user gave


def stage_table_across(runs: Sequence[Run], artifact: str) -> pd.DataFrame:
    """Concatenate one CSV artifact (e.g. quant_comparison) over runs, with a `run` column."""
    frames = []
    for r in runs:
        path = r.artifact(artifact, must_exist=False)
        if not path.exists():  # that run did not reach the stage; the table lists the runs that did
            continue
        df = pd.read_csv(path)
        df.insert(0, "run", r.run_id)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def reliability_of(run: Run) -> Optional[dict]:
    p = run.path / "artifacts" / STAGE_NAMES["08"] / "reliability.json"
    return json.loads(p.read_text()) if p.exists() else None


def reliability_curves(runs: Sequence[Run]) -> pd.DataFrame:
    """Per run, backend and before/after temperature scaling: the equal-width reliability bins on the
    test subjects (confidence, accuracy, count), from stage 08's reliability.json."""
    rows = []
    for r in runs:
        rel = reliability_of(r)
        for backend, res in ((rel or {}).get("backends") or {}).items():
            for when, key in (("before", "test_before_scaling"), ("after", "test_after_scaling")):
                bins = ((res.get(key) or {}).get("ece") or {}).get("bins") or {}
                for conf, acc, count in zip(bins.get("confidence", []), bins.get("accuracy", []),
                                            bins.get("count", [])):
                    if count:
                        rows.append({"run": r.run_id, "backend": backend, "when": when,
                                     "confidence": conf, "accuracy": acc, "count": count})
    return pd.DataFrame(rows, columns=["run", "backend", "when", "confidence", "accuracy", "count"])


def compare_runs(refs: Sequence[str | Path], root: Optional[Path] = None, notebook: bool = True,
                 out_dir: Optional[Path] = None) -> Path:
    runs = open_runs(refs, root)
    base = Path(root) if root else outputs_root()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out_dir or base / "comparisons" / f"{stamp}-compare-{secrets.token_hex(2)}"
    out.mkdir(parents=True, exist_ok=False)
    (out / "runs.json").write_text(json.dumps([str(r.path.resolve()) for r in runs], indent=2))
    tables = {"params_diff": param_diff(runs), "metrics": metrics_table(runs),
              "quant_comparison": stage_table_across(runs, "quant_comparison")}
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv")
    links = ""
    if notebook:
        links = _run_compare_notebook(runs, out)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>comparison</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1150px;margin:2rem auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem}</style>",
             "</head><body><h1>Run comparison</h1><ul>"]
    parts += [f"<li><code>{r.run_id}</code> ({r.params().get('dataset', '?')})</li>" for r in runs]
    parts.append("</ul>" + links)
    for name, df in tables.items():
        parts.append(f"<h2>{name.replace('_', ' ')}</h2>"
                     + (df.to_html(float_format=lambda v: f"{v:.4g}") if not df.empty else "<p>none</p>"))
    parts.append("</body></html>")
    (out / "index.html").write_text("\n".join(parts), encoding="utf-8")
    return out


def _run_compare_notebook(runs: Sequence[Run], out: Path) -> str:
    import papermill as pm

    from workbench.pipeline import KERNEL_NAME, NOTEBOOK_DIR, _render_to

    nb = NOTEBOOK_DIR / "09_compare_runs.ipynb"
    executed = out / "09_compare_runs.ipynb"
    pm.execute_notebook(str(nb), str(executed), kernel_name=KERNEL_NAME, cwd=str(NOTEBOOK_DIR),
                        parameters={"runs": [str(r.path.resolve()) for r in runs]}, progress_bar=False)
    rendered = _render_to(executed, out)
    return ("<p>" + " · ".join(f"<a href='{Path(p).name}'>{k} notebook</a>" for k, p in rendered.items())
            + "</p>")

"""Runs side by side: parameters that differ, metrics per backend, stage-05 comparisons, reliability.

Functions take runs and return tables; `compare_runs` is the I/O edge that writes a comparison folder
(CSV tables, the executed compare_runs notebook and its HTML, an index page).
"""
from __future__ import annotations

import datetime as _dt
import json
import secrets
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from workbench.errors import CompareError
from workbench.runs.store import STAGE_NAMES, Run, outputs_root


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

    from workbench.runs.pipeline import KERNEL_NAME, NOTEBOOK_DIR, _render_to

    nb = NOTEBOOK_DIR / "compare_runs.ipynb"
    executed = out / "compare_runs.ipynb"
    pm.execute_notebook(str(nb), str(executed), kernel_name=KERNEL_NAME, cwd=str(NOTEBOOK_DIR),
                        parameters={"runs": [str(r.path.resolve()) for r in runs]}, progress_bar=False)
    rendered = _render_to(executed, out)
    return ("<p>" + " · ".join(f"<a href='{Path(p).name}'>{k} notebook</a>" for k, p in rendered.items())
            + "</p>")


# ---- figures for the comparison notebook --------------------------------------------------------
def accuracy_bars(table: pd.DataFrame):
    """Test accuracy per run and backend (stage 07), or None when no run recorded it."""
    import matplotlib.pyplot as plt
    if table.empty or "accuracy" not in table.index.get_level_values("metric"):
        return None
    acc = table.xs("accuracy", level="metric").droplevel("stage").T
    fig, ax = plt.subplots(figsize=(9, 3.5))
    acc.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy per run and backend (stage 07)")
    ax.set_ylim(max(0.0, float(np.nanmin(acc.values)) - 0.1), 1.0)
    fig.tight_layout()
    return fig


def quant_flip_pivot(quant: pd.DataFrame) -> pd.DataFrame:
    """Stage-05 code-flip rates: one row per calibration configuration, one column per run."""
    q = quant.copy()
    q["config"] = (q["strategy"] + " " + q["calib_size"].astype(str) + " · " + q["cut"] + " · "
                   + q["output_bits"].astype(str) + "-bit")
    return q.pivot_table(index="config", columns="run", values="code_flip_rate")


def quant_flip_bars(pivot: pd.DataFrame):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(pivot) + 1.5))
    pivot.plot.barh(ax=ax)
    ax.set_xlabel("FSQ whole-code flip rate vs FP32 (ort-int8-emulated)")
    fig.tight_layout()
    return fig


def reliability_overlay(curves: pd.DataFrame):
    """Reliability curves of every run, one panel per backend, before (solid) and after (dashed) T."""
    import matplotlib.pyplot as plt
    backends = sorted(curves["backend"].unique())
    fig, axes = plt.subplots(1, len(backends), figsize=(5 * len(backends), 4.2), squeeze=False)
    for ax, b in zip(axes[0], backends):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        for (run, when), g in curves[curves["backend"] == b].groupby(["run", "when"]):
            ax.plot(g["confidence"], g["accuracy"], marker="o", ms=3, ls="--" if when == "after" else "-",
                    label=f"{run[-12:]} {when}")
        ax.set_title(b)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

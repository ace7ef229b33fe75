"""Runs side by side: parameters that differ, metrics per backend, stage-05 comparisons, reliability.

Functions take runs and return tables; `compare_runs` is the I/O edge that writes a comparison folder
(CSV tables, the executed compare_runs notebook and its HTML, an index page).
"""

from __future__ import annotations

import datetime as _dt
import html
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
    """(stage, metric, backend) x run: every headline number under the backend that produced it. Stages a
    run reused from its parent contribute the parent's numbers (they are that run's numbers too)."""
    from workbench.runs.summary import lineage_metrics

    records = []
    for r in runs:
        for m in lineage_metrics(r):
            if isinstance(m.get("value"), (int, float)) and not isinstance(m.get("value"), bool):
                records.append(
                    {
                        "stage": m["stage"],
                        "metric": m["name"],
                        "backend": m["backend"],
                        "run": r.run_id,
                        "value": m["value"],
                    }
                )
    if not records:
        return pd.DataFrame()
    df = pd.DataFrame(records)
    table = df.pivot_table(index=["stage", "metric", "backend"], columns="run", values="value", aggfunc="first")
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
                for conf, acc, count in zip(
                    bins.get("confidence", []), bins.get("accuracy", []), bins.get("count", [])
                ):
                    if count:
                        rows.append(
                            {
                                "run": r.run_id,
                                "backend": backend,
                                "when": when,
                                "confidence": conf,
                                "accuracy": acc,
                                "count": count,
                            }
                        )
    return pd.DataFrame(rows, columns=["run", "backend", "when", "confidence", "accuracy", "count"])


# Param-diff rows that say nothing about results (a run's label is its name, not a setting).
NOT_SETTINGS = ("run_label",)


def run_labels(runs: Sequence[Run], diff: pd.DataFrame) -> list[str]:
    """Each run named by the settings that differ (``quant_calib_size=64``), else by its id."""
    settings = [n for n in diff.index if n not in NOT_SETTINGS]
    labels = []
    for r in runs:
        label = " ".join(f"{n}={_show(diff.loc[n, r.run_id])}" for n in settings)
        labels.append(label or r.run_id)
    return labels if len(set(labels)) == len(labels) else [r.run_id for r in runs]


def run_names(runs: Sequence[Run], diff: pd.DataFrame) -> dict[str, str]:
    """``run_labels`` keyed by run id, for renaming columns and legends."""
    return dict(zip([r.run_id for r in runs], run_labels(runs, diff)))


def _show(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def with_deltas(table: pd.DataFrame) -> pd.DataFrame:
    """The metrics table plus ``Δ <run>`` columns (each run minus the first) and a ``changed`` flag."""
    if table.empty:
        return table
    out = table.copy()
    first = table.columns[0]
    for col in table.columns[1:]:
        out[f"Δ {col}"] = table[col] - table[first]
    deltas = out[[c for c in out.columns if str(c).startswith("Δ ")]]
    out["changed"] = (deltas.abs() > 1e-12).any(axis=1) | table.isna().any(axis=1) & table.notna().any(axis=1)
    return out


def stages_depending_on(changed: Sequence[str]) -> set[str]:
    """Stages whose results can depend on the changed parameters: the first stage whose notebook reads one
    of them, and every later stage."""
    from workbench.runs.pipeline import declared_parameters, notebook_for
    from workbench.runs.store import STAGES

    keys = [k for k, _ in STAGES]
    for i, key in enumerate(keys):
        try:
            reads = set(declared_parameters(notebook_for(key)))
        except Exception:
            continue
        if reads & set(changed):
            return {STAGE_NAMES[k] for k in keys[i:]}
    return set()


def compare_runs(
    refs: Sequence[str | Path], root: Optional[Path] = None, notebook: bool = True, out_dir: Optional[Path] = None
) -> Path:
    runs = open_runs(refs, root)
    base = Path(root) if root else outputs_root()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out_dir or base / "comparisons" / f"{stamp}-compare-{secrets.token_hex(2)}"
    out.mkdir(parents=True, exist_ok=False)
    (out / "runs.json").write_text(json.dumps([str(r.path.resolve()) for r in runs], indent=2))
    diff = param_diff(runs)
    settings = [n for n in diff.index if n not in NOT_SETTINGS]
    affected = stages_depending_on(settings)
    labels = run_labels(runs, diff)
    metrics = metrics_table(runs)
    if not metrics.empty:
        metrics = metrics.rename(columns=dict(zip([r.run_id for r in runs], labels)))
    delta = with_deltas(metrics)
    quant = stage_table_across(runs, "quant_comparison") if STAGE_NAMES["05"] in affected else pd.DataFrame()
    tables = {"params_diff": diff, "metrics": delta, "quant_comparison": quant}
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv")
    (out / "summary.txt").write_text(_terminal_text(runs, labels, diff, delta), encoding="utf-8")
    links = ""
    if notebook:
        links = _run_compare_notebook(runs, out)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>comparison</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1150px;margin:2rem auto;padding:0 1rem}"
        ".tablewrap{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}"
        "td,th{border:1px solid #ccc;padding:.25rem .5rem}tr.changed td{background:#fff3cd}</style>",
        "</head><body><h1>Run comparison</h1><p>Deltas are against the first run; rows that differ "
        "are highlighted.</p><ul>",
    ]
    for r, label in zip(runs, labels):
        reused = r.manifest().get("reused_from_parent") or []
        note = (
            (f"; stages {', '.join(reused)} reused from parent <code>{esc(str(r.manifest().get('parent')))}</code>")
            if reused
            else ""
        )
        parts.append(
            f"<li><b>{esc(label)}</b>: <code>{esc(r.run_id)}</code> "
            f"({esc(str(r.params().get('dataset', '?')))}){note}</li>"
        )
    parts.append("</ul>" + links)
    parts.append(
        "<h2>Parameters that differ</h2>"
        + ("<div class='tablewrap'>" + diff.to_html(escape=True) + "</div>" if not diff.empty else "<p>none</p>")
    )
    if not delta.empty:
        fmt = {
            c: (lambda v: f"{v:+.4g}") if str(c).startswith("Δ ") else (lambda v: f"{v:.4g}")
            for c in delta.columns
            if c != "changed"
        }
        changed, same = (
            delta[delta["changed"]].drop(columns="changed"),
            delta[~delta["changed"]].drop(columns="changed"),
        )
        parts.append(
            f"<h2>Metrics that changed ({len(changed)})</h2><div class='tablewrap'>"
            + (
                changed.to_html(escape=True, formatters=fmt).replace("<tr>", "<tr class='changed'>")
                if not changed.empty
                else "<p>none</p>"
            )
            + "</div>"
        )
        parts.append(
            f"<details><summary>Metrics that did not change ({len(same)})</summary>"
            f"<div class='tablewrap'>{same.to_html(escape=True, formatters=fmt)}</div></details>"
        )
    if not quant.empty:
        parts.append(
            "<h2>Stage 05 quantization comparison</h2><div class='tablewrap'>"
            + quant.to_html(escape=True, float_format=lambda v: f"{v:.4g}")
            + "</div>"
        )
    else:
        parts.append("<p>Stage 05's configuration table is omitted: no parameter it depends on differs.</p>")
    parts.append("</body></html>")
    (out / "index.html").write_text("\n".join(parts), encoding="utf-8")
    return out


def _terminal_text(
    runs: Sequence[Run], labels: list[str], diff: pd.DataFrame, delta: pd.DataFrame, max_rows: int = 40
) -> str:
    from workbench.runs.sweep_report import format_table

    lines = ["runs (deltas against the first):"]
    lines += [f"  {i + 1}. {label}  ({r.run_id})" for i, (r, label) in enumerate(zip(runs, labels))]
    if not diff.empty:
        lines += [
            "",
            "parameters that differ:",
            format_table(
                ["parameter"] + [str(i + 1) for i in range(len(runs))],
                [[n] + [json.dumps(diff.loc[n, r.run_id]) for r in runs] for n in diff.index],
            ),
        ]
    if not delta.empty:
        changed = delta[delta["changed"]]
        rows = []
        for (stage, metric, backend), row in changed.head(max_rows).iterrows():
            vals = [f"{row[labels[0]]:.4g}" if row[labels[0]] == row[labels[0]] else "-"]
            vals += [f"{row[f'Δ {lab}']:+.4g}" if row[f"Δ {lab}"] == row[f"Δ {lab}"] else "-" for lab in labels[1:]]
            rows.append([f"* {stage[:2]} {metric}", backend] + vals)
        lines += [
            "",
            f"metrics that changed ({len(changed)} of {len(delta)}; * = changed):",
            format_table(["metric", "backend", "1"] + [f"Δ{i + 2}" for i in range(len(runs) - 1)], rows),
        ]
        if len(changed) > max_rows:
            lines.append(f"  ... {len(changed) - max_rows} more in metrics.csv")
    return "\n".join(lines)


def terminal_summary(out: Path) -> str:
    p = Path(out) / "summary.txt"
    return p.read_text(encoding="utf-8") if p.exists() else ""


def _run_compare_notebook(runs: Sequence[Run], out: Path) -> str:
    import papermill as pm

    from workbench.runs.pipeline import KERNEL_NAME, NOTEBOOK_DIR, _render_to

    nb = NOTEBOOK_DIR / "compare_runs.ipynb"
    executed = out / "compare_runs.ipynb"
    from workbench.runs.kernel import kernel_options

    pm.execute_notebook(
        str(nb),
        str(executed),
        kernel_name=KERNEL_NAME,
        cwd=str(NOTEBOOK_DIR),
        parameters={"runs": [str(r.path.resolve()) for r in runs]},
        progress_bar=False,
        **kernel_options(),
    )
    rendered = _render_to(executed, out)
    return "<p>" + " · ".join(f"<a href='{Path(p).name}'>{k} notebook</a>" for k, p in rendered.items()) + "</p>"


# ---- figures for the comparison notebook --------------------------------------------------------
def accuracy_bars(table: pd.DataFrame):
    """Test accuracy per run and backend (stage 07), or None when no run recorded it."""
    import matplotlib.pyplot as plt

    if table.empty or "accuracy" not in table.index.get_level_values("metric"):
        return None
    acc = table.xs("accuracy", level="metric").droplevel("stage").T  # rows: runs, columns: backends
    # horizontal bars: runs are named by their differing settings, which are long
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.3 * acc.size))
    acc.plot.barh(ax=ax)
    ax.invert_yaxis()  # first run on top, as in the tables
    ax.set_xlabel("test accuracy")
    ax.set_title("test accuracy per run and backend (stage 07)")
    ax.set_xlim(max(0.0, float(np.nanmin(acc.values)) - 0.1), 1.0)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def quant_flip_pivot(quant: pd.DataFrame) -> pd.DataFrame:
    """Stage-05 code-flip rates: one row per calibration configuration, one column per run."""
    q = quant.copy()
    q["config"] = (
        q["strategy"]
        + " "
        + q["calib_size"].astype(str)
        + " · "
        + q["cut"]
        + " · "
        + q["output_bits"].astype(str)
        + "-bit"
    )
    return q.pivot_table(index="config", columns="run", values="code_flip_rate")


def quant_flip_bars(pivot: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.35 * len(pivot) + 1.5))
    pivot.plot.barh(ax=ax)
    ax.set_xlabel("FSQ whole-code flip rate vs FP32 (ort-int8-emulated)")
    fig.tight_layout()
    return fig


def reliability_overlay(curves: pd.DataFrame, names: Optional[dict[str, str]] = None):
    """Reliability curves of every run, one panel per backend, before (solid) and after (dashed) T. Each
    run is named by ``names`` (run id -> label, from ``run_names``), else by its whole id."""
    import matplotlib.pyplot as plt

    backends = sorted(curves["backend"].unique())
    fig, axes = plt.subplots(1, len(backends), figsize=(5 * len(backends), 4.2), squeeze=False)
    for ax, b in zip(axes[0], backends):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        for (run, when), g in curves[curves["backend"] == b].groupby(["run", "when"]):
            ax.plot(
                g["confidence"],
                g["accuracy"],
                marker="o",
                ms=3,
                ls="--" if when == "after" else "-",
                label=f"{(names or {}).get(run, run)} {when}",
            )
        ax.set_title(b)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

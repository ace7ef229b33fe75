"""A finished sweep as answers: one row per variation keyed by the parameters it varied, the aggregation
over seeds (mean, sd, min, n per setting), pivots of the headline metrics, metric-vs-parameter plots with
error bars, and a short terminal table.

Metric columns are named ``metric [backend]`` so every number keeps the backend that produced it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from workbench.runs.store import Run

SEED = "seed"
# Preferred order of the metrics a sweep summary leads with (those that vary between variations).
HEADLINE_ORDER = (
    "code_flip_rate [ort-int8-emulated]",
    "accuracy [ort-int8-emulated]",
    "test_accuracy [ort-int8-emulated]",
    "prediction_flips [ort-int8-emulated]",
    "accuracy [ort-fp32]",
    "test_accuracy [torch-fp32]",
    "ece_after_ts [ort-int8-emulated]",
    "ece_after_ts [ort-fp32]",
    "coverage_lac [ort-int8-emulated]",
)
MAX_HEADLINE = 4


def metric_column(m: dict) -> str:
    return f"{m['name']} [{m['backend']}]"


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def results_table(summary: dict, root: Path) -> pd.DataFrame:
    """One row per variation: the varied parameters, run id, status, seconds, then every numeric metric
    the variation's own stages recorded."""
    rows = []
    for var in summary["variations"]:
        row: dict[str, Any] = {k: _cell(v) for k, v in var["values"].items()}
        row.update(run=var.get("run"), status="failed" if var.get("error") else "succeeded", seconds=var.get("seconds"))
        if var.get("run") and not var.get("error"):
            for m in Run.open(var["run"], root).metrics():
                if isinstance(m.get("value"), (int, float)) and not isinstance(m.get("value"), bool):
                    row[metric_column(m)] = float(m["value"])
        rows.append(row)
    return pd.DataFrame(rows)


def metric_columns(table: pd.DataFrame, varied: list[str]) -> list[str]:
    fixed = set(varied) | {"run", "status", "seconds"}
    return [c for c in table.columns if c not in fixed]


def headline_metrics(table: pd.DataFrame, varied: list[str]) -> list[str]:
    """Metrics that differ between variations, preferred ones first (at most MAX_HEADLINE)."""
    cols = metric_columns(table, varied)
    varying = [c for c in cols if table[c].nunique(dropna=True) > 1]
    ordered = [c for c in HEADLINE_ORDER if c in varying] + [c for c in varying if c not in HEADLINE_ORDER]
    return ordered[:MAX_HEADLINE]


def aggregate_over_seeds(table: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    """Mean, sd, min and n of every metric per setting of the non-seed parameters (long format). Without a
    varied seed every variation is its own group (n = 1, sd NaN)."""
    keys = [k for k in varied if k != SEED]
    ok = table[table["status"] == "succeeded"]
    rows = []
    groups = ok.groupby(keys, dropna=False, sort=False) if keys else [((), ok)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for metric in metric_columns(table, varied):
            vals = g[metric].dropna() if metric in g else pd.Series(dtype=float)
            if vals.empty:
                continue
            rows.append(
                {
                    **dict(zip(keys, key)),
                    "metric": metric,
                    "mean": vals.mean(),
                    "sd": vals.std(ddof=1) if len(vals) > 1 else float("nan"),
                    "min": vals.min(),
                    "max": vals.max(),
                    "n": int(len(vals)),
                }
            )
    return pd.DataFrame(rows)


def pivot(agg: pd.DataFrame, metric: str, varied: list[str]) -> pd.DataFrame:
    """``mean ± sd (n)`` of one metric: rows = first non-seed parameter, columns = the second (if any)."""
    keys = [k for k in varied if k != SEED]
    sub = agg[agg["metric"] == metric].copy()
    if sub.empty or not keys:
        return pd.DataFrame()
    sub["cell"] = [_mean_sd(r["mean"], r["sd"], r["n"]) for _, r in sub.iterrows()]
    if len(keys) == 1:
        return sub.set_index(keys[0])[["cell"]].rename(columns={"cell": metric})
    return sub.pivot_table(index=keys[0], columns=keys[1:], values="cell", aggfunc="first")


def _mean_sd(mean: float, sd: float, n: int) -> str:
    return f"{mean:.4g} ± {sd:.2g} (n={n})" if n > 1 and sd == sd else f"{mean:.4g} (n={n})"


def metric_plot(agg: pd.DataFrame, metric: str, varied: list[str]):
    """Metric (mean, error bars = sd over seeds) against the first non-seed parameter, one line per value of
    the second; None when there is no non-seed parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in varied if k != SEED]
    sub = agg[agg["metric"] == metric]
    if not keys or sub.empty:
        return None
    x_key, line_keys = keys[0], keys[1:]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    lines = sub.groupby(line_keys, sort=False) if line_keys else [((), sub)]
    x_labels = [str(v) for v in dict.fromkeys(sub[x_key])]
    for key, g in lines:
        key = key if isinstance(key, tuple) else (key,)
        xs = [x_labels.index(str(v)) for v in g[x_key]]
        ax.errorbar(
            xs,
            g["mean"],
            yerr=g["sd"].fillna(0.0),
            marker="o",
            capsize=4,
            label=", ".join(f"{k}={v}" for k, v in zip(line_keys, key)) or None,
        )
    ax.set_xticks(range(len(x_labels)))
    ax.set_xticklabels(
        x_labels,
        rotation=20 if max(len(s) for s in x_labels) > 8 else 0,
        ha="right" if max(len(s) for s in x_labels) > 8 else "center",
    )
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric)
    seeds = int(sub["n"].max())
    ax.set_title(f"{metric}: mean ± sd over {seeds} seed{'s' if seeds != 1 else ''}", fontsize=10)
    if line_keys:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def terminal_table(agg: pd.DataFrame, metrics: list[str], varied: list[str]) -> str:
    keys = [k for k in varied if k != SEED]
    if agg.empty or not metrics:
        return ""
    wide = {}
    for m in metrics:
        sub = agg[agg["metric"] == m]
        for _, r in sub.iterrows():
            key = tuple(str(r[k]) for k in keys)
            wide.setdefault(key, {})[m] = (
                f"{r['mean']:.4g} ± {r['sd']:.2g}" if r["n"] > 1 and r["sd"] == r["sd"] else f"{r['mean']:.4g}"
            )
            wide[key]["n"] = str(int(r["n"]))
    headers = keys + metrics + ["n"]
    rows = [list(k) + [v.get(m, "") for m in metrics] + [v.get("n", "")] for k, v in wide.items()]
    return format_table(headers, rows)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(out)


@dataclass
class SweepReport:
    results: pd.DataFrame
    aggregate: pd.DataFrame
    headline: list[str]
    terminal: str


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_sweep_report(out: Path, summary: dict, root: Path) -> SweepReport:
    """results.csv, aggregate.csv, one pivot CSV per headline metric and index.html into ``out``."""
    varied = list(summary.get("varied") or (summary["variations"][0]["values"] if summary["variations"] else []))
    table = results_table(summary, root)
    table.to_csv(out / "results.csv", index=False)
    agg = aggregate_over_seeds(table, varied) if not table.empty else pd.DataFrame()
    agg.to_csv(out / "aggregate.csv", index=False)
    headline = headline_metrics(table, varied) if not table.empty else []
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sweep</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2rem auto;padding:0 1rem}"
        ".tablewrap{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}"
        "td,th{border:1px solid #ccc;padding:.25rem .5rem}</style></head><body>",
        f"<h1>Sweep {esc(Path(summary['sweep']).name)}</h1>",
        f"<p>{len(summary['variations'])} variations of {', '.join(esc(v) for v in varied)} from stage "
        f"{esc(summary['from'])} to {esc(summary['to'])}, parent run <code>{esc(str(summary['parent']))}"
        f"</code>, executor {esc(str(summary.get('executor')))}, {summary.get('wall_seconds')} s.</p>",
    ]
    for metric in headline:
        pv = pivot(agg, metric, varied)
        parts.append(f"<h2>{esc(metric)}</h2>")
        if not pv.empty:
            pv.to_csv(out / f"pivot_{_slug(metric)}.csv")
            parts.append("<div class='tablewrap'>" + pv.to_html(escape=True) + "</div>")
        fig = metric_plot(agg, metric, varied)
        if fig is not None:
            parts.append(
                f"<p><img alt='{esc(metric)}' style='max-width:100%' src='data:image/png;base64,{_png(fig)}'></p>"
            )
    parts.append(
        "<h2>Every variation</h2><div class='tablewrap'>"
        + table.to_html(escape=True, index=False, float_format=lambda v: f"{v:.4g}")
        + "</div>"
    )
    if (table["status"] == "succeeded").sum() >= 2:  # run_sweep writes the comparison next
        parts.append("<p><a href='comparison/index.html'>side-by-side comparison of the runs</a></p>")
    parts.append("</body></html>")
    (out / "index.html").write_text("\n".join(parts), encoding="utf-8")
    text = terminal_table(agg, headline, varied)
    if text:
        text = "sweep summary (mean ± sd over seeds where seeds vary):\n" + text
    return SweepReport(table, agg, headline, text)


def _slug(metric: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_")


def open_sweep(path: Path) -> Optional[dict]:
    p = Path(path) / "sweep.json"
    return json.loads(p.read_text()) if p.exists() else None

"""The issue-14 headline table from a finished sweep (params/sweeps/hapt_int8.yaml): per seed and mean.

    python benchmarks/int8_sweep_table.py outputs/sweeps/<id>-hapt_int8 [--outputs outputs]
    python benchmarks/int8_sweep_table.py RUN [RUN ...]          # the same runs, named one by one

Reads each run's metrics.json (stage 05: the remedy picked on validation windows, flips and accuracy of
that remedy on test windows; stage 07: the ort-int8-emulated backend's test accuracy) and stage 05's
quant_ladder.csv (every rung, validation and test); stage 08: ECE and conformal coverage of the deployed INT8
model (ort-int8-emulated) on test subjects. Prints Markdown: the headline table with the goal checks, the
probability table with its goal checks, then the ladder averaged over seeds. Every column names its backend.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from workbench.runs import Run

GOALS = {
    "code flips mean <= 1%": lambda d: d["code_flip_rate"].mean() <= 0.01,
    "code flips every seed <= 2%": lambda d: (d["code_flip_rate"] <= 0.02).all(),
    "prediction agreement >= 99.5% (mean)": lambda d: d["prediction_agreement"].mean() >= 0.995,
    "INT8 acc >= FP32 acc - 0.5 pt (mean)": lambda d: (d["acc_int8"] - d["acc_fp32"]).mean() >= -0.005,
    "FP32 mean accuracy >= 0.95": lambda d: d["acc_fp32"].mean() >= 0.95,
}


def _metric(run: Run, stage: str, name: str, backend: str):
    for m in run.metrics():
        if m["stage"].startswith(stage) and m["name"] == name and m["backend"] == backend:
            return m
    return None


def headline(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for r in runs:
        p = r.params()
        flips = _metric(r, "05", "code_flip_rate", "ort-int8-emulated")
        rows.append(
            {
                "seed": p.get("seed"),
                "run": r.run_id,
                "remedy (picked on val)": flips.get("remedy") if flips else None,
                "code_flip_rate_val": (_metric(r, "05", "code_flip_rate_val", "ort-int8-emulated") or {}).get("value"),
                "code_flip_rate": flips.get("value") if flips else None,
                "prediction_agreement": (_metric(r, "05", "prediction_agreement", "ort-int8-emulated") or {}).get(
                    "value"
                ),
                "acc_fp32": (_metric(r, "05", "test_accuracy", "ort-fp32") or {}).get("value"),
                "acc_int8": (_metric(r, "05", "test_accuracy", "ort-int8-emulated") or {}).get("value"),
                "acc_int8_stage07": (_metric(r, "07", "accuracy", "ort-int8-emulated") or {}).get("value"),
                "code_agreement_stage07": (_metric(r, "07", "code_agreement", "ort-int8-emulated") or {}).get("value"),
                "plain_int8_code_flip_rate": (
                    _metric(r, "05", "code_flip_rate_plain_int8", "ort-int8-emulated") or {}
                ).get("value"),
            }
        )
    return pd.DataFrame(rows).sort_values("seed").reset_index(drop=True)


PROBABILITY_GOALS = {
    "ECE <= 0.02 after the selected calibrator, every seed": lambda d: (d["ece_selected"] <= 0.02).all(),
    "LAC coverage >= 0.90 in at least 4 of 5 seeds": lambda d: int((d["coverage_lac"] >= 0.90).sum()) >= 4,
    "subject-level LAC coverage >= 0.90 in at least 4 of 5 seeds": lambda d: (
        int((d["coverage_lac_subject_level"] >= 0.90).sum()) >= 4
    ),
}
INT8 = "ort-int8-emulated"


def probability(runs: list[Run]) -> pd.DataFrame:
    """Stage 08 on test subjects for the deployed INT8 model; empty when no run reached stage 08."""
    rows = []
    for r in runs:
        sel = _metric(r, "08", "ece_after_selected", INT8)
        if sel is None:
            continue
        row: dict = {"seed": r.params().get("seed"), "calibrator": sel.get("calibrator"), "ece_selected": sel["value"]}
        for name in (
            "ece_before_ts",
            "ece_after_ts",
            "coverage_lac",
            "set_size_lac",
            "coverage_lac_subject_level",
            "set_size_lac_subject_level",
            "min_subject_coverage_lac_subject_level",
            "min_subject_coverage_lac_marginal_pooled",
        ):
            row[name] = (_metric(r, "08", name, INT8) or {}).get("value")
        rows.append(row)
    return pd.DataFrame(rows).sort_values("seed").reset_index(drop=True) if rows else pd.DataFrame()


def probability_markdown(prob: pd.DataFrame) -> list[str]:
    if prob.empty:
        return ["", "No run reached stage 08: no probability table."]
    lines = [
        "",
        "Stage 08, test subjects, `ort-int8-emulated` (the deployed INT8 model); calibrators are selected by "
        "leaving validation/calibration subjects out, never on test:",
        "",
        "| seed | ECE raw | ECE after T | ECE after selected (calibrator) | LAC coverage / set size | "
        "subject-level LAC coverage / set size | worst subject, subject-level | "
        "worst subject, LAC marginal (pooled protocol) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in prob.iterrows():
        lines.append(
            f"| {r['seed']} | {_acc(r['ece_before_ts'])} | {_acc(r['ece_after_ts'])} | "
            f"{_acc(r['ece_selected'])} ({r['calibrator']}) | {_acc(r['coverage_lac'])} / {_num(r['set_size_lac'])} | "
            f"{_acc(r['coverage_lac_subject_level'])} / {_num(r['set_size_lac_subject_level'])} | "
            f"{_acc(r['min_subject_coverage_lac_subject_level'])} | "
            f"{_acc(r['min_subject_coverage_lac_marginal_pooled'])} |"
        )
    lines.append(
        f"| **mean** | {_acc(prob['ece_before_ts'].mean())} | {_acc(prob['ece_after_ts'].mean())} | "
        f"{_acc(prob['ece_selected'].mean())} | {_acc(prob['coverage_lac'].mean())} / "
        f"{_num(prob['set_size_lac'].mean())} | {_acc(prob['coverage_lac_subject_level'].mean())} / "
        f"{_num(prob['set_size_lac_subject_level'].mean())} | | |"
    )
    lines += [
        "",
        "Goals (issue 14): "
        + "; ".join(f"{k}: {'met' if f(prob) else 'NOT met'}" for k, f in PROBABILITY_GOALS.items()),
    ]
    return lines


def _num(v) -> str:
    return "" if v is None or pd.isna(v) else f"{float(v):.2f}"


def ladder_mean(runs: list[Run]) -> pd.DataFrame:
    parts = []
    for r in runs:
        path = r.artifact("quant_ladder", must_exist=False)
        if path.is_file():
            parts.append(pd.read_csv(path).assign(seed=r.params().get("seed")))
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts, ignore_index=True)
    agg = df.groupby(["remedy", "split"], sort=False).agg(
        code_flips_mean=("code_flip_rate", "mean"),
        code_flips_max=("code_flip_rate", "max"),
        agreement_mean=("prediction_agreement", "mean"),
        acc_int8_mean=("accuracy_int8", "mean"),
        acc_fp32_mean=("accuracy_fp32", "mean"),
        seeds=("seed", "nunique"),
    )
    return agg.reset_index()


def _pct(v) -> str:
    return "" if v is None or pd.isna(v) else f"{100 * float(v):.2f}%"


def _acc(v) -> str:
    return "" if v is None or pd.isna(v) else f"{float(v):.4f}"


def markdown(head: pd.DataFrame, ladder: pd.DataFrame, prob: pd.DataFrame) -> str:
    lines = [
        "| seed | remedy (picked on val) | code flips val | code flips test | prediction agreement test | "
        "FP32 acc test (`ort-fp32`) | INT8 acc test (`ort-int8-emulated`) | stage 07 INT8 acc / code agreement "
        "(`ort-int8-emulated` vs `torch-fp32`) | plain INT8 code flips test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in head.iterrows():
        lines.append(
            f"| {r['seed']} | {r['remedy (picked on val)']} | {_pct(r['code_flip_rate_val'])} | "
            f"{_pct(r['code_flip_rate'])} | {_pct(r['prediction_agreement'])} | {_acc(r['acc_fp32'])} | "
            f"{_acc(r['acc_int8'])} | {_acc(r['acc_int8_stage07'])} / {_pct(r['code_agreement_stage07'])} | "
            f"{_pct(r['plain_int8_code_flip_rate'])} |"
        )
    lines.append(
        f"| **mean** | | {_pct(head['code_flip_rate_val'].mean())} | {_pct(head['code_flip_rate'].mean())} | "
        f"{_pct(head['prediction_agreement'].mean())} | {_acc(head['acc_fp32'].mean())} | "
        f"{_acc(head['acc_int8'].mean())} | {_acc(head['acc_int8_stage07'].mean())} / "
        f"{_pct(head['code_agreement_stage07'].mean())} | {_pct(head['plain_int8_code_flip_rate'].mean())} |"
    )
    lines.append("")
    lines.append("Goals (issue 14): " + "; ".join(f"{k}: {'met' if f(head) else 'NOT met'}" for k, f in GOALS.items()))
    lines += probability_markdown(prob)
    if not ladder.empty:
        lines += [
            "",
            "| rung | split | code flips mean | code flips max | agreement mean | INT8 acc mean | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in ladder.iterrows():
            lines.append(
                f"| {r['remedy']} | {r['split']} | {_pct(r['code_flips_mean'])} | "
                f"{_pct(r['code_flips_max'])} | "
                f"{_pct(r['agreement_mean'])} | {_acc(r['acc_int8_mean'])} | {r['seeds']} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", help="a sweep folder (holds sweep.json) or run ids / run folders")
    ap.add_argument("--outputs", default=None)
    a = ap.parse_args()
    runs: list[Run] = []
    for src in a.sources:
        if (Path(src) / "sweep.json").is_file():
            spec = json.loads((Path(src) / "sweep.json").read_text())
            root = Path(a.outputs) if a.outputs else Path(src).parents[1]
            runs += [Run.open(v["run"], root) for v in spec["variations"] if v.get("run")]
        else:
            runs.append(Run.open(src, Path(a.outputs) if a.outputs else None))
    print(markdown(headline(runs), ladder_mean(runs), probability(runs)))


if __name__ == "__main__":
    main()

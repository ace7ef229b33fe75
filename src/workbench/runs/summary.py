"""What a run found, in a few facts: the data that the run page's summary, `workbench run`'s closing
table and child runs share. Pure reads of a run directory (and its parents for reused stages); no HTML.

Every number keeps the backend that produced it. Backends whose numbers are exactly equal are grouped,
so torch-fp32 and ort-fp32 show as one row when the ONNX export reproduced PyTorch bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from workbench.config import HAILO8_DEVICE, ORT_FP32, ORT_INT8, TORCH_FP32
from workbench.runs.store import STAGE_NAMES, Run

FP32_BACKENDS = (TORCH_FP32, ORT_FP32)


def parent_of(run: Run) -> Optional[Run]:
    """The run whose stages this one reused, looked up beside it (runs of one outputs folder)."""
    pid = run.manifest().get("parent")
    if not pid:
        return None
    candidate = run.path.parent / str(pid)
    return Run(candidate) if (candidate / "manifest.json").exists() else None


def lineage_metrics(run: Run) -> list[dict]:
    """This run's metrics plus those of the stages it reused, taken from its parent chain. Rows from a
    parent carry ``from_run`` so pages can say where a number was measured."""
    rows = [dict(m) for m in run.metrics()]
    reused = set(run.manifest().get("reused_from_parent", []))
    parent = parent_of(run)
    seen = {run.path.resolve()}
    while parent is not None and reused and parent.path.resolve() not in seen:
        seen.add(parent.path.resolve())
        ran_there = reused & set(parent.manifest().get("stages", {}))
        rows += [{**m, "from_run": parent.run_id} for m in parent.metrics() if m["stage"] in ran_there]
        reused -= ran_there
        parent = parent_of(parent)
    return rows


def stage_statuses(run: Run) -> dict[str, dict]:
    """Stage name -> manifest entry, including the entries of reused stages from the parent chain
    (marked ``reused_from``)."""
    out = {name: dict(entry) for name, entry in run.manifest().get("stages", {}).items()}
    parent = parent_of(run)
    for name in run.manifest().get("reused_from_parent", []):
        if parent is None:
            out.setdefault(name, {"status": "reused"})
            continue
        entry = stage_statuses(parent).get(name, {"status": "reused"})
        out[name] = {**entry, "reused_from": entry.get("reused_from", parent.run_id)}
    return {n: out[n] for n in STAGE_NAMES.values() if n in out}


def _value(metrics: list[dict], stage_num: str, name: str) -> dict[str, Any]:
    stage = STAGE_NAMES[stage_num]
    return {
        m["backend"]: m["value"]
        for m in metrics
        if m["stage"] == stage and m["name"] == name and _is_number(m.get("value"))
    }


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def group_equal(values: dict[str, Any]) -> list[tuple[list[str], Any]]:
    """[(backends, value)]: backends with exactly the same value share one entry (order kept)."""
    groups: list[tuple[list[str], Any]] = []
    for backend, v in values.items():
        for names, gv in groups:
            if gv == v:
                names.append(backend)
                break
        else:
            groups.append(([backend], v))
    return groups


@dataclass
class NotRun:
    what: str  # "HEF" or "Hailo-8 device"
    reason: str


@dataclass
class RunSummary:
    """The facts of a run page's summary block; None/empty where the run did not produce them."""

    model_data: str
    accuracy: list[tuple[list[str], float]] = field(default_factory=list)  # (backends, accuracy)
    accuracy_source: str = ""
    test_windows: Optional[int] = None
    int8: dict[str, Any] = field(default_factory=dict)
    ece: list[tuple[list[str], tuple[float, float]]] = field(default_factory=list)  # (before, after)
    conformal: list[dict[str, Any]] = field(default_factory=list)
    alpha: Optional[float] = None
    not_run: list[NotRun] = field(default_factory=list)
    reused: dict[str, str] = field(default_factory=dict)  # stage name -> run it came from


def _data_summary(run: Run) -> dict:
    p = run.path / "artifacts" / STAGE_NAMES["01"] / "data_summary.json"
    try:
        return json.loads(p.read_text()) if p.exists() else {}
    except (OSError, ValueError):
        return {}


def model_data_sentence(run: Run, metrics: list[dict]) -> str:
    params = run.manifest().get("params") or run.params() or {}
    ds = _data_summary(run)
    dataset = params.get("dataset", "?")
    data = "synthetic IMU data" if dataset == "synthetic" else f"the {dataset} dataset"
    splits = ds.get("splits") or {}
    sizes = []
    for split in ("train", "val", "test"):
        s = splits.get(split) or {}
        if s.get("windows") is not None:
            n_subj = len(s.get("subjects") or [])
            sizes.append(f"{s['windows']} {split}" + (f" ({n_subj} subjects)" if n_subj else ""))
    labels = ds.get("labels") or []
    shape = ds.get("shape") or []
    parts = []
    trained = "trained" if params.get("mode", "train") == "train" else "loaded from a checkpoint"
    channels = params.get("encoder_channels")
    model = (
        f"An FSQ classifier (encoder channels {channels}, FSQ levels {params.get('fsq_levels')}"
        + (
            f", {int(_value(metrics, '03', 'parameters').get('data', 0))} parameters"
            if _value(metrics, "03", "parameters")
            else ""
        )
        + f"), {trained}"
    )
    if params.get("mode", "train") == "train" and params.get("epochs"):
        model += f" for up to {params['epochs']} epochs"
    parts.append(model + f" on {data}")
    if labels:
        parts.append(f"{len(labels)} classes ({', '.join(map(str, labels))})")
    if len(shape) == 4:
        parts.append(f"windows of {shape[3]} samples x {shape[1]} channels x {shape[2]} sites")
    if sizes:
        parts.append("windows split by subject: " + ", ".join(sizes))
    return "; ".join(parts) + "."


def summarize(run: Run) -> RunSummary:
    metrics = lineage_metrics(run)
    out = RunSummary(model_data=model_data_sentence(run, metrics))
    acc07 = _value(metrics, "07", "accuracy")
    if acc07:
        out.accuracy = group_equal(acc07)
        out.accuracy_source = "stage 07, test subjects"
        n = [m.get("n") for m in metrics if m["stage"] == STAGE_NAMES["07"] and m["name"] == "accuracy"]
        out.test_windows = n[0] if n and n[0] else None
    else:
        merged = {**_value(metrics, "01", "test_accuracy"), **_value(metrics, "05", "test_accuracy")}
        if merged:
            out.accuracy = group_equal(merged)
            out.accuracy_source = "stages 01/05, test subjects"

    # INT8 effect: emulated INT8 against the FP32 ONNX model on the same windows
    acc = acc07 or {**_value(metrics, "01", "test_accuracy"), **_value(metrics, "05", "test_accuracy")}
    fp32 = next((acc[b] for b in (ORT_FP32, TORCH_FP32) if b in acc), None)
    fp32_name = next((b for b in (ORT_FP32, TORCH_FP32) if b in acc), None)
    if ORT_INT8 in acc and fp32 is not None:
        out.int8 = {
            "fp32_backend": fp32_name,
            "fp32_accuracy": fp32,
            "int8_accuracy": acc[ORT_INT8],
            "delta_accuracy": acc[ORT_INT8] - fp32,
        }
    for key, stage, name in (
        ("code_flip_rate", "05", "code_flip_rate"),
        ("level_flip_rate", "05", "level_flip_rate"),
        ("prediction_flips", "07", "prediction_flips"),
        ("npu_output_sqnr_db", "05", "npu_output_sqnr"),
    ):
        v = _value(metrics, stage, name).get(ORT_INT8)
        if v is not None:
            out.int8[key] = v

    before, after = _value(metrics, "08", "ece_before_ts"), _value(metrics, "08", "ece_after_ts")
    pairs = {b: (before[b], after[b]) for b in before if b in after}
    out.ece = group_equal(pairs)

    params = run.manifest().get("params") or {}
    out.alpha = params.get("conformal_alpha")
    card = report_card_rows(run)
    for method in ("lac", "aps"):
        cov, size = _value(metrics, "08", f"coverage_{method}"), _value(metrics, "08", f"set_size_{method}")
        for backends, (c, s) in group_equal({b: (cov[b], size[b]) for b in cov if b in size}):
            row = next(
                (
                    r
                    for r in card
                    if r.get("backend") == backends[0] and r.get("check", "").lower().startswith(f"coverage {method}")
                ),
                {},
            )
            out.conformal.append(
                {
                    "method": method.upper(),
                    "backends": backends,
                    "coverage": c,
                    "set_size": s,
                    "target": row.get("target"),
                    "passed": (str(row.get("pass")) == "True") if row else None,
                }
            )

    statuses = stage_statuses(run)
    out.reused = {n: e["reused_from"] for n, e in statuses.items() if e.get("reused_from")}
    s06 = statuses.get(STAGE_NAMES["06"])
    st06 = (s06 or {}).get("stage_status") or {}
    if s06 is None:
        out.not_run.append(NotRun("HEF", "stage 06 (compile) was not part of this run"))
    elif not st06.get("hef"):
        out.not_run.append(
            NotRun(
                "HEF",
                st06.get("reason") or f"stage 06 ended '{s06.get('status')}' without a HEF and recorded no reason",
            )
        )
    s07 = statuses.get(STAGE_NAMES["07"])
    evaluated = set((s07 or {}).get("backends") or [])
    if s07 is None:
        out.not_run.append(NotRun("Hailo-8 device", "stage 07 (evaluate) was not part of this run"))
    elif HAILO8_DEVICE not in evaluated:
        reasons = (s07.get("stage_status") or {}).get("not_evaluated") or {}
        out.not_run.append(
            NotRun(
                "Hailo-8 device",
                reasons.get(HAILO8_DEVICE)
                or "hailo8-device was not among the evaluated backends (stage 07 recorded no reason)",
            )
        )
    return out


def report_card_rows(run: Run) -> list[dict]:
    """Stage 08's report card (report_card.csv): one row per backend and check."""
    import csv

    p = run.path / "artifacts" / STAGE_NAMES["08"] / "report_card.csv"
    if not p.exists():
        return []
    with p.open(newline="") as f:
        return list(csv.DictReader(f))

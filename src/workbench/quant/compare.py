"""Comparison of quantization calibration choices: strategy x size x cut kind x output bits.

Each row is one INT8-emulated model (``ort-int8-emulated``) evaluated against FP32 (``ort-fp32``) on the
same test windows. The recommendation is computed from the table, never written by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from .analysis import Postprocess, compare_npu_outputs
from .calibset import STRATEGIES, CalibSet, build_calibset
from .emulate import BACKEND_INT8, quantize_npu, run_onnx

CUTS = ("after_bound", "after_projection")


@dataclass
class CutModel:
    """One cut kind's NPU graph (batch-dynamic) and how its output maps to levels/logits and bounds."""

    cut: str
    npu_model: Path
    postprocess: Postprocess
    bound_of: Callable[[np.ndarray], np.ndarray]


def cut_model_from_split(split_dir: str | Path) -> CutModel:
    """A CutModel from a stage-04 style folder (split.json, npu_dynamic.onnx, host_weights.npz)."""
    import json

    from workbench.graph.host import HostPostprocessor

    from .analysis import fsq_bound_of

    split_dir = Path(split_dir)
    info = json.loads((split_dir / "split.json").read_text())
    post = HostPostprocessor.from_files(split_dir / "split.json", split_dir / "host_weights.npz")
    if not info.get("fsq_levels"):
        raise ValueError(f"{split_dir / 'split.json'} has no fsq_levels; rerun stage 04 with the model's levels")
    return CutModel(
        cut=info["cut"],
        npu_model=split_dir / info["files"]["npu_dynamic"],
        postprocess=post,
        bound_of=fsq_bound_of(info["cut"], info["fsq_levels"], info.get("fsq")),
    )


def other_cut_model(
    model_onnx: str | Path,
    model_dynamic_onnx: str | Path,
    cut: str,
    host_ops: Sequence[str],
    fsq_levels: Sequence[int],
    out_dir: str | Path,
    logits_output: Optional[str] = "",
) -> CutModel:
    """Re-split the exported model at the other cut kind into ``out_dir`` with workbench.graph
    (``logits_output`` as in split.json: "" = the first output, None = a model without logits)."""
    from workbench.graph.split import split_model

    if cut not in CUTS:
        raise ValueError(f"unknown cut {cut!r}; expected one of {CUTS}")
    split_model(
        model_onnx,
        model_dynamic_onnx,
        out_dir,
        cut=cut,
        host_ops=list(host_ops),
        fsq_levels=list(fsq_levels),
        logits_output=logits_output,
    )
    return cut_model_from_split(out_dir)


def build_calibsets(
    windows: dict,
    mean: np.ndarray,
    std: np.ndarray,
    sizes: Sequence[int],
    strategies: Sequence[str] = STRATEGIES,
    seed: int = 0,
) -> dict[tuple[str, int], CalibSet]:
    """Every (strategy, size) quantization calibration set of the comparison, from the training split."""
    if isinstance(sizes, (str, bytes)) or not all(isinstance(v, (int, np.integer)) for v in sizes):
        raise ValueError(
            f"quant_compare_sizes must be a list of integers, got {sizes!r} (with papermill use "
            f"-y 'quant_compare_sizes: [64, 1024]', not -p)"
        )
    out = {}
    for size in sizes:
        for strategy in strategies:
            out[(strategy, int(size))] = build_calibset(
                windows["X"],
                windows["y"],
                windows["subject"],
                windows["split"],
                mean,
                std,
                strategy=strategy,
                size=int(size),
                seed=seed,
                label_names=windows.get("label_names"),
            )
    return out


def run_comparison(
    cut_models: Sequence[CutModel],
    calibsets: dict[tuple[str, int], CalibSet],
    eval_nchw: np.ndarray,
    y: np.ndarray,
    fsq_levels: Sequence[int],
    workdir: str | Path,
    *,
    calibrate_method: str = "MinMax",
    bits: Sequence[int] = (8, 16),
    progress: bool = True,
) -> pd.DataFrame:
    """Quantize and evaluate every combination; one row per INT8 model, FP32 reference per cut."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for b in bits:
        if b not in (8, 16):
            raise ValueError(f"output bits must be 8 or 16, got {b}")
    jobs = [(cm, key, b) for cm in cut_models for key in calibsets for b in bits]
    ref = {cm.cut: run_onnx(cm.npu_model, eval_nchw) for cm in cut_models}
    rows = []
    for cm, (strategy, size), b in tqdm(jobs, desc="quantization comparison", disable=not progress):
        cs = calibsets[(strategy, size)]
        out = workdir / f"{cm.cut}_{strategy}_{size}_{b}.onnx"
        quantize_npu(cm.npu_model, out, cs.x_nchw, calibrate_method=calibrate_method, output_16bit=(b == 16))
        rep = compare_npu_outputs(ref[cm.cut], run_onnx(out, eval_nchw), cm.postprocess, cm.bound_of, fsq_levels, y=y)
        s = rep.summary
        rows.append(
            {
                "cut": cm.cut,
                "strategy": strategy,
                "calib_size": size,
                "output_bits": b,
                "real_data": strategy != "gaussian_noise",
                "code_flip_rate": s["code_flip_rate"],
                "level_flip_rate": s["level_flip_rate"],
                "prediction_flip_rate": s["prediction_flip_rate"],
                "sqnr_db": s["sqnr_db"],
                "cosine": s["cosine"],
                "accuracy_fp32": s.get("accuracy_fp32"),
                "accuracy_int8": s.get("accuracy_int8"),
                "accuracy_change": s.get("accuracy_change"),
                "unique_codes_int8": s["unique_codes_int8"],
                "windows": s["windows"],
                "calibrate_method": calibrate_method,
                "backend": BACKEND_INT8,
            }
        )
        out.unlink(missing_ok=True)
    return pd.DataFrame(rows)


def _rel(a: float, b: float) -> float:
    return (a / b) if b > 0 else (math.inf if a > 0 else 1.0)


def best_config(df: pd.DataFrame) -> dict:
    """Row with the fewest code flips; ties broken by fewer level flips, fewer prediction flips, higher
    SQNR, then 8-bit before 16-bit output (cheaper on the NPU)."""
    keys = [
        ("code_flip_rate", True),
        ("level_flip_rate", True),
        ("prediction_flip_rate", True),
        ("sqnr_db", False),
        ("output_bits", True),
    ]
    keys = [(k, asc) for k, asc in keys if k in df.columns]
    d = df.sort_values([k for k, _ in keys], ascending=[a for _, a in keys], kind="mergesort")
    return d.iloc[0].to_dict()


def recommend(df: pd.DataFrame) -> dict:
    """Derive the recommendation and the three claims of issue 4 from the comparison table.

    Returns the best configuration (see ``best_config``), how it compares with gaussian noise, and for
    each claim the numbers and whether they support it.
    """
    if df.empty:
        raise ValueError("empty comparison table")
    best = best_config(df)
    out: dict = {"best": best, "claims": {}}
    # 1. real-data quantization calibration vs gaussian noise, same cut/bits/size.
    noise = df[df.strategy == "gaussian_noise"]
    real = df[df.strategy != "gaussian_noise"]
    if not noise.empty and not real.empty:
        key = ["cut", "output_bits", "calib_size"]
        best_real = real.sort_values("code_flip_rate").groupby(key, as_index=False).first()
        m = best_real.merge(noise[key + ["code_flip_rate"]], on=key, suffixes=("_real", "_noise"))
        ratio = [_rel(r, n) for r, n in zip(m.code_flip_rate_real, m.code_flip_rate_noise)]
        out["claims"]["real_calibration_far_fewer_flips_than_noise"] = {
            "median_ratio_real_over_noise": float(np.median(ratio)),
            "mean_flip_real": float(m.code_flip_rate_real.mean()),
            "mean_flip_noise": float(m.code_flip_rate_noise.mean()),
            # "far fewer": at most half as many flips in the median comparable configuration
            "supported": bool(np.median(ratio) <= 0.5 and m.code_flip_rate_noise.mean() > 0),
        }
        nb = noise.sort_values("code_flip_rate").iloc[0]
        out["best_vs_best_noise"] = {
            "noise_code_flip_rate": float(nb.code_flip_rate),
            "best_code_flip_rate": float(best["code_flip_rate"]),
            "reduction": float(nb.code_flip_rate - best["code_flip_rate"]),
        }
    # 2. 16-bit output alone: same cut/strategy/size, 8 vs 16 bit.
    key = ["cut", "strategy", "calib_size"]
    b8 = df[df.output_bits == 8].set_index(key)["code_flip_rate"]
    b16 = df[df.output_bits == 16].set_index(key)["code_flip_rate"]
    both = pd.concat([b8.rename("b8"), b16.rename("b16")], axis=1).dropna()
    both = both[both.b8 > 0]
    if not both.empty:
        removed = 1.0 - both.b16 / both.b8
        out["claims"]["output_16bit_removes_most_flips"] = {
            "median_share_removed": float(removed.median()),
            "configs": int(len(both)),
            "supported": bool(removed.median() > 0.5),
        }
    # 3. cut kind: same strategy/size/bits, after_bound vs after_projection.
    if df.cut.nunique() > 1:
        key = ["strategy", "calib_size", "output_bits"]
        piv = df.pivot_table(index=key, columns="cut", values="code_flip_rate")
        if set(CUTS) <= set(piv.columns):
            diff = piv["after_bound"] - piv["after_projection"]
            scale = piv[list(CUTS)].max(axis=1).replace(0, np.nan)
            rel = (diff.abs() / scale).fillna(0.0)
            out["claims"]["cut_kind_matters"] = {
                "median_flip_after_bound": float(piv["after_bound"].median()),
                "median_flip_after_projection": float(piv["after_projection"].median()),
                "median_relative_difference": float(rel.median()),
                # "matters": the two cuts differ by more than 25% of the larger flip rate in most configs
                "supported": bool(rel.median() > 0.25),
            }
    return out


def recommendation_text(rec: dict) -> str:
    """Plain-language sentences built from ``recommend``'s numbers."""
    b = rec["best"]
    lines = [
        f"Lowest code-flip rate: cut={b['cut']}, strategy={b['strategy']}, quantization calibration "
        f"set size={int(b['calib_size'])}, {int(b['output_bits'])}-bit NPU output: "
        f"{b['code_flip_rate']:.2%} of codes flip, {b['prediction_flip_rate']:.2%} of predictions "
        f"change (ort-int8-emulated)."
    ]
    if "best_vs_best_noise" in rec:
        n = rec["best_vs_best_noise"]
        lines.append(
            f"The best gaussian-noise configuration flips {n['noise_code_flip_rate']:.2%}; the "
            f"recommended one is {n['reduction'] * 100:.2f} percentage points lower."
        )
    for name, c in rec["claims"].items():
        verdict = "supported" if c["supported"] else "NOT supported"
        nums = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items() if k != "supported"
        )
        lines.append(f"Claim '{name}': {verdict} ({nums}).")
    return "\n".join(lines)

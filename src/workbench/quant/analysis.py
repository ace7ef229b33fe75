"""What INT8 quantization does to the NPU output and to the FSQ codes.

Pure numpy metrics (tested on constructed inputs) plus the ONNX Runtime per-layer SQNR pass. Numbers
computed from the emulated INT8 model are tagged ``ort-int8-emulated``; the FP32 reference ``ort-fp32``.

FSQ decision thresholds sit at half-integers in bound space (Mentzer et al. 2023, arXiv 2309.15505):
a value b is rounded to rint(b), so its distance to the nearest threshold, the *margin*, is
``0.5 - |b - rint(b)|`` (0 = on a threshold, 0.5 = on a level). Quantization noise larger than the
margin flips the level; the histogram of margins of flipped entries shows how much noise is tolerated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from workbench.graph.export import load_onnx
from workbench.graph.host import levels_to_indices  # noqa: F401  (lives next to the host post-processor)

from .emulate import BACKEND_FP32, BACKEND_INT8, ArrayCalibrationReader, io_names

Postprocess = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# ---- signal metrics --------------------------------------------------------------------------
def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio 20*log10(||x|| / ||x - x_hat||) in dB (inf when identical)."""
    x = np.asarray(reference, dtype=np.float64).ravel()
    xh = np.asarray(test, dtype=np.float64).ravel()
    if x.shape != xh.shape:
        raise ValueError(f"SQNR needs equal shapes, got {np.shape(reference)} and {np.shape(test)}")
    noise = np.linalg.norm(x - xh)
    signal = np.linalg.norm(x)
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return float(20.0 * np.log10(signal / noise))


def cosine(reference: np.ndarray, test: np.ndarray) -> float:
    """Cosine similarity of the two tensors flattened (1 = same direction)."""
    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(test, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cosine needs equal shapes, got {np.shape(reference)} and {np.shape(test)}")
    den = np.linalg.norm(a) * np.linalg.norm(b)
    if den == 0:
        raise ValueError("cosine is undefined for an all-zero tensor")
    return float(a @ b / den)


# ---- FSQ code metrics ------------------------------------------------------------------------
def _pair(levels_ref: np.ndarray, levels_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(levels_ref), np.asarray(levels_test)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"levels must be two (N, D) arrays of equal shape, got {a.shape} and {b.shape}")
    return a, b


def per_dim_flip_rate(levels_ref: np.ndarray, levels_test: np.ndarray) -> np.ndarray:
    """Share of windows whose level differs, per FSQ dimension, shape (D,)."""
    a, b = _pair(levels_ref, levels_test)
    return (a != b).mean(axis=0)


def level_flip_rate(levels_ref: np.ndarray, levels_test: np.ndarray) -> float:
    """Share of (window, dimension) entries whose level differs."""
    a, b = _pair(levels_ref, levels_test)
    return float((a != b).mean())


def code_flip_rate(levels_ref: np.ndarray, levels_test: np.ndarray) -> float:
    """Share of windows whose whole code (any dimension) differs."""
    a, b = _pair(levels_ref, levels_test)
    return float((a != b).any(axis=1).mean())


def boundary_margin(bound: np.ndarray) -> np.ndarray:
    """Distance of bound values from the nearest rounding threshold: 0.5 - |b - rint(b)|, in [0, 0.5]."""
    b = np.asarray(bound, dtype=np.float64)
    return 0.5 - np.abs(b - np.rint(b))


def margin_histogram(margin: np.ndarray, flipped: np.ndarray, bins: int = 20) -> pd.DataFrame:
    """Counts of all entries and of flipped entries per margin bin over [0, 0.5].

    ``flip_rate`` per bin shows how fast flips die out with distance from a threshold.
    """
    m = np.asarray(margin, dtype=np.float64).ravel()
    f = np.asarray(flipped, dtype=bool).ravel()
    if m.shape != f.shape:
        raise ValueError(f"margin and flipped must have the same size, got {m.size} and {f.size}")
    edges = np.linspace(0.0, 0.5, bins + 1)
    total, _ = np.histogram(m, bins=edges)
    flips, _ = np.histogram(m[f], bins=edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, flips / np.maximum(total, 1), np.nan)
    return pd.DataFrame(
        {"margin_lo": edges[:-1], "margin_hi": edges[1:], "entries": total, "flipped": flips, "flip_rate": rate}
    )


def codebook_stats(indices: np.ndarray, codebook_size: int) -> dict:
    """Unique codes, usage (unique / size) and perplexity exp(H) of the index distribution."""
    idx = np.asarray(indices, dtype=np.int64).ravel()
    _, counts = np.unique(idx, return_counts=True)
    p = counts / counts.sum()
    return {
        "unique_codes": int(counts.size),
        "usage": counts.size / float(codebook_size),
        "perplexity": float(np.exp(-(p * np.log(p)).sum())),
    }


def fsq_bound_of(
    cut: str, fsq_levels: Sequence[int], constants: Optional[dict] = None
) -> Callable[[np.ndarray], np.ndarray]:
    """NPU output -> FSQ bound values (N, D) float32: identity for ``after_bound``; for ``after_projection``
    the bound tanh(z + shift) * half_l - offset with the model's own constants (REFERENCE.md §1), or the
    constants found in a foreign graph (``split.json['fsq']``: half_l, offset, shift)."""
    if cut == "after_bound":
        return lambda z: np.asarray(z, dtype=np.float32).reshape(len(z), -1)
    if cut != "after_projection":
        raise ValueError(f"unknown cut {cut!r}; expected after_bound or after_projection")
    from workbench.model.fsq import fsq_numpy_constants

    k = fsq_numpy_constants(fsq_levels)
    if constants:
        k = {name: np.asarray(constants[name], np.float32) for name in ("half_l", "offset", "shift")}

    def bound(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32).reshape(len(z), -1)
        return (np.tanh(z + k["shift"]) * k["half_l"] - k["offset"]).astype(np.float32)

    return bound


def select_eval_indices(
    split: np.ndarray, cap: Optional[int] = None, seed: int = 0, split_name: str = "val"
) -> np.ndarray:
    """Sorted indices of the ``split_name`` windows, a seeded random subset of ``cap`` when capped.

    Validation by default: whatever stage 05 selects (remedy, configuration, 16-bit layers) is chosen
    on validation windows; pass ``split_name="test"`` only for numbers that are reported, not used."""
    names = np.asarray(split).astype(str)
    idx = np.flatnonzero(names == split_name)
    if idx.size == 0:
        raise ValueError(f"no {split_name!r} windows in the split array (values: {sorted(set(names))})")
    if cap is not None and cap < idx.size:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=int(cap), replace=False))
    return idx


def split_windows(
    windows: dict, normalizer: Any, split_name: str, cap: Optional[int] = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(normalised NCHW float32 windows, labels) of one split of stage 01's windows (``load_windows_npz``),
    capped as ``select_eval_indices`` caps. Stage 05 selects on ``val`` and reports on ``test``."""
    idx = select_eval_indices(windows["split"], cap, seed=seed, split_name=split_name)
    return np.asarray(normalizer.apply(windows["X"][idx]), dtype=np.float32), np.asarray(windows["y"])[idx]


# ---- the whole comparison --------------------------------------------------------------------
@dataclass
class QuantReport:
    """FP32 vs INT8-emulated NPU outputs mapped through the host post-processor."""

    summary: dict  # headline numbers, each key tagged by backend in `backends`
    per_dim: pd.DataFrame  # level flip rate per FSQ dimension
    margin_hist: pd.DataFrame  # margin histogram (all vs flipped)
    codebook: pd.DataFrame  # codebook usage before / after
    levels_fp32: np.ndarray = field(repr=False, default=None)
    levels_int8: np.ndarray = field(repr=False, default=None)
    margin: np.ndarray = field(repr=False, default=None)


def compare_npu_outputs(
    npu_fp32: np.ndarray,
    npu_int8: np.ndarray,
    postprocess: Postprocess,
    bound_of: Callable[[np.ndarray], np.ndarray],
    fsq_levels: Sequence[int],
    y: Optional[np.ndarray] = None,
    bins: int = 20,
) -> QuantReport:
    """All code-level metrics of one INT8 model against FP32 on the same windows.

    ``postprocess`` is the shared host post-processor (NPU output -> (levels, logits));
    ``bound_of`` maps the NPU output to FSQ bound values (identity for the after_bound cut, the FSQ
    bound for after_projection) so the margin is measured where the rounding happens.
    """
    a, b = np.asarray(npu_fp32, np.float32), np.asarray(npu_int8, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"FP32 and INT8 outputs differ in shape: {a.shape} vs {b.shape}")
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)  # one row per window (NPU outputs may be (N, 1, 1, D))
    lv_a, logit_a = postprocess(a)
    lv_b, logit_b = postprocess(b)
    flipped = np.asarray(lv_a) != np.asarray(lv_b)
    margin = boundary_margin(bound_of(a))
    has_logits = np.asarray(logit_a).shape[1] > 0  # an encoder without class output has (N, 0) logits
    pred_a = np.argmax(logit_a, axis=1) if has_logits else None
    pred_b = np.argmax(logit_b, axis=1) if has_logits else None
    size = int(np.prod(fsq_levels))
    cb_a = codebook_stats(levels_to_indices(lv_a, fsq_levels), size)
    cb_b = codebook_stats(levels_to_indices(lv_b, fsq_levels), size)
    s = {
        "windows": int(a.shape[0]),
        "sqnr_db": sqnr_db(a, b),
        "cosine": cosine(a, b),
        "level_flip_rate": level_flip_rate(lv_a, lv_b),
        "code_flip_rate": code_flip_rate(lv_a, lv_b),
        "prediction_flip_rate": float((pred_a != pred_b).mean()) if has_logits else float("nan"),
        "flipped_margin_median": float(np.median(margin[flipped])) if flipped.any() else float("nan"),
        "flipped_margin_max": float(margin[flipped].max()) if flipped.any() else float("nan"),
        "unique_codes_fp32": cb_a["unique_codes"],
        "unique_codes_int8": cb_b["unique_codes"],
        "backend": BACKEND_INT8,
        "reference_backend": BACKEND_FP32,
    }
    if y is not None and has_logits:
        y = np.asarray(y)
        s["accuracy_fp32"] = float((pred_a == y).mean())
        s["accuracy_int8"] = float((pred_b == y).mean())
        s["accuracy_change"] = s["accuracy_int8"] - s["accuracy_fp32"]
    per_dim = pd.DataFrame(
        {
            "dim": np.arange(len(fsq_levels)),
            "levels": list(fsq_levels),
            "level_flip_rate": flipped.mean(axis=0),
            "min_margin_fp32": margin.min(axis=0),
        }
    )
    codebook = pd.DataFrame(
        [{"model": "fp32", "backend": BACKEND_FP32, **cb_a}, {"model": "int8", "backend": BACKEND_INT8, **cb_b}]
    )
    return QuantReport(
        summary=s,
        per_dim=per_dim,
        margin_hist=margin_histogram(margin, flipped, bins),
        codebook=codebook,
        levels_fp32=np.asarray(lv_a),
        levels_int8=np.asarray(lv_b),
        margin=margin,
    )


# ---- per-layer SQNR (onnxruntime.quantization.qdq_loss_debug) ---------------------------------
def per_layer_sqnr(
    fp32_model: str | Path, int8_model: str | Path, x_nchw: np.ndarray, workdir: str | Path, batch_size: int = 256
) -> pd.DataFrame:
    """SQNR of every activation of the INT8 model against the same tensor in the FP32 model.

    Uses ORT's qdq_loss_debug: both graphs are augmented to expose every intermediate tensor, run on
    the same windows, and matched by tensor name. ``xmodel_sqnr_db`` (FP32 vs INT8 model, accumulated
    error up to that tensor) is the number that matters; ``qdq_sqnr_db`` is the error added by that
    tensor's own quantize/dequantize step.
    """
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    in_name, _ = io_names(fp32_model)
    aug_f, aug_q = workdir / "fp32_aug.onnx", workdir / "int8_aug.onnx"
    modify_model_output_intermediate_tensors(str(fp32_model), str(aug_f))
    modify_model_output_intermediate_tensors(str(int8_model), str(aug_q))
    act_f = collect_activations(str(aug_f), ArrayCalibrationReader(x_nchw, in_name, batch_size))
    act_q = collect_activations(str(aug_q), ArrayCalibrationReader(x_nchw, in_name, batch_size))
    matched = create_activation_matching(act_q, act_f)
    errors = compute_activation_error(matched)
    graph = load_onnx(fp32_model).graph
    order = {in_name: -1}
    order.update({t: i for i, n in enumerate(graph.node) for t in n.output})
    rows = [
        {
            "tensor": name,
            "xmodel_sqnr_db": float(e.get("xmodel_err", float("nan"))),
            "qdq_sqnr_db": float(e.get("qdq_err", float("nan"))),
            "backend": BACKEND_INT8,
        }
        for name, e in errors.items()
    ]
    df = pd.DataFrame(rows)
    if df.empty:
        raise RuntimeError("no activation of the INT8 model matched the FP32 model; is it a QDQ model?")
    df["order"] = df["tensor"].map(order).fillna(len(order)).astype(int)
    return df.sort_values("order").drop(columns="order").reset_index(drop=True)

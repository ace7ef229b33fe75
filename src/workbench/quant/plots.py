"""Figures of what INT8 quantization does to the NPU part and the FSQ codes (stage 05)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.quant.emulate import BACKEND_FP32, BACKEND_INT8


def margin_figure(hist: pd.DataFrame) -> plt.Figure:
    """Where level flips happen: FP32 margin to the nearest rounding threshold, all entries vs flipped,
    and the flip rate per margin bin (``hist`` from ``margin_histogram``)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    centers = (hist.margin_lo + hist.margin_hi) / 2
    width = float(hist.margin_hi.iloc[0] - hist.margin_lo.iloc[0])
    axes[0].bar(centers, hist.entries, width=width, alpha=0.5, label="all (window, dim) entries")
    axes[0].bar(centers, hist.flipped, width=width, color="C3", label="flipped under INT8")
    axes[0].set_yscale("symlog")
    axes[0].set_xlabel("FP32 margin to nearest rounding threshold 0.5 - |b - rint(b)|")
    axes[0].set_ylabel("count")
    axes[0].set_title(f"Where level flips happen ({BACKEND_INT8} vs {BACKEND_FP32})")
    axes[0].legend()
    axes[1].plot(centers, hist.flip_rate, "o-")
    axes[1].set_xlabel("FP32 margin")
    axes[1].set_ylabel("flip rate in bin")
    axes[1].set_title("Flip probability vs distance from threshold")
    fig.tight_layout()
    return fig


def layer_sqnr_bars(table: pd.DataFrame, ceiling_db: float = 120.0) -> plt.Figure:
    """Accumulated SQNR per tensor. Tensors that quantization leaves exact (constants, SQNR above
    ``ceiling_db``) are left out so they do not flatten the scale; the title says how many."""
    shown = table[np.isfinite(table.xmodel_sqnr_db) & (table.xmodel_sqnr_db <= ceiling_db)]
    hidden = len(table) - len(shown)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(shown) + 2), 3.8))
    ax.bar(range(len(shown)), shown.xmodel_sqnr_db)
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels(shown.tensor, rotation=60, ha="right", fontsize=7)
    ax.axhline(10, color="C3", ls="--", label="10 dB")
    ax.set_ylabel("SQNR vs FP32 (dB)")
    note = f"; {hidden} exact tensor(s) above {ceiling_db:g} dB not shown" if hidden else ""
    ax.set_title(f"Per-tensor SQNR, {BACKEND_INT8}{note}")
    ax.legend()
    fig.tight_layout()
    return fig


def sensitivity_bars(sens: pd.DataFrame) -> plt.Figure:
    """Per-layer sensitivity: code flips with only this layer INT8, and the reduction if it stays float."""
    order = sens.sort_values("code_flip_reduction_if_kept", ascending=False)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(order) + 2), 3.8))
    xs = np.arange(len(order))
    ax.bar(xs - 0.2, order.code_flip_only_this_int8, 0.4, label="only this layer INT8")
    ax.bar(xs + 0.2, order.code_flip_reduction_if_kept, 0.4, label="flip reduction if kept in float")
    ax.set_xticks(xs)
    ax.set_xticklabels(order.node, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("code-flip rate")
    ax.set_title(f"Per-layer sensitivity ({BACKEND_INT8})")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_comparison(df: pd.DataFrame, metric: str = "code_flip_rate") -> plt.Figure:
    """Grouped bars: ``metric`` per calibration configuration, one panel per cut, bars per output bits."""
    cuts = list(dict.fromkeys(df.cut))
    fig, axes = plt.subplots(1, len(cuts), figsize=(6 * len(cuts), 4), squeeze=False, sharey=True)
    for ax, cut in zip(axes[0], cuts):
        sub = df[df.cut == cut].copy()
        sub["config"] = sub.strategy + "\n" + sub.calib_size.astype(str)
        piv = sub.pivot_table(index="config", columns="output_bits", values=metric, sort=False)
        xs = np.arange(len(piv))
        width = 0.8 / max(len(piv.columns), 1)
        for i, bits in enumerate(piv.columns):
            ax.bar(xs + i * width, piv[bits].values, width, label=f"{bits}-bit output")
        ax.set_xticks(xs + width * (len(piv.columns) - 1) / 2)
        ax.set_xticklabels(piv.index, fontsize=8)
        ax.set_title(f"cut = {cut}")
        ax.set_ylabel(f"{metric} (ort-int8-emulated vs ort-fp32)")
        ax.legend()
    fig.tight_layout()
    return fig

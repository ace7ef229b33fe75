"""Figures of what INT8 quantization does to the NPU part and the FSQ codes (stage 05)."""

from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.quant.emulate import BACKEND_FP32, BACKEND_INT8


def margin_figure(hist: pd.DataFrame, label: str = "INT8") -> plt.Figure:
    """Where level flips happen: FP32 margin to the nearest rounding threshold, all entries vs flipped,
    and the flip rate per margin bin (``hist`` from ``margin_histogram``); ``label`` names the rung."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    centers = (hist.margin_lo + hist.margin_hi) / 2
    width = float(hist.margin_hi.iloc[0] - hist.margin_lo.iloc[0])
    axes[0].bar(centers, hist.entries, width=width, alpha=0.5, label="all (window, dim) entries")
    axes[0].bar(centers, hist.flipped, width=width, color="C3", label=f"flipped under {label}")
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
    n_configs = max(int(df[df.cut == c][["strategy", "calib_size"]].drop_duplicates().shape[0]) for c in cuts)
    panel_w = max(6.0, 0.55 * n_configs + 2)  # room for every "strategy / size" label side by side
    fig, axes = plt.subplots(1, len(cuts), figsize=(panel_w * len(cuts), 4.4), squeeze=False, sharey=True)
    for ax, cut in zip(axes[0], cuts):
        sub = df[df.cut == cut].copy()
        sub["config"] = sub.strategy + " / " + sub.calib_size.astype(str)
        piv = sub.pivot_table(index="config", columns="output_bits", values=metric, sort=False)
        xs = np.arange(len(piv))
        width = 0.8 / max(len(piv.columns), 1)
        for i, bits in enumerate(piv.columns):
            ax.bar(xs + i * width, piv[bits].values, width, label=f"{bits}-bit output")
        ax.set_xticks(xs + width * (len(piv.columns) - 1) / 2)
        ax.set_xticklabels(piv.index, fontsize=8, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_xlabel("strategy / calibration windows")
        ax.set_title(f"cut = {cut}")
        ax.set_ylabel(f"{metric} (ort-int8-emulated vs ort-fp32)")
        ax.legend()
    fig.tight_layout()
    return fig


_VS = f"{BACKEND_INT8} vs {BACKEND_FP32}"


def remedy_ladder(table: pd.DataFrame, picked: Optional[str] = None, target: float = 0.01) -> plt.Figure:
    """Code-flip rate per rung of the remedy ladder, validation (what picks) next to test (reported
    only), prediction agreement on a second axis, and the 1% target line (issue 14)."""
    rungs = list(dict.fromkeys(table["remedy"]))
    splits = [s for s in ("val", "test") if s in set(table["split"])]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(rungs)), 4))
    xs = np.arange(len(rungs))
    width = 0.8 / max(len(splits), 1)
    for i, split in enumerate(splits):
        d = table[table.split == split].set_index("remedy").reindex(rungs)
        ax.bar(
            xs + i * width,
            d["code_flip_rate"] * 100,
            width,
            alpha=1.0 if split == "val" else 0.45,
            label=f"code flips, {split}" + (" (picks)" if split == "val" else " (report only)"),
        )
    ax.axhline(target * 100, color="C3", ls="--", lw=1, label=f"target {target:.0%}")
    ax.set_xticks(xs + width * (len(splits) - 1) / 2)
    ax.set_xticklabels([r + ("  <- picked" if r == picked else "") for r in rungs], rotation=20, ha="right")
    ax.set_ylabel("windows whose FSQ code flips (%)")
    ax.set_title(f"Remedy ladder ({_VS})")
    ax2 = ax.twinx()
    d = table[table.split == "val"].set_index("remedy").reindex(rungs)
    ax2.plot(xs, d["prediction_agreement"] * 100, "ko-", ms=4, label="prediction agreement, val")
    ax2.set_ylabel("prediction agreement (%)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def flip_attribution(attr: pd.DataFrame, per_layer: Optional[pd.DataFrame] = None) -> plt.Figure:
    """Code flips caused by each quantized part alone (input / weights / activations / all) and, when the
    per-layer sensitivity ran, by each layer alone (the first Conv's row includes the input)."""
    n = 2 if per_layer is not None and not per_layer.empty else 1
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 3.8), squeeze=False)
    ax = axes[0][0]
    ax.bar(attr["part"], attr["code_flip_rate"] * 100, color=["C0", "C1", "C2", "C3"][: len(attr)])
    ax.set_ylabel("code flips (%)")
    ax.set_title(f"Flip attribution, validation ({_VS})")
    ax.tick_params(axis="x", rotation=15)
    if per_layer is not None and n == 2:
        ax = axes[0][1]
        d = per_layer.sort_values("code_flip_only_this_int8", ascending=False)
        ax.bar(range(len(d)), d["code_flip_only_this_int8"] * 100)
        ax.set_xticks(range(len(d)))
        ax.set_xticklabels(d["node"], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("code flips, only this layer INT8 (%)")
        ax.set_title("Per layer")
    fig.tight_layout()
    return fig


def flips_per_class(per_class: pd.DataFrame) -> plt.Figure:
    """Code-flip rate per true class, one bar group per remedy."""
    piv = per_class.pivot_table(index="class", columns="remedy", values="code_flip_rate", sort=False)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(piv)), 3.6))
    xs = np.arange(len(piv))
    width = 0.8 / max(len(piv.columns), 1)
    for i, col in enumerate(piv.columns):
        ax.bar(xs + i * width, piv[col].values * 100, width, label=col)
    ax.set_xticks(xs + width * (len(piv.columns) - 1) / 2)
    ax.set_xticklabels(piv.index, rotation=20, ha="right")
    ax.set_ylabel("code flips (%)")
    ax.set_title(f"Flips per class, validation ({_VS})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

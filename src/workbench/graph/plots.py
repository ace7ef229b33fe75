"""Figures of the exported graph: parity with PyTorch, op counts, the split parts, host speed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.graph.draw import draw_graph


def parity_figure(ref: dict, got: dict, ref_backend: str = "torch-fp32", got_backend: str = "ort-fp32") -> plt.Figure:
    """Logits of both backends against each other, their differences on a log scale, and how far the
    pre-Round values sit from the .5 decision thresholds (``ref``/``got``: dicts with logits, bound)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].scatter(ref["logits"].ravel(), got["logits"].ravel(), s=4)
    axes[0].set(
        xlabel=f"logit ({ref_backend})",
        ylabel=f"logit ({got_backend})",
        title=f"logits: {got_backend} vs {ref_backend}",
    )
    d = np.abs(ref["logits"].astype(np.float64) - got["logits"]).ravel()
    axes[1].hist(np.log10(d + 1e-12), bins=40)
    axes[1].set(xlabel="log10 |Δ logit|  (-12 = identical)", ylabel="count", title="logit differences")
    tie = np.abs(got["bound"] - np.floor(got["bound"]) - 0.5).ravel()
    axes[2].hist(tie, bins=50)
    axes[2].set(
        xlabel="distance of pre-Round value to the nearest .5 threshold",
        ylabel="count",
        title=f"margin to FSQ decision thresholds (min {tie.min():.2e})",
    )
    fig.tight_layout()
    return fig


def op_histogram_bars(hist: pd.Series, title: str = "op histogram (model.onnx)") -> plt.Figure:
    """Nodes per op type."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(hist) + 2), 2.8))
    hist.plot.bar(ax=ax, color="#4c72b0")
    ax.set(ylabel="nodes", title=title)
    fig.tight_layout()
    return fig


def split_parts_figure(npu_onnx: Path, host_onnx: Path, status: Optional[dict[str, str]] = None) -> plt.Figure:
    """The NPU part and the host part side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 7))
    draw_graph(npu_onnx, status=status, title="npu.onnx", ax=axes[0])
    draw_graph(host_onnx, status=status, title="host.onnx", ax=axes[1])
    fig.tight_layout()
    return fig


def latency_histogram(seconds: np.ndarray, title: str = "host post-processing latency") -> plt.Figure:
    """Distribution of batch-1 call times in µs (clipped at the 99th percentile for readability)."""
    us = np.asarray(seconds) * 1e6
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(us, bins=60, range=(0, float(np.percentile(us, 99))))
    ax.set(xlabel="µs per call (batch 1)", ylabel="calls", title=title)
    fig.tight_layout()
    return fig

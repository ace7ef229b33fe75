"""Figures of evaluation results: confusion matrices, per-subject accuracy, latency."""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np


def confusion(
    cm: np.ndarray, label_names: Sequence[str], title: str = "", normalize: bool = True, ax: Optional[plt.Axes] = None
) -> plt.Figure:
    """Row-normalised confusion matrix (recall per true class) with counts in the cells."""
    fig = (
        ax.figure
        if ax is not None
        else plt.figure(figsize=(1.0 + 0.75 * len(label_names), 0.8 + 0.6 * len(label_names)))
    )
    ax = ax or fig.add_subplot(111)
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0) if normalize else cm
    top = 1.0 if normalize else max(float(np.max(shown)), 1.0)
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=top, aspect="auto", interpolation="nearest")
    for (i, j), v in np.ndenumerate(shown):
        ax.text(
            j,
            i,
            f"{v:.2f}\n({int(cm[i, j])})" if normalize else f"{int(cm[i, j])}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v > 0.6 * top else "black",
        )
    ticks = np.arange(len(label_names))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    # long class names (HAPT's WALKING_DOWNSTAIRS, STAND_TO_SIT, ...) must not run into each other
    ax.set_xticklabels(label_names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticklabels(label_names, fontsize=8)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_per_backend(cms: dict, label_names: Sequence[str], ncols: int = 3) -> plt.Figure:
    """One row-normalised confusion matrix per backend (``cms``: backend name -> (K, K) counts)."""
    names = list(cms)
    if not names:
        raise ValueError("no confusion matrices to plot")
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    k = len(label_names)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (1.2 + 0.7 * k), nrows * (1.0 + 0.6 * k)), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        confusion(np.asarray(cms[name]), label_names, title=name, ax=ax)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def per_subject_accuracy_bars(table, title: str = "") -> plt.Figure:
    """Grouped bars: accuracy per test subject, one bar colour per backend (long table with columns
    backend, subject, accuracy)."""
    pivot = table.pivot(index="subject", columns="backend", values="accuracy")
    pivot = pivot[[b for b in dict.fromkeys(table["backend"])]]  # keep the evaluation order
    n_sub, n_b = pivot.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * n_sub * n_b + 2), 3.6))
    width = 0.8 / max(n_b, 1)
    x = np.arange(n_sub)
    for j, b in enumerate(pivot.columns):
        ax.bar(x + (j - (n_b - 1) / 2) * width, pivot[b].to_numpy(), width=width, label=b)
    ax.set_xticks(x, [str(s) for s in pivot.index])
    ax.set_xlabel("test subject"), ax.set_ylabel("accuracy"), ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "per-subject accuracy on the test split")
    fig.tight_layout()
    return fig


def latency_bars(table, title: str = "") -> plt.Figure:
    """End-to-end batch-1 p50 / p95 / p99 per measured backend (rows of the stage-07 latency table);
    bars are labelled with the hardware that ran, so CPU numbers are not read as NPU numbers."""
    rows = table[table["e2e_p50_ms"].notna()]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows) + 2), 3.4))
    if rows.empty:
        ax.text(0.5, 0.5, "no backend was timed", transform=ax.transAxes, ha="center")
        return fig
    x = np.arange(len(rows))
    for j, q in enumerate(("e2e_p50_ms", "e2e_p95_ms", "e2e_p99_ms")):
        ax.bar(x + (j - 1) * 0.27, rows[q].to_numpy(dtype=float), width=0.27, label=q.split("_")[1])
    ax.set_xticks(x, [f"{b}\n{h}" for b, h in zip(rows["backend"], rows["hardware"])], fontsize=7)
    ax.set_ylabel("ms (batch 1, input -> logits)")
    ax.legend(fontsize=8)
    ax.set_title(title or "end-to-end latency per backend")
    fig.tight_layout()
    return fig

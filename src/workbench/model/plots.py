"""Figures of training and of the FSQ codes a model uses."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def training_curves(history: dict) -> plt.Figure:
    """Loss and accuracy per epoch (history as returned by model.train_model: one list per key)."""
    ep = history["epoch"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    a.plot(ep, history["train_loss"], label="train")
    a.plot(ep, history["val_loss"], label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.legend()
    b.plot(ep, history["train_acc"], label="train")
    b.plot(ep, history["val_acc"], label="validation")
    best = history.get("best_epoch")
    if best:
        b.axvline(best, color="grey", ls="--", lw=0.8, label=f"best epoch {best}")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.legend()
    fig.tight_layout()
    return fig


def level_histograms(levels: np.ndarray, fsq_levels: Sequence[int], title: str = "") -> plt.Figure:
    """Per FSQ dimension: how often each of its L levels is used."""
    d = len(fsq_levels)
    fig, axes = plt.subplots(1, d, figsize=(2.3 * d, 2.6), squeeze=False)
    for i, L in enumerate(fsq_levels):
        lo = -(L // 2)
        values = np.arange(lo, lo + L)
        counts = np.array([(levels[:, i] == v).sum() for v in values])
        axes[0, i].bar(values, counts / max(1, len(levels)), color="tab:blue")
        axes[0, i].set_xticks(values)
        axes[0, i].set_title(f"dim {i} (L={L})", fontsize=9)
    axes[0, 0].set_ylabel("share of windows")
    fig.suptitle(title or "FSQ level usage per dimension")
    fig.tight_layout()
    return fig


def code_frequency(indices: np.ndarray, codebook_size: int, title: str = "") -> plt.Figure:
    """Sorted frequency of the used codes: a long flat tail means the codebook is spread out."""
    _, counts = np.unique(indices, return_counts=True)
    counts = np.sort(counts)[::-1]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.bar(np.arange(len(counts)), counts / counts.sum(), width=1.0)
    ax.set_xlabel(f"code rank ({len(counts)} of {codebook_size} codes used)")
    ax.set_ylabel("share of windows"), ax.set_yscale("log")
    ax.set_title(title or "FSQ code frequency")
    fig.tight_layout()
    return fig

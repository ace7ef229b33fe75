"""Figures of the data: what a window of each class looks like."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def example_windows(
    X: np.ndarray,
    y: np.ndarray,
    label_names: Sequence[str],
    channel_names: Sequence[str],
    site: int = 0,
    sample_rate_hz: float = 50.0,
    title: str = "",
) -> plt.Figure:
    """The first window of each class (rows), one column per sensor (channels grouped by 3: x, y, z),
    so a magnetometer's offset does not flatten the accelerometer."""
    k = len(label_names)
    groups = [list(range(i, min(i + 3, X.shape[1]))) for i in range(0, X.shape[1], 3)]
    fig, axes = plt.subplots(k, len(groups), figsize=(3.6 * len(groups) + 1, 1.5 * k), sharex=True, squeeze=False)
    t = np.arange(X.shape[-1]) / sample_rate_hz
    for c in range(k):
        idx = np.flatnonzero(y == c)
        for g, chans in enumerate(groups):
            ax = axes[c, g]
            if len(idx):
                for ch in chans:
                    ax.plot(t, X[idx[0], ch, site, :], lw=0.8, label=channel_names[ch])
            if c == 0:
                ax.set_title(" / ".join(channel_names[ch] for ch in chans), fontsize=8)
            if g == 0:
                ax.set_ylabel(label_names[c], rotation=0, ha="right", va="center")
    for ax in axes[-1]:
        ax.set_xlabel("time [s]")
    fig.suptitle(title or "first window of each class")
    fig.tight_layout()
    return fig

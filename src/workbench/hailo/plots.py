"""Figures of the compile stage: the calibration set the DFC gets, and the DFC emulator's error."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def calibset_boxplot(calib_nhwc: np.ndarray) -> plt.Figure:
    """Per input channel (last NHWC axis) distribution of the quantization calibration set."""
    flat = calib_nhwc.reshape(-1, calib_nhwc.shape[-1])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * flat.shape[1]), 3))
    ax.boxplot([flat[:, c] for c in range(flat.shape[1])], showfliers=False)
    ax.set_xlabel("input channel (C, last NHWC axis)")
    ax.set_ylabel("normalised value")
    ax.set_title(f"calibset_nhwc.npy: {len(calib_nhwc)} windows")
    fig.tight_layout()
    return fig


def emulator_scatter(fp: np.ndarray, q: np.ndarray, sqnr: float) -> plt.Figure:
    """DFC emulator: SDK_QUANTIZED against SDK_FP_OPTIMIZED on the pre-Round tensor."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(fp.ravel(), q.ravel(), s=3, alpha=0.4)
    lim = [float(min(fp.min(), q.min())), float(max(fp.max(), q.max()))]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("SDK_FP_OPTIMIZED")
    ax.set_ylabel("SDK_QUANTIZED")
    ax.set_title(f"hailo-emulator, pre-Round tensor: SQNR {sqnr:.1f} dB ({len(fp)} windows)")
    fig.tight_layout()
    return fig

"""Cutting fixed-length windows out of labelled segments, never across a segment boundary."""

from __future__ import annotations

import numpy as np


def window_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Start offsets of every full window in a run of `length` samples (empty when it does not fit)."""
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1; got window={window}, hop={hop}")
    if length < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, length - window + 1, hop, dtype=np.int64)


def count_windows(length: int, window: int, hop: int) -> int:
    """floor((length - window) / hop) + 1 for length >= window, else 0."""
    return 0 if length < window else (length - window) // hop + 1


def cut_windows(signal: np.ndarray, start: int, stop: int, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows inside signal[:, start:stop] (stop exclusive), shape (n, C, window), and their starts.

    `signal` is (C, L). Every window lies fully inside [start, stop).
    """
    starts = start + window_starts(stop - start, window, hop)
    if len(starts) == 0:
        return np.zeros((0, signal.shape[0], window), dtype=signal.dtype), starts
    idx = starts[:, None] + np.arange(window)[None, :]  # (n, window)
    return np.transpose(signal[:, idx], (1, 0, 2)), starts

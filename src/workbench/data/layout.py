"""NCHW <-> NHWC for IMU windows. The Dataflow Compiler parses (N, C, S, T) as channels-last
(N, S, T, C): calibration sets and emulator inputs must be in that order."""

from __future__ import annotations

import numpy as np


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    if x.ndim != 4:
        raise ValueError(f"expected a 4-D (N, C, S, T) array, got shape {x.shape}")
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    if x.ndim != 4:
        raise ValueError(f"expected a 4-D (N, S, T, C) array, got shape {x.shape}")
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))

"""Per channel x site standardisation, fitted on the training split only and stored with the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .windowset import DataError

MIN_STD = 1e-3  # floor: a flat channel (e.g. a sensor that is absent) must not divide by ~0


@dataclass
class Normalizer:
    """x_norm = (x - mean) / std with mean, std of shape (C, S, 1) in physical units."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.std = np.asarray(self.std, dtype=np.float32)
        if self.mean.ndim != 3 or self.mean.shape[2] != 1 or self.mean.shape != self.std.shape:
            raise DataError(
                f"Normalizer mean/std must both have shape (C, S, 1); got {self.mean.shape} and {self.std.shape}"
            )
        if np.any(self.std <= 0) or not np.all(np.isfinite(self.std)) or not np.all(np.isfinite(self.mean)):
            raise DataError("Normalizer std must be positive and finite, mean finite")

    @classmethod
    def fit(cls, X: np.ndarray, min_std: float = MIN_STD) -> "Normalizer":
        """Statistics over windows and time of X (N, C, S, T): pass the training windows only."""
        X = np.asarray(X)
        if X.ndim != 4 or X.shape[0] == 0:
            raise DataError(f"Normalizer.fit needs training windows (N, C, S, T) with N > 0, got {X.shape}")
        x = X.astype(np.float64)
        mean = x.mean(axis=(0, 3))[:, :, None]
        std = np.maximum(x.std(axis=(0, 3))[:, :, None], min_std)
        return cls(mean=mean, std=std)

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 4 or X.shape[1:3] != self.mean.shape[:2]:
            raise DataError(f"Normalizer was fitted on (C, S) = {self.mean.shape[:2]}, got X {X.shape}")
        return ((X - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalizer":
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            raise DataError(f"Normalizer.from_dict needs keys 'mean' and 'std', got {d!r:.80}")
        return cls(mean=np.array(d["mean"], dtype=np.float32), std=np.array(d["std"], dtype=np.float32))

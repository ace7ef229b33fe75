"""Training-time augmentation of IMU windows, done in physical units.

Why: held-out subjects wear the phone at slightly different angles and move with different vigour,
so a model that saw only the training subjects' exact orientations over-fits them. A small random
3-D rotation of every sensor site (the same rotation for the accelerometer, gyroscope and
magnetometer triplets of one site, because they share the phone's body frame) and a random amplitude
scale simulate that (Um et al., "Data augmentation of wearable sensor data for Parkinson's disease
monitoring using convolutional neural networks", ICMI 2017: rotation and scaling).

The training loop sees normalised windows ``(x - mean) / std``. A rotation is only a rotation in
physical units, so each batch is de-normalised with the training Normalizer's mean/std, rotated and
scaled, and normalised again. Gravity stays in the accelerometer channels, so only small angles keep
postures (sitting vs standing differ by the waist's tilt) apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor


def random_rotations(n: int, max_deg: float, generator: torch.Generator) -> Tensor:
    """(n, 3, 3) rotation matrices about uniformly random axes by angles uniform in [-max_deg, max_deg].

    Rodrigues' formula R = I + sin(a) K + (1 - cos(a)) K^2 with K the cross-product matrix of the axis.
    """
    if n < 0 or not (0.0 <= max_deg <= 180.0):
        raise ValueError(f"need n >= 0 and 0 <= max_deg <= 180 (got n={n}, max_deg={max_deg})")
    axis = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(max_deg)
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    K = torch.stack([torch.stack([zero, -z, y], 1), torch.stack([z, zero, -x], 1), torch.stack([-y, x, zero], 1)], 1)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    return (eye + s * K + (1 - c) * (K @ K)).float()


@dataclass
class Augmenter:
    """Random per-window rotation of xyz triplets and amplitude scaling, in physical units.

    ``mean`` / ``std`` are the training Normalizer's (C, S, 1) statistics; ``C`` must be a multiple of
    3 (consecutive channel triplets are xyz of one sensor) when ``rotation_deg > 0``. ``scale`` draws
    one factor per window and channel triplet from U[1 - scale, 1 + scale] (a per-sensor gain error).
    """

    mean: np.ndarray
    std: np.ndarray
    rotation_deg: float = 0.0
    scale: float = 0.0

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.std = np.asarray(self.std, dtype=np.float32)
        if self.mean.ndim != 3 or self.mean.shape[2] != 1 or self.mean.shape != self.std.shape:
            raise ValueError(
                f"Augmenter mean/std must both have shape (C, S, 1) (the Normalizer's); got "
                f"{self.mean.shape} and {self.std.shape}"
            )
        if not (0.0 <= self.rotation_deg <= 180.0):
            raise ValueError(f"augment_rotation_deg must be in [0, 180] (got {self.rotation_deg})")
        if not (0.0 <= self.scale < 1.0):
            raise ValueError(f"augment_scale must be in [0, 1) (got {self.scale})")
        c = self.mean.shape[0]
        if (self.rotation_deg > 0 or self.scale > 0) and c % 3 != 0:
            raise ValueError(
                f"augmentation needs xyz channel triplets, but the data has {c} channels "
                f"(not a multiple of 3); set augment_rotation_deg: 0 and augment_scale: 0"
            )
        self._mean_t: Optional[Tensor] = None
        self._std_t: Optional[Tensor] = None

    @property
    def enabled(self) -> bool:
        return self.rotation_deg > 0 or self.scale > 0

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._mean_t is None or self._mean_t.device != x.device:
            self._mean_t = torch.from_numpy(self.mean).to(x.device)
            self._std_t = torch.from_numpy(self.std).to(x.device)
        return self._mean_t, self._std_t

    def __call__(self, xn: Tensor, generator: torch.Generator) -> Tensor:
        """Augmented copy of a normalised batch (N, C, S, T); the input itself is not modified.

        Random numbers come from ``generator`` (a CPU generator), so a seeded run is repeatable.
        """
        if not self.enabled:
            return xn
        n, c, s, t = xn.shape
        if (c, s) != tuple(self.mean.shape[:2]):
            raise ValueError(
                f"Augmenter was built for (C, S) = {tuple(self.mean.shape[:2])}, got batch {tuple(xn.shape)}"
            )
        mean, std = self._stats(xn)
        x = (xn * std + mean).reshape(n, c // 3, 3, s, t)
        if self.rotation_deg > 0:
            R = random_rotations(n * s, self.rotation_deg, generator).reshape(n, s, 3, 3).to(xn.device)
            # y[n, g, i, s, t] = sum_j R[n, s, i, j] x[n, g, j, s, t]: one rotation per window and site.
            x = torch.einsum("nsij,ngjst->ngist", R, x)
        if self.scale > 0:
            f = 1 + (torch.rand(n, c // 3, 1, s, 1, generator=generator) * 2 - 1) * self.scale
            x = x * f.to(xn.device)
        return ((x.reshape(n, c, s, t) - mean) / std).to(xn.dtype)

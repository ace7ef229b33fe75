"""The host-side input transform of stage 05's remedy, and reading ``quant_remedy.json``.

numpy and json only (no onnxruntime, no torch): stages 06-08 and a device host read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from workbench.errors import QuantError


@dataclass
class InputTransform:
    """What the host does to a normalised NCHW window before the deployed NPU graph sees it."""

    scale: Optional[list[float]] = None  # per input channel: x_c / scale_c (equalization)
    clip: Optional[list[float]] = None  # [lo, hi] in the (equalized) input space

    def apply(self, x_nchw: np.ndarray) -> np.ndarray:
        x = np.asarray(x_nchw, dtype=np.float32)
        if self.scale is not None:
            s = np.asarray(self.scale, dtype=np.float32)
            if x.ndim != 4 or x.shape[1] != s.size:
                raise QuantError(
                    f"input transform has {s.size} channel scales but the windows are {x.shape} (N, C, S, T)"
                )
            x = x / s[None, :, None, None]
        if self.clip is not None:
            x = np.clip(x, self.clip[0], self.clip[1])
        return np.ascontiguousarray(x, dtype=np.float32)

    @property
    def identity(self) -> bool:
        return self.scale is None and self.clip is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "InputTransform":
        d = d or {}
        return cls(scale=d.get("scale"), clip=d.get("clip"))


def load_remedy(path: str | Path) -> dict:
    """Read ``quant_remedy.json``; a missing file means the plain INT8 graph with no host transform."""
    path = Path(path)
    if not path.is_file():
        return {"remedy": "int8", "input_transform": {}, "sixteen_bit_onnx_nodes": [], "missing": True}
    return json.loads(path.read_text())

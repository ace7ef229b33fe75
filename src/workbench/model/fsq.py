"""Finite Scalar Quantization (FSQ).

Mentzer, Minnen, Agustsson, Tschannen, "Finite Scalar Quantization: VQ-VAE Made Simple",
arXiv 2309.15505 (2023). Per dimension i with L_i levels (REFERENCE.md section 1)::

    half_l = (L - 1) * (1 + eps) / 2
    offset = 0.5 if L is even else 0.0
    shift  = atanh(offset / half_l)
    bound(z) = tanh(z + shift) * half_l - offset     # continuous, in "code units"
    level(z) = round(bound(z))                       # integer in [-(L//2), L - 1 - L//2]
    code(z)  = level(z) / (L // 2)                   # normalised to about [-1, 1]

The shift uses atanh (the paper's appendix writes tan; atanh is what makes f(0) = 0 for even L).
The eps keeps the extreme levels reachable: without it tanh would have to reach +-1 exactly.

Why the constants live in float32 buffers: the exported ONNX graph folds them into constants, and
the host-side code (after the NPU cut) must use bit-identical numbers, which it gets from
``fsq_numpy_constants``. Training uses the straight-through estimator; evaluation uses a plain
``torch.round`` so the inference graph contains a single ``Round`` and no STE arithmetic.
Rounding is half to even in both torch and numpy.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

ArrayLike = Union[np.ndarray, Tensor, Sequence[int]]

DEFAULT_EPS = 1e-3


def _exporting() -> bool:
    """True while torch traces/exports: shape checks would only add tracer warnings there."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _check_levels(levels: Sequence[int]) -> list[int]:
    try:
        out = [int(lv) for lv in levels]
    except TypeError as exc:
        raise ValueError(f"FSQ levels must be a sequence of integers, e.g. [8, 6, 5, 5, 4]; got {levels!r}") from exc
    if not out:
        raise ValueError("FSQ needs at least one dimension: levels is empty (e.g. [8, 6, 5, 5, 4])")
    if any(float(lv) != float(o) for lv, o in zip(levels, out)):
        raise ValueError(f"FSQ levels must be whole numbers; got {list(levels)!r}")
    bad = [lv for lv in out if lv < 2]
    if bad:
        raise ValueError(f"every FSQ level count must be >= 2 (got {bad} in {out}); e.g. [8, 6, 5, 5, 4]")
    return out


def fsq_numpy_constants(levels: Sequence[int], eps: float = DEFAULT_EPS) -> dict[str, np.ndarray]:
    """Per-dimension FSQ constants as float32 arrays, shared by the torch module and host code.

    Returns ``half_l``, ``offset``, ``shift`` and ``half_width`` (= L // 2), each of shape
    (len(levels),). Computed in float64 and rounded once to float32, so every consumer (torch
    buffers, ONNX constants, numpy post-processing) sees the same numbers.
    """
    lv = np.asarray(_check_levels(levels), dtype=np.float64)
    if not (0.0 <= eps < 1.0):
        raise ValueError(f"FSQ eps must be in [0, 1) (got {eps}); the reference value is 1e-3")
    half_l = (lv - 1.0) * (1.0 + eps) / 2.0
    offset = np.where(lv.astype(np.int64) % 2 == 0, 0.5, 0.0)
    shift = np.arctanh(offset / half_l)
    half_width = np.floor(lv / 2.0)
    return {
        "half_l": half_l.astype(np.float32),
        "offset": offset.astype(np.float32),
        "shift": shift.astype(np.float32),
        "half_width": half_width.astype(np.float32),
    }


class FSQ(nn.Module):
    """FSQ quantizer over the last dimension (size len(levels)); no parameters, only constants.

    ``forward`` returns normalised codes (level / (L // 2)). In training mode the rounding passes
    gradients straight through (``b + (round(b) - b).detach()``); in eval mode it is a plain
    ``torch.round`` so the exported graph reads Add -> Tanh -> Mul -> Sub -> Round -> Div.
    """

    def __init__(self, levels: Sequence[int], eps: float = DEFAULT_EPS, bound_noise: float = 0.0) -> None:
        super().__init__()
        self.levels: list[int] = _check_levels(levels)
        self.eps = float(eps)
        if not (0.0 <= bound_noise < 0.5):
            raise ValueError(
                f"FSQ bound_noise must be in [0, 0.5) code units (got {bound_noise}); "
                f"0.5 would move every value across a rounding threshold"
            )
        # Training only: uniform noise U(-a, a) added to the bound before rounding, so the network
        # learns codes that survive a perturbation of that size (the INT8 error at the Round input).
        self.bound_noise = float(bound_noise)
        consts = fsq_numpy_constants(self.levels, self.eps)
        # Non-persistent: derivable from the config, so state_dict holds learned tensors only.
        for name, value in consts.items():
            self.register_buffer(name, torch.from_numpy(value.copy()), persistent=False)
        basis = np.cumprod([1] + self.levels[:-1], dtype=np.int64)
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)
        self.register_buffer("levels_t", torch.tensor(self.levels, dtype=torch.int64), persistent=False)

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of quantized dimensions (= the projection width)."""
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        """prod(L_i): the number of distinct codes."""
        return int(math.prod(self.levels))

    def level_range(self) -> tuple[Tensor, Tensor]:
        """(lowest, highest) integer level per dimension: -(L//2) and L - 1 - L//2."""
        low = -(self.levels_t // 2)
        return low, low + self.levels_t - 1

    # ---- the quantizer --------------------------------------------------------------------
    def _check_last_dim(self, z: Tensor) -> None:
        if _exporting():
            return
        if z.shape[-1] != self.dim:
            raise ValueError(
                f"FSQ with levels {self.levels} expects the last dimension to be "
                f"{self.dim} (one per level); got shape {tuple(z.shape)}"
            )

    def bound(self, z: Tensor) -> Tensor:
        """tanh(z + shift) * half_l - offset: continuous values in code units, before rounding."""
        self._check_last_dim(z)
        return torch.tanh(z + self.shift) * self.half_l - self.offset

    def _round(self, b: Tensor) -> Tensor:
        if self.training:
            if self.bound_noise > 0:
                b = b + (torch.rand_like(b) * 2.0 - 1.0) * self.bound_noise
            return b + (torch.round(b) - b).detach()  # straight-through estimator
        return torch.round(b)

    def levels_of(self, z: Tensor) -> Tensor:
        """Integer levels (float dtype), each in [-(L//2), L - 1 - L//2]."""
        return self._round(self.bound(z))

    def quantize_bound(self, b: Tensor) -> tuple[Tensor, Tensor]:
        """(levels, codes) from an already bounded tensor; lets callers reuse ``bound``."""
        lv = self._round(b)
        return lv, lv / self.half_width

    def forward(self, z: Tensor) -> Tensor:
        """Normalised codes level / (L // 2)."""
        return self.quantize_bound(self.bound(z))[1]

    # ---- codes <-> indices ----------------------------------------------------------------
    def codes_to_indices(self, levels: Tensor) -> Tensor:
        """Codebook index (int64) of integer *levels* (not normalised codes; use
        ``codes_to_levels`` first). index = sum_i (level_i + L_i // 2) * basis_i."""
        levels = torch.as_tensor(levels)
        self._check_last_dim(levels)
        if levels.is_floating_point():
            if not bool(torch.isfinite(levels).all()):
                n = int((~torch.isfinite(levels)).any(dim=-1).sum())
                raise ValueError(
                    f"FSQ levels hold NaN/inf in {n} code vector(s): the encoder produced non-finite "
                    f"values (NaN/inf weights in the checkpoint, or in the input windows); these "
                    f"are not codes"
                )
            rounded = torch.round(levels)
            if not torch.equal(rounded, levels):
                raise ValueError(
                    "codes_to_indices expects integer levels; got non-integer values. "
                    "Pass FSQ.levels_of(z), or convert normalised codes with "
                    "FSQ.codes_to_levels(codes)"
                )
            levels = rounded
        lv = levels.to(torch.int64)
        low, high = self.level_range()
        low, high = low.to(lv.device), high.to(lv.device)
        if bool(((lv < low) | (lv > high)).any()):
            raise ValueError(
                f"levels out of range for FSQ levels {self.levels}: each dimension must lie "
                f"in [{low.tolist()}, {high.tolist()}] (per dimension)"
            )
        return ((lv - low) * self.basis.to(lv.device)).sum(dim=-1)

    def indices_to_levels(self, indices: Tensor) -> Tensor:
        """Integer levels (int64, shape (..., dim)) of codebook indices."""
        idx = torch.as_tensor(indices)
        if idx.is_floating_point():
            raise ValueError(
                "indices must be an integer tensor (a float index may have been truncated); "
                "cast with torch.round(x).long() only if you know the values are exact"
            )
        idx = idx.to(torch.int64)
        if bool(((idx < 0) | (idx >= self.codebook_size)).any()):
            raise ValueError(f"indices must lie in [0, {self.codebook_size - 1}] for levels {self.levels}")
        basis = self.basis.to(idx.device)
        lvls = self.levels_t.to(idx.device)
        return (idx.unsqueeze(-1) // basis) % lvls - lvls // 2

    def codes_to_levels(self, codes: Tensor) -> Tensor:
        """Normalised codes back to integer levels (float dtype, rounded: no truncation)."""
        codes = torch.as_tensor(codes)
        self._check_last_dim(codes)
        return torch.round(codes * self.half_width.to(codes.device))

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Normalised float32 codes of codebook indices."""
        lv = self.indices_to_levels(indices).to(torch.float32)
        return lv / self.half_width.to(lv.device)

    def all_levels(self) -> Tensor:
        """Every code of the implicit codebook as integer levels, (codebook_size, dim) int64."""
        return self.indices_to_levels(torch.arange(self.codebook_size, dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"levels={self.levels}, eps={self.eps}, codebook_size={self.codebook_size}"


def boundary_margin(bound: Tensor) -> Tensor:
    """Distance of each bound value from the nearest rounding threshold (a half-integer), in [0, 0.5].

    ``0.5 - |b - round(b)|``: 0 on a threshold, 0.5 on a level. Differentiable almost everywhere
    (the rounded value is a constant for the gradient), so it can be trained on.
    """
    return 0.5 - (bound - torch.round(bound).detach()).abs()


def margin_penalty(bound: Tensor, margin: float) -> Tensor:
    """Mean hinge ``relu(margin - boundary_margin(b)) / margin`` over all entries: 0 once every value
    is at least ``margin`` away from a threshold, 1 when all sit on thresholds.

    Pulls pre-Round values toward their level centres, so the quantization noise of an INT8 NPU
    (which moves the bound by a few hundredths) no longer carries them across a threshold.
    """
    if not (0.0 < margin <= 0.5):
        raise ValueError(f"margin must be in (0, 0.5] code units (got {margin})")
    return torch.relu(margin - boundary_margin(bound)).mean() / margin


# ---- statistics ---------------------------------------------------------------------------
def _as_index_array(indices: ArrayLike) -> np.ndarray:
    arr = indices.detach().cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
    arr = arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"indices must be integers (got dtype {arr.dtype}); a float index may have "
            f"been truncated, round it explicitly first"
        )
    if arr.size and arr.min() < 0:
        raise ValueError(f"indices must be >= 0 (got minimum {arr.min()})")
    return arr.astype(np.int64)


def codebook_usage(indices: ArrayLike, size: int) -> float:
    """Share of the codebook in use: unique indices / codebook size (0..1)."""
    if size < 1:
        raise ValueError(f"codebook size must be >= 1 (got {size})")
    arr = _as_index_array(indices)
    if arr.size and arr.max() >= size:
        raise ValueError(f"index {arr.max()} is outside a codebook of size {size}")
    return float(np.unique(arr).size) / float(size)


def perplexity(indices: ArrayLike) -> float:
    """exp(entropy of the index frequencies), natural log: the effective number of codes used.

    Equals the number of distinct codes when they are used equally often; 1 when one code is used.
    """
    arr = _as_index_array(indices)
    if arr.size == 0:
        raise ValueError("perplexity needs at least one index (got an empty array)")
    _, counts = np.unique(arr, return_counts=True)
    p = counts.astype(np.float64) / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))

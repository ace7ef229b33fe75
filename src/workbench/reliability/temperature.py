"""Temperature scaling (Guo et al. 2017): one T > 0, probabilities softmax(z / T), T chosen to
minimise the NLL on held-out windows. Accuracy is unchanged (the arg-max does not move).

The search runs over log T with scipy's bounded Brent search (``minimize_scalar(method="bounded")``),
and is checked against a dense grid over the same interval: the NLL is convex in 1/T (it is a
log-sum-exp of a linear function of 1/T minus a linear term), hence unimodal in log T, so both must
agree; when they do not, or the optimum sits on the bound, the result says so.

Subjects differ: a temperature fitted on one group of subjects can make calibration worse on another.
:func:`cross_validate_temperature` measures that by leaving subjects out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from scipy.optimize import minimize_scalar
from tqdm import tqdm

from .metrics import (
    ReliabilityInputError,
    _as_2d_float,
    check_labels,
    expected_calibration_error,
    nll_from_logits,
    softmax,
)

DEFAULT_T_BOUNDS = (0.05, 20.0)


@dataclass
class TemperatureFit:
    """A fitted temperature with the evidence that the optimiser found the minimum."""

    temperature: float
    log_t: float
    nll_before: float            # mean NLL at T = 1 on the fitting windows
    nll_after: float             # mean NLL at the fitted T
    n: int
    bounds: tuple[float, float]
    grid_temperature: float      # best T on the grid
    grid_nll: float
    grid_size: int
    at_bound: bool               # optimum within 1e-3 (in log T) of a bound: widen the bounds
    method: str = "minimize_scalar(bounded) on log T, checked against a grid"
    backend: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "log_t": self.log_t, "nll_before": self.nll_before,
                "nll_after": self.nll_after, "n": self.n, "bounds": list(self.bounds),
                "grid_temperature": self.grid_temperature, "grid_nll": self.grid_nll,
                "grid_size": self.grid_size, "at_bound": self.at_bound, "method": self.method,
                "backend": self.backend, **self.extra}


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(logits / T)."""
    return softmax(logits, temperature)


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    bounds: tuple[float, float] = DEFAULT_T_BOUNDS, grid_size: int = 401,
                    xatol: float = 1e-6, backend: Optional[str] = None) -> TemperatureFit:
    """Fit T by minimising mean NLL over log T in log(bounds); see the module docstring."""
    z = _as_2d_float(logits, "logits")
    y = check_labels(labels, len(z), z.shape[1])
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (0 < lo < hi and np.isfinite(hi)):
        raise ReliabilityInputError(f"temperature bounds must satisfy 0 < low < high, got {bounds}")
    if grid_size < 3:
        raise ReliabilityInputError(f"grid_size must be >= 3, got {grid_size}")
    a, b = np.log(lo), np.log(hi)

    def objective(log_t: float) -> float:
        return nll_from_logits(z, y, float(np.exp(log_t)))

    grid = np.linspace(a, b, grid_size)
    grid_vals = np.array([objective(g) for g in grid])
    gi = int(np.argmin(grid_vals))
    res = minimize_scalar(objective, bounds=(a, b), method="bounded", options={"xatol": xatol})
    log_t, best = float(res.x), float(res.fun)
    method = "minimize_scalar(bounded) on log T, checked against a grid"
    step = (b - a) / (grid_size - 1)
    if grid_vals[gi] < best - 1e-9:
        # the search missed the basin the grid found: search again inside the grid's bracket
        lo_b, hi_b = max(a, grid[gi] - step), min(b, grid[gi] + step)
        res = minimize_scalar(objective, bounds=(lo_b, hi_b), method="bounded", options={"xatol": xatol})
        log_t, best = float(res.x), float(res.fun)
        method = "minimize_scalar(bounded) on log T, re-run inside the best grid bracket"
    at_bound = bool(log_t - a < 1e-3 or b - log_t < 1e-3)
    return TemperatureFit(float(np.exp(log_t)), log_t, objective(0.0), best, len(z), (lo, hi),
                          float(np.exp(grid[gi])), float(grid_vals[gi]), grid_size, at_bound, method,
                          backend)


@dataclass
class TemperatureCV:
    """Leave-subjects-out cross-validation of temperature scaling."""

    folds: list[dict[str, Any]]          # per held-out group: subjects, n, T, NLL/ECE before and after
    pooled_fit: TemperatureFit           # T fitted on all groups together
    heldout_nll_before: float            # pooled over held-out windows, T = 1
    heldout_nll_after: float             # pooled over held-out windows, each with its fold's T
    heldout_ece_before: float
    heldout_ece_after: float
    n_bins: int
    n: int
    backend: Optional[str] = None

    @property
    def temperatures(self) -> np.ndarray:
        return np.array([f["temperature"] for f in self.folds])

    def folds_hurt(self) -> list[dict[str, Any]]:
        """Folds where the temperature from the other subjects raised the held-out ECE."""
        return [f for f in self.folds if f["ece_after"] > f["ece_before"]]

    def to_dict(self) -> dict[str, Any]:
        t = self.temperatures
        return {"backend": self.backend, "n": self.n, "n_bins": self.n_bins, "binning": "equal_width",
                "folds": self.folds, "pooled_fit": self.pooled_fit.to_dict(),
                "heldout_nll_before": self.heldout_nll_before, "heldout_nll_after": self.heldout_nll_after,
                "heldout_ece_before": self.heldout_ece_before, "heldout_ece_after": self.heldout_ece_after,
                "temperature_min": float(t.min()), "temperature_max": float(t.max()),
                "folds_hurt": len(self.folds_hurt())}


def cross_validate_temperature(logits: np.ndarray, labels: np.ndarray, subject: np.ndarray,
                               n_folds: Optional[int] = None, n_bins: int = 15,
                               bounds: tuple[float, float] = DEFAULT_T_BOUNDS,
                               backend: Optional[str] = None, progress: bool = False) -> TemperatureCV:
    """Fit T on all but one group of subjects and evaluate on the held-out group, for every group.

    ``n_folds=None`` leaves one subject out at a time; otherwise subjects (in sorted order) are dealt
    round-robin into ``n_folds`` groups. Held-out figures are also pooled over all folds (each window
    scaled by the T of the fold that held it out), which estimates what temperature scaling does for
    subjects it has not seen. ECE here is 15-bin equal-width (n_bins) top-label ECE.
    """
    z = _as_2d_float(logits, "logits")
    y = check_labels(labels, len(z), z.shape[1])
    s = np.asarray(subject)
    if s.shape != (len(z),):
        raise ReliabilityInputError(f"subject must have shape ({len(z)},), got {s.shape}")
    uniq = np.unique(s)
    k = len(uniq) if n_folds is None else int(n_folds)
    if k < 2 or k > len(uniq):
        raise ReliabilityInputError(f"need 2 <= n_folds <= number of subjects ({len(uniq)}), got {k}; "
                                    f"cross-validation needs at least two subjects")
    fold_of_subject = {sub: i % k for i, sub in enumerate(uniq)}
    fold = np.array([fold_of_subject[v] for v in s])
    folds, scaled = [], np.zeros_like(z)
    for f in tqdm(range(k), desc=f"temperature CV ({backend or 'logits'})", disable=not progress,
                  leave=False):
        tr, te = fold != f, fold == f
        fit = fit_temperature(z[tr], y[tr], bounds=bounds, backend=backend)
        scaled[te] = z[te] / fit.temperature
        p0, p1 = softmax(z[te]), softmax(z[te], fit.temperature)
        folds.append({"fold": f, "subjects": [v.item() for v in uniq if fold_of_subject[v] == f],
                      "n": int(te.sum()), "temperature": fit.temperature, "at_bound": fit.at_bound,
                      "nll_before": nll_from_logits(z[te], y[te]),
                      "nll_after": nll_from_logits(z[te], y[te], fit.temperature),
                      "ece_before": expected_calibration_error(p0, y[te], n_bins).value,
                      "ece_after": expected_calibration_error(p1, y[te], n_bins).value})
    pooled = fit_temperature(z, y, bounds=bounds, backend=backend)
    return TemperatureCV(folds, pooled, nll_from_logits(z, y), nll_from_logits(scaled, y),
                         expected_calibration_error(softmax(z), y, n_bins).value,
                         expected_calibration_error(softmax(scaled), y, n_bins).value,
                         n_bins, len(z), backend)


__all__ = ["DEFAULT_T_BOUNDS", "TemperatureCV", "TemperatureFit", "apply_temperature",
           "cross_validate_temperature", "fit_temperature"]

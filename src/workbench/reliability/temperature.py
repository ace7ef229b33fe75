"""Temperature scaling (Guo et al. 2017): one T > 0, probabilities softmax(z / T), T chosen to
minimise the NLL on held-out windows. Accuracy is unchanged (the arg-max does not move).

The NLL is convex in beta = 1/T (a log-sum-exp of a linear function of beta minus a linear term), so
it has at most one minimum. That minimum EXISTS only when the data can identify T:

* separable windows: when every fitting window's true class has the largest logit (margin >= 0, e.g. a
  model that classifies the validation subjects perfectly), the NLL falls monotonically as T -> 0; the
  maximum-likelihood T is 0 and the NLL is numerically flat (0 in float64) below some T;
* uninformative logits: when the true-class logit is on average no larger than the mean logit, the
  NLL falls monotonically as T -> infinity.

Then T is NOT identifiable from these windows: :func:`fit_temperature` says so (``identifiable`` False
and a ``reason``) and keeps T = 1, the model's own probabilities -- the documented choice, because
windows without a single error cannot say how much sharper or softer the probabilities should be.
Otherwise the search runs over log T with scipy's bounded Brent search (``minimize_scalar(method=
"bounded")``), checked against a dense grid over the same interval (re-run inside the best grid
bracket if the grid found a lower value); ``at_bound`` says the minimum lies at or beyond a bound.

Subjects differ: a temperature fitted on one group of subjects can make calibration worse on another.
:func:`cross_validate_temperature` measures that by leaving subjects out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from scipy.optimize import minimize_scalar
from tqdm import tqdm

from .bootstrap import subject_folds
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
    nll_before: float  # mean NLL at T = 1 on the fitting windows
    nll_after: float  # mean NLL at the fitted T
    n: int
    bounds: tuple[float, float]
    grid_temperature: float  # best T on the grid
    grid_nll: float
    grid_size: int
    at_bound: bool  # optimum within 1e-3 (in log T) of a bound: widen the bounds
    method: str = "minimize_scalar(bounded) on log T, checked against a grid"
    backend: Optional[str] = None
    identifiable: bool = True  # False: the NLL has no minimum at a finite T > 0 (see module doc)
    reason: str = ""  # why T is not identifiable, and the choice made
    flat_range: tuple[float, float] = (float("nan"), float("nan"))  # grid T within flat_tol of the min
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "log_t": self.log_t,
            "nll_before": self.nll_before,
            "nll_after": self.nll_after,
            "n": self.n,
            "bounds": list(self.bounds),
            "grid_temperature": self.grid_temperature,
            "grid_nll": self.grid_nll,
            "grid_size": self.grid_size,
            "at_bound": self.at_bound,
            "method": self.method,
            "identifiable": self.identifiable,
            "reason": self.reason,
            "flat_range": list(self.flat_range),
            "backend": self.backend,
            **self.extra,
        }


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(logits / T)."""
    return softmax(logits, temperature)


def identifiability(logits: np.ndarray, labels: np.ndarray) -> tuple[bool, str]:
    """(identifiable, reason): whether the NLL of softmax(z / T) has a minimum at a finite T > 0.

    Exact criteria from the convexity of the NLL in beta = 1/T: if every window's true-class logit is
    a row maximum, the NLL never increases as T falls (minimum at T -> 0); if the true-class logit is
    on average at most the row mean, the slope at beta = 0 is >= 0 (minimum at T -> infinity).
    """
    z = _as_2d_float(logits, "logits")
    y = check_labels(labels, len(z), z.shape[1])
    true = z[np.arange(len(z)), y]
    others = z.copy()
    others[np.arange(len(z)), y] = -np.inf
    margin = true - others.max(axis=1)
    if np.all(margin >= 0):
        return False, (
            f"every one of the {len(z)} fitting windows has its true class at the top (smallest "
            f"margin {margin.min():.3g}), so the NLL keeps falling as T -> 0 and has no minimum: "
            f"the temperature is not identifiable from these windows; T = 1 kept (the model's own "
            f"probabilities)"
        )
    slope0 = float(np.mean(z.mean(axis=1) - true))
    if slope0 >= 0:
        return False, (
            f"the true-class logit is on average not above the mean logit (slope {slope0:.3g} >= 0 "
            f"at 1/T = 0), so the NLL keeps falling as T -> infinity: the logits carry no usable "
            f"signal on these windows and the temperature is not identifiable; T = 1 kept"
        )
    return True, ""


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    bounds: tuple[float, float] = DEFAULT_T_BOUNDS,
    grid_size: int = 401,
    xatol: float = 1e-6,
    backend: Optional[str] = None,
    flat_tol: float = 1e-6,
) -> TemperatureFit:
    """Fit T by minimising mean NLL over log T in log(bounds); see the module docstring.

    Never fails on well-formed logits: separable or uninformative windows give ``identifiable=False``
    with T = 1 and the reason. ``flat_range`` is the range of grid temperatures whose NLL lies within
    ``flat_tol`` nats of the grid minimum (how sharply the data pin T down).
    """
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
    flat = np.nonzero(grid_vals <= grid_vals[gi] + flat_tol)[0]
    flat_range = (float(np.exp(grid[flat.min()])), float(np.exp(grid[flat.max()])))
    nll_one = objective(0.0)
    ok, reason = identifiability(z, y)
    if not ok:
        t_keep = float(np.clip(1.0, lo, hi))
        return TemperatureFit(
            t_keep,
            float(np.log(t_keep)),
            nll_one,
            objective(float(np.log(t_keep))),
            len(z),
            (lo, hi),
            float(np.exp(grid[gi])),
            float(grid_vals[gi]),
            grid_size,
            False,
            "not identifiable: T = 1 kept",
            backend,
            False,
            reason,
            flat_range,
        )
    res = minimize_scalar(objective, bounds=(a, b), method="bounded", options={"xatol": xatol})
    log_t, best = float(res.x), float(res.fun)
    method = "minimize_scalar(bounded) on log T, checked against a grid"
    step = (b - a) / (grid_size - 1)
    if grid_vals[gi] < best - 1e-12:
        # the search stopped on a flatter stretch than the grid's best point: search inside its bracket
        lo_b, hi_b = max(a, grid[gi] - step), min(b, grid[gi] + step)
        res = minimize_scalar(objective, bounds=(lo_b, hi_b), method="bounded", options={"xatol": xatol})
        if float(res.fun) <= best:
            log_t, best = float(res.x), float(res.fun)
        method = "minimize_scalar(bounded) on log T, re-run inside the best grid bracket"
    at_bound = bool(log_t - a < 1e-3 or b - log_t < 1e-3)
    return TemperatureFit(
        float(np.exp(log_t)),
        log_t,
        nll_one,
        best,
        len(z),
        (lo, hi),
        float(np.exp(grid[gi])),
        float(grid_vals[gi]),
        grid_size,
        at_bound,
        method,
        backend,
        True,
        "",
        flat_range,
    )


@dataclass
class TemperatureCV:
    """Leave-subjects-out cross-validation of temperature scaling."""

    folds: list[dict[str, Any]]  # per held-out group: subjects, n, T, NLL/ECE before and after
    pooled_fit: TemperatureFit  # T fitted on all groups together
    heldout_nll_before: float  # pooled over held-out windows, T = 1
    heldout_nll_after: float  # pooled over held-out windows, each with its fold's T
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
        return {
            "backend": self.backend,
            "n": self.n,
            "n_bins": self.n_bins,
            "binning": "equal_width",
            "folds": self.folds,
            "pooled_fit": self.pooled_fit.to_dict(),
            "heldout_nll_before": self.heldout_nll_before,
            "heldout_nll_after": self.heldout_nll_after,
            "heldout_ece_before": self.heldout_ece_before,
            "heldout_ece_after": self.heldout_ece_after,
            "temperature_min": float(t.min()),
            "temperature_max": float(t.max()),
            "folds_hurt": len(self.folds_hurt()),
        }


def cross_validate_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    subject: np.ndarray,
    n_folds: Optional[int] = None,
    n_bins: int = 15,
    bounds: tuple[float, float] = DEFAULT_T_BOUNDS,
    backend: Optional[str] = None,
    progress: bool = False,
) -> TemperatureCV:
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
    fold, groups = subject_folds(s, n_folds)
    k = len(groups)
    folds, scaled = [], np.zeros_like(z)
    for f in tqdm(range(k), desc=f"temperature CV ({backend or 'logits'})", disable=not progress, leave=False):
        tr, te = fold != f, fold == f
        fit = fit_temperature(z[tr], y[tr], bounds=bounds, backend=backend)
        scaled[te] = z[te] / fit.temperature
        p0, p1 = softmax(z[te]), softmax(z[te], fit.temperature)
        folds.append(
            {
                "fold": f,
                "subjects": groups[f],
                "n": int(te.sum()),
                "temperature": fit.temperature,
                "at_bound": fit.at_bound,
                "identifiable": fit.identifiable,
                "nll_before": nll_from_logits(z[te], y[te]),
                "nll_after": nll_from_logits(z[te], y[te], fit.temperature),
                "ece_before": expected_calibration_error(p0, y[te], n_bins).value,
                "ece_after": expected_calibration_error(p1, y[te], n_bins).value,
            }
        )
    pooled = fit_temperature(z, y, bounds=bounds, backend=backend)
    return TemperatureCV(
        folds,
        pooled,
        nll_from_logits(z, y),
        nll_from_logits(scaled, y),
        expected_calibration_error(softmax(z), y, n_bins).value,
        expected_calibration_error(softmax(scaled), y, n_bins).value,
        n_bins,
        len(z),
        backend,
    )


__all__ = [
    "DEFAULT_T_BOUNDS",
    "TemperatureCV",
    "TemperatureFit",
    "apply_temperature",
    "cross_validate_temperature",
    "fit_temperature",
    "identifiability",
]

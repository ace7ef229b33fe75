"""Probability calibration maps on logits beyond one temperature, and their selection by leaving
SUBJECTS out.

A calibrator maps logits z (N, K) to z' = z W^T + b and reports softmax(z'):

* ``identity``: W = I, b = 0 (the model's own probabilities);
* ``temperature``: W = I / T (Guo et al. 2017; fitted by :func:`temperature.fit_temperature`, which
  keeps T = 1 when T is not identifiable);
* ``vector``: W = diag(w), b free -- vector scaling (Guo et al. 2017, Sec. 4.2), with an L2 penalty
  lam * (|w - 1|^2 + |b|^2) / K that shrinks it toward the identity;
* ``matrix``: W full, b free -- matrix scaling with the ODIR penalty of Kull et al. 2019 ("Beyond
  temperature scaling: obtaining well-calibrated multiclass probabilities with Dirichlet calibration",
  NeurIPS): lam * (sum of squared off-diagonal entries / (K (K - 1)) + |b|^2 / K); the diagonal is
  not penalised. (Kull et al. use two strengths, lambda and mu; one is used here.)

Every fit minimises mean NLL + penalty with L-BFGS (scipy) from W = I, b = 0, using the analytic
gradient. Vector and matrix scaling can move the arg-max (accuracy can change); temperature cannot.

Subjects differ, so a calibrator is judged by what it does to subjects it was not fitted on:
:func:`select_calibrator` fits every candidate leaving one subject (or group) out at a time, pools
the held-out probabilities, and picks the candidate with the lowest pooled held-out NLL (a proper
scoring rule; ECE is reported next to it). Only calibration/validation subjects enter; test
subjects never do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence

import numpy as np
from scipy.optimize import minimize

from .bootstrap import subject_folds
from .metrics import (
    ReliabilityInputError,
    _as_2d_float,
    check_labels,
    expected_calibration_error,
    log_softmax,
    softmax,
)
from .temperature import DEFAULT_T_BOUNDS, fit_temperature

Kind = Literal["identity", "temperature", "vector", "matrix"]
KINDS: tuple[str, ...] = ("identity", "temperature", "vector", "matrix")
DEFAULT_CANDIDATES: tuple[tuple[str, float], ...] = (
    ("identity", 0.0),
    ("temperature", 0.0),
    ("vector", 1e-3),
    ("vector", 1e-2),
    ("vector", 1e-1),
    ("matrix", 1e-3),
    ("matrix", 1e-2),
    ("matrix", 1e-1),
)


@dataclass
class LogitCalibrator:
    """z' = z W^T + b; probabilities softmax(z')."""

    kind: str
    lam: float
    weight: np.ndarray  # (K, K)
    bias: np.ndarray  # (K,)
    n: int  # windows it was fitted on
    nll_fit: float  # mean NLL on those windows after the map (without the penalty)
    converged: bool = True
    note: str = ""

    @property
    def name(self) -> str:
        return self.kind if self.kind in ("identity", "temperature") else f"{self.kind} (lam={self.lam:g})"

    def transform(self, logits: np.ndarray) -> np.ndarray:
        z = _as_2d_float(logits, "logits")
        if z.shape[1] != len(self.bias):
            raise ReliabilityInputError(
                f"calibrator was fitted for {len(self.bias)} classes, got logits with {z.shape[1]}"
            )
        return z @ self.weight.T + self.bias

    def probs(self, logits: np.ndarray) -> np.ndarray:
        return softmax(self.transform(logits))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "lam": self.lam,
            "n": self.n,
            "nll_fit": self.nll_fit,
            "converged": self.converged,
            "note": self.note,
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
        }


def _nll_and_grad(z: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean NLL of softmax(z W^T + b) and its gradients with respect to W and b."""
    zp = z @ w.T + b
    lp = log_softmax(zp)
    n = len(z)
    loss = float(-lp[np.arange(n), y].mean())
    g = np.exp(lp)
    g[np.arange(n), y] -= 1.0
    g /= n
    return loss, g.T @ z, g.sum(axis=0)


def fit_calibrator(
    logits: np.ndarray,
    labels: np.ndarray,
    kind: Kind = "vector",
    lam: float = 1e-2,
    max_iter: int = 500,
    t_bounds: tuple[float, float] = DEFAULT_T_BOUNDS,
) -> LogitCalibrator:
    """Fit one calibrator of ``kind`` by penalised maximum likelihood (see the module docstring)."""
    z = _as_2d_float(logits, "logits")
    y = check_labels(labels, len(z), z.shape[1])
    k = z.shape[1]
    if kind not in KINDS:
        raise ReliabilityInputError(f"kind must be one of {KINDS}, got {kind!r}")
    if not np.isfinite(lam) or lam < 0:
        raise ReliabilityInputError(f"lam must be a finite number >= 0, got {lam}")
    eye = np.eye(k)
    if kind == "identity":
        return LogitCalibrator("identity", 0.0, eye, np.zeros(k), len(z), _nll_and_grad(z, y, eye, np.zeros(k))[0])
    if kind == "temperature":
        fit = fit_temperature(z, y, bounds=t_bounds)
        return LogitCalibrator(
            "temperature", 0.0, eye / fit.temperature, np.zeros(k), len(z), fit.nll_after, True, fit.reason
        )
    off = ~np.eye(k, dtype=bool)

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if kind == "vector":
            return np.diag(theta[:k]), theta[k:]
        return theta[: k * k].reshape(k, k), theta[k * k :]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = unpack(theta)
        loss, gw, gb = _nll_and_grad(z, y, w, b)
        if kind == "vector":
            d = np.diag(w) - 1.0
            loss += lam * (d @ d + b @ b) / k
            return loss, np.concatenate([np.diag(gw) + 2 * lam * d / k, gb + 2 * lam * b / k])
        loss += lam * (np.sum(w[off] ** 2) / (k * (k - 1)) + b @ b / k)
        gw = gw + np.where(off, 2 * lam * w / (k * (k - 1)), 0.0)
        return loss, np.concatenate([gw.ravel(), gb + 2 * lam * b / k])

    theta0 = (
        np.concatenate([np.ones(k), np.zeros(k)]) if kind == "vector" else np.concatenate([eye.ravel(), np.zeros(k)])
    )
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    w, b = unpack(res.x)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
        raise ReliabilityInputError(f"{kind} scaling diverged (non-finite parameters); use a larger lam")
    return LogitCalibrator(
        kind,
        float(lam),
        w,
        b,
        len(z),
        _nll_and_grad(z, y, w, b)[0],
        bool(res.success),
        "" if res.success else f"L-BFGS stopped: {res.message}",
    )


@dataclass
class CalibratorSelection:
    """Leave-subjects-out comparison of calibrators on one pool of (non-test) subjects."""

    candidates: list[dict[str, Any]]  # per candidate: pooled held-out NLL/ECE, folds hurt, ...
    chosen: LogitCalibrator  # the winner, refitted on the whole pool
    heldout_probs: np.ndarray  # (N, K) the winner's held-out (cross-fitted) probabilities
    criterion: str
    n_bins: int
    folds: list[list[Any]]  # subjects held out together, per fold
    n: int
    backend: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "criterion": self.criterion,
            "n_bins": self.n_bins,
            "binning": "equal_width",
            "n": self.n,
            "folds": self.folds,
            "candidates": self.candidates,
            "chosen": self.chosen.to_dict(),
            **self.extra,
        }


def select_calibrator(
    logits: np.ndarray,
    labels: np.ndarray,
    subject: np.ndarray,
    candidates: Sequence[tuple[str, float]] = DEFAULT_CANDIDATES,
    criterion: Literal["nll", "ece"] = "nll",
    n_folds: Optional[int] = None,
    n_bins: int = 15,
    backend: Optional[str] = None,
) -> CalibratorSelection:
    """Fit every candidate leaving subjects out, choose by pooled held-out ``criterion``, refit on all.

    The held-out probabilities of the chosen candidate are returned too: each window's comes from a
    calibrator that never saw its subject, which is what a conformal calibration on the same pool needs.
    """
    z = _as_2d_float(logits, "logits")
    y = check_labels(labels, len(z), z.shape[1])
    if criterion not in ("nll", "ece"):
        raise ReliabilityInputError(f"criterion must be 'nll' or 'ece', got {criterion!r}")
    if not candidates:
        raise ReliabilityInputError("select_calibrator needs at least one candidate")
    fold, groups = subject_folds(subject, n_folds)
    rows, heldout = [], []
    for kind, lam in candidates:
        p = np.zeros_like(z)
        hurt = 0
        for f in range(len(groups)):
            tr, te = fold != f, fold == f
            cal = fit_calibrator(z[tr], y[tr], kind, lam)  # type: ignore[arg-type]
            p[te] = cal.probs(z[te])
            if (
                expected_calibration_error(p[te], y[te], n_bins).value
                > expected_calibration_error(softmax(z[te]), y[te], n_bins).value
            ):
                hurt += 1
        lp = np.log(np.maximum(p[np.arange(len(y)), y], 1e-300))
        rows.append(
            {
                "kind": kind,
                "lam": lam,
                "name": kind if kind in ("identity", "temperature") else f"{kind} (lam={lam:g})",
                "heldout_nll": float(-lp.mean()),
                "heldout_ece": expected_calibration_error(p, y, n_bins).value,
                "heldout_accuracy": float((p.argmax(1) == y).mean()),
                "folds_hurt": hurt,
                "n_folds": len(groups),
            }
        )
        heldout.append(p)
    key = "heldout_nll" if criterion == "nll" else "heldout_ece"
    best = int(np.argmin([r[key] for r in rows]))
    for i, r in enumerate(rows):
        r["chosen"] = i == best
    kind, lam = candidates[best]
    chosen = fit_calibrator(z, y, kind, lam)  # type: ignore[arg-type]
    return CalibratorSelection(rows, chosen, heldout[best], criterion, n_bins, groups, len(z), backend)


__all__ = [
    "CalibratorSelection",
    "DEFAULT_CANDIDATES",
    "KINDS",
    "LogitCalibrator",
    "fit_calibrator",
    "select_calibrator",
]

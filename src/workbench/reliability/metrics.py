"""Probability-calibration metrics on plain arrays (probabilities, labels).

Every calibration figure comes back as a :class:`CalibrationMetric` that carries the number of bins,
the binning scheme and the sample size with it, because an ECE without those is not comparable:
library defaults differ (torchmetrics 15 bins, netcal 10, MAPIE 50) and small n biases ECE upward.

Conventions
-----------
* Inputs are PROBABILITIES, shape (N, K), rows summing to one. Use :func:`softmax` on logits first.
  (torchmetrics silently treats any input whose values all lie in [0, 1] as probabilities, even when
  they are logits; here probabilities are checked instead.)
* Equal-width bins follow Guo et al. 2017, "On Calibration of Modern Neural Networks" (ICML):
  B_m = ((m-1)/M, m/M], ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|, MCE = max_m over non-empty bins.
  A confidence of exactly 0 goes into the first bin. torchmetrics uses [lo, hi) bins with an extra
  bin for a confidence of exactly 1.0; both agree whenever no confidence sits exactly on a bin edge.
* Equal-mass bins: the windows sorted by confidence are cut into M groups of (nearly) equal size
  (ties are split by a stable sort), as recommended by Kumar et al. 2019 and Nixon et al. 2019.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np

from workbench.errors import ReliabilityInputError

Binning = Literal["equal_width", "equal_mass"]
_BINNINGS = ("equal_width", "equal_mass")


# ------------------------------------------------------------------------------------------------
# input checks and conversions
# ------------------------------------------------------------------------------------------------
def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64 (numerically stable)."""
    z = _as_2d_float(logits, "logits")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ReliabilityInputError(f"temperature must be a finite number > 0, got {temperature}")
    z = z / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax of ``logits / temperature`` in float64 (no log(0) for confident rows)."""
    z = _as_2d_float(logits, "logits")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ReliabilityInputError(f"temperature must be a finite number > 0, got {temperature}")
    z = z / float(temperature)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _as_2d_float(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ReliabilityInputError(f"{name} must be 2-D (N windows, K classes), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] < 2:
        raise ReliabilityInputError(f"{name} needs at least one row and two classes, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ReliabilityInputError(f"{name} contains NaN or inf; check the backend that produced it")
    return arr


def check_probs(
    probs: np.ndarray, labels: Optional[np.ndarray] = None, atol: float = 1e-4
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Validate (N, K) probabilities (and optional (N,) integer labels in 0..K-1); return float64/int64.

    Raises a :class:`ReliabilityInputError` that says what to do, e.g. when logits are passed where
    probabilities are expected.
    """
    p = _as_2d_float(probs, "probs")
    if p.min() < -atol or p.max() > 1 + atol:
        raise ReliabilityInputError(
            f"probs must lie in [0, 1] (got min {p.min():.4g}, max {p.max():.4g}); these look like "
            f"logits: pass softmax(logits) (workbench.reliability.metrics.softmax)"
        )
    sums = p.sum(axis=1)
    bad = np.abs(sums - 1.0) > max(atol, 1e-6 * p.shape[1])
    if bad.any():
        raise ReliabilityInputError(
            f"probability rows must sum to 1; {int(bad.sum())} of {len(p)} rows do not (e.g. row "
            f"{int(np.argmax(bad))} sums to {sums[np.argmax(bad)]:.6f}); apply softmax to logits first"
        )
    p = np.clip(p, 0.0, 1.0)
    if labels is None:
        return p, None
    return p, check_labels(labels, len(p), p.shape[1])


def check_labels(labels: np.ndarray, n: int, k: int) -> np.ndarray:
    """Labels as int64 of length n with values in 0..k-1, or a clear error."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ReliabilityInputError(f"labels must have shape ({n},) to match the predictions, got {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ReliabilityInputError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= k):
        raise ReliabilityInputError(f"labels must lie in 0..{k - 1} (K={k} classes), got range {y.min()}..{y.max()}")
    return y


def _check_bins(n_bins: int, binning: str) -> None:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ReliabilityInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    if binning not in _BINNINGS:
        raise ReliabilityInputError(f"binning must be one of {_BINNINGS}, got {binning!r}")


# ------------------------------------------------------------------------------------------------
# binning
# ------------------------------------------------------------------------------------------------
@dataclass
class BinStats:
    """Per-bin statistics of (confidence, outcome) pairs. Empty bins have NaN accuracy/confidence."""

    binning: str
    lower: np.ndarray  # (M,) bin lower edge (equal mass: smallest confidence in the bin)
    upper: np.ndarray  # (M,) bin upper edge (equal mass: largest confidence in the bin)
    count: np.ndarray  # (M,) int
    accuracy: np.ndarray  # (M,) mean outcome in the bin
    confidence: np.ndarray  # (M,) mean confidence in the bin

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def gap(self) -> np.ndarray:
        """accuracy - confidence per bin (negative = over-confident)."""
        return self.accuracy - self.confidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "binning": self.binning,
            "n": self.n,
            "lower": _nan_to_none(self.lower),
            "upper": _nan_to_none(self.upper),
            "count": self.count.astype(int).tolist(),
            "accuracy": _nan_to_none(self.accuracy),
            "confidence": _nan_to_none(self.confidence),
        }


def _nan_to_none(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


def bin_indices(conf: np.ndarray, n_bins: int = 15, binning: Binning = "equal_width") -> np.ndarray:
    """Bin index (0..M-1) of each confidence. Equal width: ((m-1)/M, m/M]; equal mass: by rank."""
    _check_bins(n_bins, binning)
    c = np.asarray(conf, dtype=np.float64)
    if binning == "equal_width":
        idx = np.ceil(c * n_bins).astype(np.int64) - 1
        return np.clip(idx, 0, n_bins - 1)
    order = np.argsort(c, kind="stable")
    ranks = np.empty(len(c), dtype=np.int64)
    ranks[order] = np.arange(len(c))
    return (ranks * n_bins) // max(len(c), 1)


def bin_stats(conf: np.ndarray, outcome: np.ndarray, n_bins: int = 15, binning: Binning = "equal_width") -> BinStats:
    """Per-bin count, mean outcome and mean confidence for confidences in [0, 1]."""
    c = np.asarray(conf, dtype=np.float64)
    o = np.asarray(outcome, dtype=np.float64)
    if c.shape != o.shape or c.ndim != 1:
        raise ReliabilityInputError(
            f"confidences and outcomes must be 1-D of equal length, got {c.shape} and {o.shape}"
        )
    idx = bin_indices(c, n_bins, binning)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=o, minlength=n_bins) / count
        mean_conf = np.bincount(idx, weights=c, minlength=n_bins) / count
    if binning == "equal_width":
        lower = np.arange(n_bins) / n_bins
        upper = np.arange(1, n_bins + 1) / n_bins
    else:
        lower = np.full(n_bins, np.nan)
        upper = np.full(n_bins, np.nan)
        for m in np.nonzero(count)[0]:
            sel = c[idx == m]
            lower[m], upper[m] = sel.min(), sel.max()
    return BinStats(binning, lower, upper, count.astype(np.int64), acc, mean_conf)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass
class CalibrationMetric:
    """One calibration figure with what is needed to read it: bins, binning and n."""

    metric: str  # "ece", "mce", "classwise_ece", "debiased_ece", "nll", "brier"
    value: float
    n: int
    n_bins: Optional[int] = None
    binning: Optional[str] = None
    bins: Optional[BinStats] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self, with_bins: bool = True) -> dict[str, Any]:
        d = {
            "metric": self.metric,
            "value": float(self.value),
            "n": int(self.n),
            "n_bins": self.n_bins,
            "binning": self.binning,
        }
        if with_bins and self.bins is not None:
            d["bins"] = self.bins.to_dict()
        if self.extra:
            d.update(jsonable(self.extra))
        return d


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj


# ------------------------------------------------------------------------------------------------
# top-label metrics
# ------------------------------------------------------------------------------------------------
def top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, correct as float, predicted class) of the arg-max prediction."""
    p, y = check_probs(probs, labels)
    pred = p.argmax(axis=1)
    return p[np.arange(len(p)), pred], (pred == y).astype(np.float64), pred


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, binning: Binning = "equal_width"
) -> CalibrationMetric:
    """Top-label ECE (Guo et al. 2017): sum_m |B_m|/n * |acc(B_m) - conf(B_m)|."""
    _check_bins(n_bins, binning)
    conf, correct, _ = top_label(probs, labels)
    bins = bin_stats(conf, correct, n_bins, binning)
    return CalibrationMetric("ece", _weighted_abs_gap(bins), len(conf), n_bins, binning, bins)


def _weighted_abs_gap(bins: BinStats) -> float:
    ok = bins.count > 0
    return float(np.sum(bins.count[ok] * np.abs(bins.gap[ok])) / bins.count.sum())


def maximum_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, binning: Binning = "equal_width"
) -> CalibrationMetric:
    """MCE (Guo et al. 2017): the largest |acc - conf| over non-empty bins."""
    _check_bins(n_bins, binning)
    conf, correct, _ = top_label(probs, labels)
    bins = bin_stats(conf, correct, n_bins, binning)
    ok = bins.count > 0
    value = float(np.max(np.abs(bins.gap[ok])))
    worst = int(np.nonzero(ok)[0][np.argmax(np.abs(bins.gap[ok]))])
    return CalibrationMetric("mce", value, len(conf), n_bins, binning, bins, {"worst_bin": worst})


def classwise_ece(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, binning: Binning = "equal_width"
) -> CalibrationMetric:
    """Class-wise ECE (Kull et al. 2019; the 'marginal' CE of Kumar et al. 2019): for each class k the
    ECE of p_k against 1[y = k] over ALL windows, averaged over classes. Per-class values in extra."""
    _check_bins(n_bins, binning)
    p, y = check_probs(probs, labels)
    per_class = []
    for k in range(p.shape[1]):
        bins = bin_stats(p[:, k], (y == k).astype(np.float64), n_bins, binning)
        per_class.append(_weighted_abs_gap(bins))
    return CalibrationMetric(
        "classwise_ece", float(np.mean(per_class)), len(p), n_bins, binning, None, {"per_class": per_class}
    )


def debiased_ece(
    probs: np.ndarray,
    labels: np.ndarray,
    n_bins: int = 15,
    binning: Binning = "equal_mass",
    norm: Literal["l1", "l2"] = "l1",
    resamples: int = 1000,
    seed: int = 0,
) -> CalibrationMetric:
    """Debiased top-label calibration error (Kumar, Liang & Ma 2019, "Verified Uncertainty
    Calibration", NeurIPS, Sec. 5).

    The plug-in binned estimate is biased upward: even a perfectly calibrated model shows
    |acc(B) - conf(B)| > 0 in each bin from sampling noise alone, more so with small bins.

    * ``norm="l2"``: the unbiased estimator of the squared binned L2 error,
      sum_b (n_b/n) * [ (acc_b - conf_b)^2 - acc_b (1 - acc_b) / (n_b - 1) ],
      whose subtracted term is the unbiased variance estimate of acc_b; reported as
      sqrt(max(estimate, 0)) (an L2 calibration error, comparable to torchmetrics norm="l2").
    * ``norm="l1"`` (default, same scale as the ECE): the bias of the plug-in L1 ECE is estimated by
      resampling each bin's accuracy from N(acc_b, acc_b (1 - acc_b) / n_b) ``resamples`` times and
      recomputing the ECE; debiased = plug-in - (mean resampled - plug-in) = 2 plug-in - mean resampled.

    Bins with fewer than 2 windows contribute no correction (there is no variance estimate).
    Equal-mass binning is the default because it keeps every bin populated, as Kumar et al. advise.
    The value may be slightly negative for a well-calibrated model: it is an estimate, not a norm.
    """
    _check_bins(n_bins, binning)
    if norm not in ("l1", "l2"):
        raise ReliabilityInputError(f"norm must be 'l1' or 'l2', got {norm!r}")
    if resamples < 1:
        raise ReliabilityInputError(f"resamples must be >= 1, got {resamples}")
    conf, correct, _ = top_label(probs, labels)
    bins = bin_stats(conf, correct, n_bins, binning)
    ok = bins.count > 0
    w = bins.count[ok] / bins.count.sum()
    acc, cf, cnt = bins.accuracy[ok], bins.confidence[ok], bins.count[ok].astype(np.float64)
    if norm == "l2":
        plugin = float(np.sum(w * (acc - cf) ** 2))
        var = np.where(cnt > 1, acc * (1 - acc) / np.maximum(cnt - 1, 1), 0.0)
        est = float(np.sum(w * ((acc - cf) ** 2 - var)))
        value = float(np.sqrt(max(est, 0.0)))
        extra = {"norm": "l2", "plugin": float(np.sqrt(plugin)), "squared_estimate": est}
    else:
        plugin = float(np.sum(w * np.abs(acc - cf)))
        rng = np.random.default_rng(seed)
        sd = np.where(cnt > 1, np.sqrt(acc * (1 - acc) / cnt), 0.0)
        draws = rng.normal(acc, sd, size=(resamples, len(acc)))
        resampled = np.abs(draws - cf) @ w
        value = float(2 * plugin - resampled.mean())
        extra = {"norm": "l1", "plugin": plugin, "resamples": resamples, "seed": seed}
    return CalibrationMetric("debiased_ece", value, len(conf), n_bins, binning, bins, extra)


# ------------------------------------------------------------------------------------------------
# proper scoring rules and accuracy
# ------------------------------------------------------------------------------------------------
def nll(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> CalibrationMetric:
    """Mean negative log-likelihood of the true class (nats). Probabilities are floored at eps."""
    p, y = check_probs(probs, labels)
    value = float(-np.mean(np.log(np.maximum(p[np.arange(len(p)), y], eps))))
    return CalibrationMetric("nll", value, len(p))


def nll_from_logits(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of softmax(logits / T) computed via log-softmax (exact even for saturated rows)."""
    lp = log_softmax(logits, temperature)
    y = check_labels(labels, len(lp), lp.shape[1])
    return float(-np.mean(lp[np.arange(len(lp)), y]))


def brier(probs: np.ndarray, labels: np.ndarray) -> CalibrationMetric:
    """Multi-class Brier score (Brier 1950): mean over windows of sum_k (p_k - 1[y = k])^2, in [0, 2]."""
    p, y = check_probs(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), y] = 1.0
    return CalibrationMetric("brier", float(np.mean(np.sum((p - onehot) ** 2, axis=1))), len(p))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    _, correct, _ = top_label(probs, labels)
    return float(correct.mean())


def all_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, seed: int = 0) -> dict[str, CalibrationMetric]:
    """Every figure this module computes, keyed by a stable name (used for tables and JSON)."""
    p, y = check_probs(probs, labels)
    return {
        "accuracy": CalibrationMetric("accuracy", accuracy(p, y), len(p)),
        "ece": expected_calibration_error(p, y, n_bins, "equal_width"),
        "ece_equal_mass": expected_calibration_error(p, y, n_bins, "equal_mass"),
        "mce": maximum_calibration_error(p, y, n_bins, "equal_width"),
        "classwise_ece": classwise_ece(p, y, n_bins, "equal_width"),
        "debiased_ece": debiased_ece(p, y, n_bins, "equal_mass", "l1", seed=seed),
        "debiased_ece_l2": debiased_ece(p, y, n_bins, "equal_mass", "l2"),
        "nll": nll(p, y),
        "brier": brier(p, y),
    }


__all__ = [
    "Binning",
    "BinStats",
    "CalibrationMetric",
    "ReliabilityInputError",
    "accuracy",
    "all_metrics",
    "bin_indices",
    "bin_stats",
    "brier",
    "check_labels",
    "check_probs",
    "classwise_ece",
    "debiased_ece",
    "expected_calibration_error",
    "log_softmax",
    "maximum_calibration_error",
    "nll",
    "nll_from_logits",
    "softmax",
    "top_label",
]

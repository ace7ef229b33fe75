"""Confidence intervals by resampling SUBJECTS, not windows.

Windows of one subject are correlated (same body, same sensor placement, 50% overlapping windows), so
resampling windows pretends there are far more independent observations than there are and gives
intervals that are too narrow. The cluster bootstrap (Davison & Hinkley 1997, Sec. 3.8) draws subjects
with replacement and takes all windows of each drawn subject; a subject drawn twice counts twice.
Intervals are percentile intervals (Efron & Tibshirani 1993, Ch. 13).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
from tqdm import tqdm

from .metrics import ReliabilityInputError

Statistic = Callable[[np.ndarray], Union[float, dict[str, float]]]


@dataclass
class BootstrapCI:
    """A point estimate with its subject-bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int
    n_subjects: int
    n: int
    unit: str = "subject"
    method: str = "percentile"

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": float(self.estimate),
            "low": float(self.low),
            "high": float(self.high),
            "level": self.level,
            "n_resamples": self.n_resamples,
            "n_subjects": self.n_subjects,
            "n": self.n,
            "resampling_unit": self.unit,
            "method": self.method,
        }

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}]"


def subject_groups(subject: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unique subjects and, for each, the indices of its windows."""
    s = np.asarray(subject)
    if s.ndim != 1 or len(s) == 0:
        raise ReliabilityInputError(f"subject must be a non-empty 1-D array (one id per window), got shape {s.shape}")
    uniq, inverse = np.unique(s, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
    return uniq, np.split(order, bounds)


def subject_folds(subject: np.ndarray, n_folds: Optional[int] = None) -> tuple[np.ndarray, list[list[Any]]]:
    """Fold id per window for leaving subjects out: one subject per fold (``n_folds=None``) or the
    subjects, in sorted order, dealt round-robin into ``n_folds`` groups; and the subjects of each fold."""
    s = np.asarray(subject)
    uniq = np.unique(s)
    k = len(uniq) if n_folds is None else int(n_folds)
    if k < 2 or k > len(uniq):
        raise ReliabilityInputError(
            f"need 2 <= folds <= number of subjects ({len(uniq)}), got {k}; leaving "
            f"subjects out needs at least two subjects"
        )
    fold_of = {v: i % k for i, v in enumerate(uniq)}
    return np.array([fold_of[v] for v in s]), [[v.item() for v in uniq if fold_of[v] == f] for f in range(k)]


def resample_subject_indices(groups: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One cluster-bootstrap draw: (window indices, drawn subject positions). Draws len(groups)
    subjects with replacement and concatenates all windows of each drawn subject."""
    picks = rng.integers(0, len(groups), size=len(groups))
    return np.concatenate([groups[i] for i in picks]), picks


def subject_bootstrap(
    statistic: Statistic,
    subject: np.ndarray,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> Union[BootstrapCI, dict[str, BootstrapCI]]:
    """Percentile CI of ``statistic(idx)`` where ``idx`` indexes the windows (and may repeat).

    ``statistic`` receives window indices and returns a float, or a dict of floats (one bootstrap
    for several figures at once). The point estimate is the statistic on all windows. With fewer
    than 2 subjects no interval can be formed and an error says so.
    """
    if n_resamples < 1:
        raise ReliabilityInputError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < level < 1:
        raise ReliabilityInputError(f"level must lie in (0, 1), got {level}")
    uniq, groups = subject_groups(subject)
    if len(uniq) < 2:
        raise ReliabilityInputError(
            f"a subject bootstrap needs at least 2 subjects, got {len(uniq)} "
            f"({uniq.tolist()}); report the point estimate without an interval"
        )
    n = len(np.asarray(subject))
    full = statistic(np.arange(n))
    rng = np.random.default_rng(seed)
    draws: list[Any] = []
    for _ in tqdm(range(n_resamples), desc="subject bootstrap", disable=not progress, leave=False):
        idx, _picks = resample_subject_indices(groups, rng)
        draws.append(statistic(idx))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2

    def _ci(point: float, values: np.ndarray) -> BootstrapCI:
        values = values[np.isfinite(values)]
        low, high = np.quantile(values, [lo_q, hi_q]) if len(values) else (np.nan, np.nan)
        return BootstrapCI(float(point), float(low), float(high), level, n_resamples, len(uniq), n)

    if isinstance(full, dict):
        return {k: _ci(full[k], np.array([d[k] for d in draws], dtype=float)) for k in full}
    return _ci(float(full), np.array(draws, dtype=float))


__all__ = ["BootstrapCI", "resample_subject_indices", "subject_bootstrap", "subject_folds", "subject_groups"]

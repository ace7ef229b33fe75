"""Split conformal prediction sets (Vovk et al. 2005; Papadopoulos et al. 2002; the presentation of
Angelopoulos & Bates 2021, "A Gentle Introduction to Conformal Prediction", arXiv 2107.07511).

Calibrate on n held-out windows with non-conformity scores s_i = S(x_i, y_i). The threshold is the
EXACT order statistic q = s_(k), k = ceil((n + 1)(1 - alpha)), and q = +inf when k > n (then every set
is the full label set: there are too few calibration points for that alpha). The prediction set is
C(x) = {y : S(x, y) <= q}. If calibration and test windows are exchangeable,
P(Y in C(X)) >= 1 - alpha, and coverage given the calibration set is Beta(k, n + 1 - k) distributed
(Vovk 2012; Angelopoulos & Bates Sec. 3.2), so it is also <= 1 - alpha + 1/(n + 1) on average when
scores have no ties. The common idiom ``np.quantile(scores, 1 - alpha, method="higher")`` picks rank
ceil((n - 1)(1 - alpha)) + 1 instead, which is one rank too low for most n and never gives inf.

Scores
------
* LAC (least ambiguous set-valued classifier, Sadinle, Lei & Wasserman 2019): S(x, y) = 1 - p_y.
* APS (adaptive prediction sets, Romano, Sesia & Candes 2020): S(x, y) = total probability of the
  classes ranked above y plus p_y itself (classes sorted by decreasing probability, ties broken by
  class index). This is the DETERMINISTIC, non-randomised APS: its sets are slightly conservative.
  The randomised variant (``randomized=True``) replaces "+ p_y" by "+ U * p_y", U ~ Uniform(0, 1),
  and gives exact coverage at the price of random sets. Sets are exactly {y : S(x, y) <= q}, so a
  deterministic-APS set is EMPTY when the top class alone carries more mass than q (a very confident
  window), unlike the variant that always adds the class crossing q (Angelopoulos & Bates Sec. 2.1),
  which never returns an empty set but over-covers.

Variants: marginal (one q for all classes) and class-conditional / Mondrian (one q per class from
the calibration windows of that class; Vovk et al. 2005, Ch. 4.5), which bounds coverage per class.

Windows from one subject are correlated, so exchangeability holds at best between subjects; read
marginal coverage with the per-subject coverage next to it.

New subjects: subject-level split conformal
-------------------------------------------
Split conformal above treats windows as exchangeable, which windows of people it has never seen are
not. :func:`calibrate_by_subject` works one level up, with SUBJECTS as the exchangeable units (the
two-layer view of Dunn, Wasserman & Ramdas 2023, "Distribution-free prediction sets for two-layer
hierarchical models", JASA; arXiv 1809.07441): for each of the K calibration subjects take its own
empirical (1 - alpha)-quantile Q_s, the ceil(n_s (1 - alpha))-th smallest of its window scores, and
use q = the k-th smallest Q_s with k = ceil((K + 1)(1 - delta)) (q = inf when k > K). If the K
calibration subjects and a new subject are exchangeable, P(Q_new <= q) >= 1 - delta, and
Q_new <= q means that at least a share 1 - alpha of the new subject's windows are covered. So: for
a new subject, with probability >= 1 - delta, its own coverage is >= 1 - alpha -- a per-subject
statement that needs no exchangeability between windows, paid for with larger sets. It needs
K >= (1 - delta) / delta subjects for a finite q (4 for delta = 0.2, 9 for delta = 0.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Optional

import numpy as np

from .metrics import ReliabilityInputError, check_labels, check_probs

Score = Literal["lac", "aps"]


# ------------------------------------------------------------------------------------------------
# quantile
# ------------------------------------------------------------------------------------------------
def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0 < a < 1:
        raise ReliabilityInputError(f"alpha must lie in (0, 1) (e.g. 0.1 for 90% coverage), got {alpha}")
    return a


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)) computed in exact rational arithmetic (alpha as the shortest
    fraction within 1e-12), so that e.g. n = 9, alpha = 0.1 gives k = 9, not 10 from a rounding error."""
    a = _check_alpha(alpha)
    if n < 0:
        raise ReliabilityInputError(f"n must be >= 0, got {n}")
    frac = Fraction(a).limit_denominator(10**12)
    return math.ceil((n + 1) * (1 - frac))


def conformal_quantile(scores: np.ndarray, alpha: float) -> tuple[float, int, int]:
    """(q, k, n): q is the k-th smallest score, k = ceil((n + 1)(1 - alpha)); q = inf when k > n."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not np.all(np.isfinite(s)):
        raise ReliabilityInputError("conformal scores contain NaN or inf; check the probabilities")
    n = len(s)
    k = conformal_rank(n, alpha)
    if k > n:
        return float("inf"), k, n
    return float(np.partition(s, k - 1)[k - 1]), k, n


def coverage_interval(n: int, alpha: float, level: float = 0.95, n_test: Optional[int] = None) -> dict[str, Any]:
    """Expected spread of split-conformal coverage for n calibration points.

    Coverage given the calibration set is Beta(k, n + 1 - k) (continuous scores, no ties); its mean is
    k / (n + 1). The empirical coverage on n_test exchangeable test points is then beta-binomial
    (n_test, k, n + 1 - k) / n_test: the Beta spread plus binomial sampling spread. Central intervals.
    When k > n, coverage is 1 (sets are full) and the interval is [1, 1].
    """
    from scipy import stats  # here, not at import: the Pi service uses this module without scipy

    k = conformal_rank(n, alpha)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out: dict[str, Any] = {
        "n": int(n),
        "k": int(k),
        "alpha": float(alpha),
        "level": level,
        "distribution": f"Beta({k}, {n + 1 - k})",
    }
    if k > n:
        out.update(mean=1.0, low=1.0, high=1.0, distribution="degenerate at 1 (k > n, q = inf)")
        if n_test:
            out.update(n_test=int(n_test), test_low=1.0, test_high=1.0)
        return out
    b = stats.beta(k, n + 1 - k)
    out.update(mean=k / (n + 1), low=float(b.ppf(lo_q)), high=float(b.ppf(hi_q)))
    if n_test:
        bb = stats.betabinom(int(n_test), k, n + 1 - k)
        out.update(
            n_test=int(n_test),
            test_low=float(bb.ppf(lo_q)) / n_test,
            test_high=float(bb.ppf(hi_q)) / n_test,
            test_distribution=f"BetaBinomial({n_test}, {k}, {n + 1 - k}) / {n_test}",
        )
    return out


# ------------------------------------------------------------------------------------------------
# scores
# ------------------------------------------------------------------------------------------------
def lac_scores(probs: np.ndarray) -> np.ndarray:
    """(N, K) LAC scores 1 - p_y for every candidate label y."""
    p, _ = check_probs(probs)
    return 1.0 - p


def aps_scores(probs: np.ndarray, randomized: bool = False, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """(N, K) APS scores for every candidate label: mass of classes ranked above y, plus p_y
    (deterministic) or U * p_y (randomised, U ~ Uniform(0, 1) per window, needs ``rng``)."""
    p, _ = check_probs(probs)
    n, k = p.shape
    order = np.argsort(-p, axis=1, kind="stable")  # ties: lower class index ranks first
    sorted_p = np.take_along_axis(p, order, axis=1)
    above = np.cumsum(sorted_p, axis=1) - sorted_p  # mass strictly above each rank
    if randomized:
        if rng is None:
            raise ReliabilityInputError("randomized APS needs rng=np.random.default_rng(seed)")
        u = rng.uniform(size=(n, 1))
        sorted_scores = above + u * sorted_p
    else:
        sorted_scores = above + sorted_p
    scores = np.empty_like(p)
    np.put_along_axis(scores, order, sorted_scores, axis=1)
    return np.minimum(scores, 1.0)  # cumulative float sums can exceed 1 by an ulp


def score_matrix(
    probs: np.ndarray, score: Score, randomized: bool = False, rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    if score == "lac":
        return lac_scores(probs)
    if score == "aps":
        return aps_scores(probs, randomized=randomized, rng=rng)
    raise ReliabilityInputError(f"score must be 'lac' or 'aps', got {score!r}")


# ------------------------------------------------------------------------------------------------
# calibrate / predict
# ------------------------------------------------------------------------------------------------
@dataclass
class ConformalPredictor:
    """Thresholds from one calibration set. ``thresholds[c]`` applies to candidate label c."""

    score: str
    alpha: float
    mondrian: bool
    randomized: bool
    thresholds: np.ndarray  # (K,) q per class (all equal when marginal)
    n: int  # calibration windows
    k: int  # rank used (marginal); per class in class_info
    class_info: list[dict[str, Any]] = field(default_factory=list)
    backend: Optional[str] = None  # the backend whose probabilities calibrated it
    delta: Optional[float] = None  # subject-level calibration: allowed share of new subjects below 1 - alpha
    subject_info: list[dict[str, Any]] = field(default_factory=list)

    @property
    def subject_level(self) -> bool:
        return self.delta is not None

    @property
    def name(self) -> str:
        kind = " subject-level" if self.subject_level else (" Mondrian" if self.mondrian else " marginal")
        return f"{self.score.upper()}{'-rand' if self.randomized else ''}{kind}"

    def predict_sets(self, probs: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """(N, K) boolean membership matrix of the prediction sets."""
        p, _ = check_probs(probs)
        if p.shape[1] != len(self.thresholds):
            raise ReliabilityInputError(
                f"predictor was calibrated for {len(self.thresholds)} classes, got probabilities for {p.shape[1]}"
            )
        s = score_matrix(p, self.score, self.randomized, rng)  # type: ignore[arg-type]
        return s <= self.thresholds[None, :]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "score": self.score,
            "alpha": self.alpha,
            "mondrian": self.mondrian,
            "randomized": self.randomized,
            "n": self.n,
            "k": self.k,
            "backend": self.backend,
            "thresholds": [None if not np.isfinite(t) else float(t) for t in self.thresholds],
            "quantile": (
                "k-th smallest per-subject (1-alpha)-quantile, k = ceil((K+1)(1-delta)); inf when k > K"
                if self.subject_level
                else "exact order statistic k = ceil((n+1)(1-alpha)); inf when k > n"
            ),
            "delta": self.delta,
            "subject_info": self.subject_info,
            "class_info": self.class_info,
        }


def calibrate(
    probs: np.ndarray,
    labels: np.ndarray,
    alpha: float,
    score: Score = "lac",
    mondrian: bool = False,
    randomized: bool = False,
    rng: Optional[np.random.Generator] = None,
    backend: Optional[str] = None,
) -> ConformalPredictor:
    """Split-conformal thresholds from calibration probabilities and labels (see module docstring)."""
    a = _check_alpha(alpha)
    p, y = check_probs(probs, labels)
    s = score_matrix(p, score, randomized, rng)[np.arange(len(p)), y]
    n_classes = p.shape[1]
    q, k, n = conformal_quantile(s, a)
    info: list[dict[str, Any]] = []
    if mondrian:
        thr = np.empty(n_classes)
        for c in range(n_classes):
            qc, kc, nc = conformal_quantile(s[y == c], a)
            thr[c] = qc
            info.append({"class": c, "n": nc, "k": kc, "q": None if not np.isfinite(qc) else qc})
    else:
        thr = np.full(n_classes, q)
    return ConformalPredictor(score, a, mondrian, randomized, thr, n, k, info, backend)


def subject_level_quantile(
    scores: np.ndarray, subject: np.ndarray, alpha: float, delta: float
) -> tuple[float, int, list[dict[str, Any]]]:
    """(q, k, per-subject rows): q is the k-th smallest per-subject empirical (1 - alpha)-quantile,
    k = ceil((K + 1)(1 - delta)) over K subjects; inf when k > K (see the module docstring)."""
    a = _check_alpha(alpha)
    d = float(delta)
    if not 0 < d < 1:
        raise ReliabilityInputError(
            f"delta must lie in (0, 1) (the allowed share of new subjects below 1 - alpha, e.g. 0.2), got {delta}"
        )
    s = np.asarray(scores, dtype=np.float64).ravel()
    sub = np.asarray(subject)
    if sub.shape != s.shape:
        raise ReliabilityInputError(f"subject must have one id per score ({s.shape}), got {sub.shape}")
    if not np.all(np.isfinite(s)):
        raise ReliabilityInputError("conformal scores contain NaN or inf; check the probabilities")
    rows = []
    for v in np.unique(sub):
        own = np.sort(s[sub == v])
        r = math.ceil(len(own) * (1 - Fraction(a).limit_denominator(10**12)))
        rows.append({"subject": v.item(), "n": int(len(own)), "rank": int(r), "q": float(own[r - 1])})
    k = conformal_rank(len(rows), d)
    if k > len(rows):
        return float("inf"), k, rows
    return float(np.sort([r["q"] for r in rows])[k - 1]), k, rows


def calibrate_by_subject(
    probs: np.ndarray,
    labels: np.ndarray,
    subject: np.ndarray,
    alpha: float,
    delta: float = 0.2,
    score: Score = "lac",
    backend: Optional[str] = None,
) -> ConformalPredictor:
    """Subject-level split conformal (module docstring): meant for subjects the model has never seen."""
    p, y = check_probs(probs, labels)
    s = score_matrix(p, score)[np.arange(len(p)), y]
    q, k, rows = subject_level_quantile(s, subject, alpha, delta)
    return ConformalPredictor(
        score, float(alpha), False, False, np.full(p.shape[1], q), len(p), k, [], backend, float(delta), rows
    )


def subject_coverage_summary(covered: np.ndarray, subject: np.ndarray, target: float) -> dict[str, Any]:
    """Distribution of per-subject coverage: quartiles, the worst subject, the share of subjects (and
    of windows) whose subject is below ``target``."""
    c = np.asarray(covered, dtype=float)
    sub = np.asarray(subject)
    if sub.shape != c.shape or c.ndim != 1 or len(c) == 0:
        raise ReliabilityInputError(
            f"covered and subject must be 1-D of equal non-zero length, got {c.shape} and {sub.shape}"
        )
    ids = np.unique(sub)
    cov = np.array([c[sub == v].mean() for v in ids])
    n = np.array([(sub == v).sum() for v in ids])
    worst = int(np.argmin(cov))
    under = cov < target
    return {
        "n_subjects": int(len(ids)),
        "target": float(target),
        "min": float(cov.min()),
        "q25": float(np.quantile(cov, 0.25)),
        "median": float(np.median(cov)),
        "q75": float(np.quantile(cov, 0.75)),
        "max": float(cov.max()),
        "worst_subject": ids[worst].item(),
        "worst_coverage": float(cov[worst]),
        "subjects_under_target": int(under.sum()),
        "share_subjects_under_target": float(under.mean()),
        "share_windows_in_subjects_under_target": float(n[under].sum() / n.sum()),
    }


def set_metrics(
    sets: np.ndarray, labels: np.ndarray, subject: Optional[np.ndarray] = None, label_names: Optional[list[str]] = None
) -> dict[str, Any]:
    """Coverage, mean set size, set-size histogram (index = size 0..K), empty-set rate, per-class and
    (when ``subject`` is given) per-subject coverage, each with its n."""
    m = np.asarray(sets, dtype=bool)
    if m.ndim != 2:
        raise ReliabilityInputError(f"sets must be an (N, K) boolean matrix, got shape {m.shape}")
    y = check_labels(labels, len(m), m.shape[1])
    covered = m[np.arange(len(m)), y]
    size = m.sum(axis=1)
    names = label_names or [str(c) for c in range(m.shape[1])]
    per_class = []
    for c in range(m.shape[1]):
        sel = y == c
        per_class.append(
            {
                "class": c,
                "label": names[c],
                "n": int(sel.sum()),
                "coverage": float(covered[sel].mean()) if sel.any() else None,
                "mean_set_size": float(size[sel].mean()) if sel.any() else None,
            }
        )
    out: dict[str, Any] = {
        "n": int(len(m)),
        "coverage": float(covered.mean()),
        "mean_set_size": float(size.mean()),
        "set_size_histogram": np.bincount(size, minlength=m.shape[1] + 1).astype(int).tolist(),
        "empty_set_rate": float((size == 0).mean()),
        "singleton_rate": float((size == 1).mean()),
        "full_set_rate": float((size == m.shape[1]).mean()),
        "per_class": per_class,
    }
    if subject is not None:
        sub = np.asarray(subject)
        if sub.shape != (len(m),):
            raise ReliabilityInputError(f"subject must have shape ({len(m)},), got {sub.shape}")
        out["per_subject"] = [
            {"subject": v.item(), "n": int((sub == v).sum()), "coverage": float(covered[sub == v].mean())}
            for v in np.unique(sub)
        ]
    return out


__all__ = [
    "ConformalPredictor",
    "Score",
    "aps_scores",
    "calibrate",
    "calibrate_by_subject",
    "conformal_quantile",
    "conformal_rank",
    "coverage_interval",
    "lac_scores",
    "score_matrix",
    "set_metrics",
    "subject_coverage_summary",
    "subject_level_quantile",
]

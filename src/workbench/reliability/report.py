"""Stage 08 analysis per backend and the report card against the project's targets.

Everything here works on arrays (:class:`SplitLogits`: logits, labels, subjects of one split from one
backend), so it can be tested on synthetic data and does not care how the logits were produced.

Protocol (all splits are disjoint groups of SUBJECTS, made by stage 01):
* temperature T fitted on the validation subjects, per backend;
* split conformal thresholds calibrated on the conformal-calibration subjects, on probabilities
  softmax(z / T) with that backend's validation T (T does not use the conformal subjects, so the
  calibration and test windows stay exchangeable as far as subjects are);
* every reported figure measured on the test subjects, with subject-bootstrap intervals;
* leave-subjects-out cross-validation of T over validation + conformal subjects, for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from . import conformal as conf
from .bootstrap import BootstrapCI, subject_bootstrap
from .metrics import (
    CalibrationMetric,
    ReliabilityInputError,
    _as_2d_float,
    _weighted_abs_gap,
    all_metrics,
    bin_stats,
    check_labels,
    expected_calibration_error,
    jsonable,
    softmax,
)
from .temperature import TemperatureCV, TemperatureFit, cross_validate_temperature, fit_temperature

CONFORMAL_METHODS: tuple[tuple[str, str, bool], ...] = (
    ("LAC marginal", "lac", False), ("APS marginal", "aps", False),
    ("LAC Mondrian", "lac", True), ("APS Mondrian", "aps", True))


@dataclass
class SplitLogits:
    """Logits of one backend on one split of subjects."""

    backend: str
    split: str                     # "val" | "conformal" | "test"
    logits: np.ndarray             # (N, K)
    y: np.ndarray                  # (N,)
    subject: np.ndarray            # (N,)
    index: Optional[np.ndarray] = None   # window indices into windows.npz, when known

    def __post_init__(self) -> None:
        self.logits = _as_2d_float(self.logits, f"{self.backend} {self.split} logits")
        self.y = check_labels(self.y, len(self.logits), self.logits.shape[1])
        self.subject = np.asarray(self.subject)
        if self.subject.shape != self.y.shape:
            raise ReliabilityInputError(f"{self.backend} {self.split}: subject has shape {self.subject.shape}, "
                                        f"labels {self.y.shape}; one subject id per window is needed")

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def subjects(self) -> list:
        return [s.item() for s in np.unique(self.subject)]


@dataclass
class BackendReliability:
    """Everything stage 08 measures for one backend (objects for plots; ``to_dict`` for JSON)."""

    backend: str
    alpha: float
    n_bins: int
    temperature: TemperatureFit
    test_before: dict[str, CalibrationMetric]
    test_after: dict[str, CalibrationMetric]
    intervals: dict[str, BootstrapCI]
    cv: Optional[TemperatureCV]
    cv_pooled_test: dict[str, float]
    predictors: dict[str, conf.ConformalPredictor]
    conformal: dict[str, dict[str, Any]]
    splits: dict[str, dict[str, Any]]
    verdict: str
    test_probs_after: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    test: Optional[SplitLogits] = field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "backend": self.backend, "alpha": self.alpha, "n_bins": self.n_bins, "splits": self.splits,
            "temperature": self.temperature.to_dict(), "temperature_verdict": self.verdict,
            "test_before_scaling": {k: v.to_dict() for k, v in self.test_before.items()},
            "test_after_scaling": {k: v.to_dict() for k, v in self.test_after.items()},
            "bootstrap_intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "temperature_cv": self.cv.to_dict() if self.cv is not None else None,
            "temperature_cv_pooled_on_test": self.cv_pooled_test,
            "conformal": self.conformal})


def _split_info(s: SplitLogits) -> dict[str, Any]:
    return {"n": s.n, "subjects": s.subjects, "n_subjects": len(s.subjects)}


def temperature_verdict(backend: str, before: BootstrapCI, after: BootstrapCI, temperature: float) -> str:
    """A plain sentence, generated from the numbers, on whether temperature scaling helped on test."""
    b, a = 100 * before.estimate, 100 * after.estimate
    direction = "sharpens" if temperature < 1 else "softens"
    head = (f"{backend}: T = {temperature:.3f} (fitted on the validation subjects; it {direction} the "
            f"probabilities). Test ECE {b:.2f}% [{100 * before.low:.2f}, {100 * before.high:.2f}] before, "
            f"{a:.2f}% [{100 * after.low:.2f}, {100 * after.high:.2f}] after scaling")
    if a > b:
        return head + (f": temperature scaling HURT calibration on the test subjects (ECE rose by "
                       f"{a - b:.2f} points); the validation subjects' temperature does not transfer.")
    if a < b:
        return head + f": scaling helped (ECE fell by {b - a:.2f} points)."
    return head + ": no change."


def analyse_backend(val: SplitLogits, calib: SplitLogits, test: SplitLogits, alpha: float = 0.1,
                    n_bins: int = 15, n_bootstrap: int = 1000, seed: int = 0, cv: bool = True,
                    cv_folds: Optional[int] = None, label_names: Optional[Sequence[str]] = None,
                    progress: bool = False) -> BackendReliability:
    """The whole stage-08 analysis for one backend (see the module docstring for the protocol)."""
    backend = test.backend
    for s in (val, calib):
        if s.backend != backend:
            raise ReliabilityInputError(f"all splits must come from one backend; got {s.backend} and {backend}")
        if s.logits.shape[1] != test.logits.shape[1]:
            raise ReliabilityInputError(f"{s.split} has {s.logits.shape[1]} classes, test has "
                                        f"{test.logits.shape[1]}")
    overlap = set(val.subjects) & set(test.subjects) | set(calib.subjects) & set(test.subjects) | \
        set(val.subjects) & set(calib.subjects)
    if overlap:
        raise ReliabilityInputError(f"splits share subjects {sorted(overlap)}; validation, conformal and "
                                    f"test subjects must be disjoint (stage 01 split_by_subject)")
    fit = fit_temperature(val.logits, val.y, backend=backend)
    p0, p1 = softmax(test.logits), softmax(test.logits, fit.temperature)
    before, after = all_metrics(p0, test.y, n_bins, seed), all_metrics(p1, test.y, n_bins, seed)

    # subject-bootstrap intervals for the headline figures (one resampling for all of them)
    y = test.y
    conf0, correct = p0.max(axis=1), (p0.argmax(axis=1) == y).astype(float)
    conf1 = p1.max(axis=1)
    ly0 = np.log(np.maximum(p0[np.arange(len(y)), y], 1e-12))
    ly1 = np.log(np.maximum(p1[np.arange(len(y)), y], 1e-12))

    def _ece(c: np.ndarray, o: np.ndarray) -> float:
        return _weighted_abs_gap(bin_stats(c, o, n_bins, "equal_width"))

    def stat(idx: np.ndarray) -> dict[str, float]:
        return {"accuracy": correct[idx].mean(), "ece_before": _ece(conf0[idx], correct[idx]),
                "ece_after": _ece(conf1[idx], correct[idx]), "nll_before": -ly0[idx].mean(),
                "nll_after": -ly1[idx].mean()}

    intervals = subject_bootstrap(stat, test.subject, n_bootstrap, seed=seed, progress=progress)
    verdict = temperature_verdict(backend, intervals["ece_before"], intervals["ece_after"], fit.temperature)

    cv_res, cv_test = None, {}
    if cv:
        pool_z = np.concatenate([val.logits, calib.logits])
        pool_y = np.concatenate([val.y, calib.y])
        pool_s = np.concatenate([val.subject, calib.subject])
        cv_res = cross_validate_temperature(pool_z, pool_y, pool_s, n_folds=cv_folds, n_bins=n_bins,
                                            backend=backend, progress=progress)
        t_pool = cv_res.pooled_fit.temperature
        cv_test = {"temperature_val_only": fit.temperature, "temperature_val_plus_conformal": t_pool,
                   "test_ece_val_only": after["ece"].value,
                   "test_ece_val_plus_conformal": expected_calibration_error(
                       softmax(test.logits, t_pool), y, n_bins).value,
                   "n_bins": n_bins, "binning": "equal_width", "n": test.n}

    pc = softmax(calib.logits, fit.temperature)
    predictors, conformal_out = {}, {}
    iv = conf.coverage_interval(calib.n, alpha, n_test=test.n)
    for name, score, mondrian in CONFORMAL_METHODS:
        pred = conf.calibrate(pc, calib.y, alpha, score=score, mondrian=mondrian, backend=backend)
        sets = pred.predict_sets(p1)
        m = conf.set_metrics(sets, y, test.subject, list(label_names) if label_names else None)
        covered = sets[np.arange(len(y)), y]
        cov_ci = subject_bootstrap(lambda idx, c=covered: c[idx].mean(), test.subject,
                                   n_bootstrap, seed=seed)
        entry = {"predictor": pred.to_dict(), "test": m, "coverage_bootstrap": cov_ci.to_dict(),
                 "probabilities": f"softmax(logits / T), T = {fit.temperature:.4f} from validation subjects",
                 "backend": backend}
        if mondrian:
            entry["expected_spread_per_class"] = [
                {"class": ci["class"], **conf.coverage_interval(ci["n"], alpha,
                                                                n_test=m["per_class"][ci["class"]]["n"] or None)}
                for ci in pred.class_info]
        else:
            entry["expected_spread"] = iv
        predictors[name] = pred
        conformal_out[name] = entry
    return BackendReliability(
        backend=backend, alpha=alpha, n_bins=n_bins, temperature=fit, test_before=before, test_after=after,
        intervals=intervals, cv=cv_res, cv_pooled_test=cv_test, predictors=predictors,
        conformal=conformal_out, splits={s.split: _split_info(s) for s in (val, calib, test)},
        verdict=verdict, test_probs_after=p1, test=test)


def deployment_shift(reference: BackendReliability, target: BackendReliability,
                     methods: Sequence[str] = ("LAC marginal", "APS marginal")) -> pd.DataFrame:
    """The reference backend's calibration (its T and conformal thresholds, e.g. FP32) applied to
    the target backend's test logits (e.g. INT8 as deployed), against re-calibrating on the target."""
    if target.test is None or reference.test is None:
        raise ReliabilityInputError("deployment_shift needs results from analyse_backend (with test logits)")
    t = target.test
    p_ref_cal = softmax(t.logits, reference.temperature.temperature)
    rows = []
    for name in methods:
        if reference.predictors[name].mondrian:
            raise ReliabilityInputError(f"deployment_shift compares marginal methods only, got {name!r}")
        shipped = conf.set_metrics(reference.predictors[name].predict_sets(p_ref_cal), t.y)
        own = target.conformal[name]["test"]
        iv = target.conformal[name].get("expected_spread", {})
        for how, m, temp, q in (
                (f"{reference.backend} T and q (shipped)", shipped, reference.temperature.temperature,
                 reference.predictors[name].thresholds[0]),
                (f"re-calibrated on {target.backend}", own, target.temperature.temperature,
                 target.predictors[name].thresholds[0])):
            rows.append({"method": name, "evaluated_on": target.backend, "calibration": how, "T": temp,
                         "q": q, "coverage": m["coverage"], "mean_set_size": m["mean_set_size"],
                         "empty_set_rate": m["empty_set_rate"], "n": m["n"],
                         "expected_low": iv.get("test_low"), "expected_high": iv.get("test_high")})
    return pd.DataFrame(rows)


def report_card(result: BackendReliability, target_accuracy: float, target_ece: float) -> pd.DataFrame:
    """Pass/fail per target with the measured value and its interval.

    * accuracy >= target_accuracy (test subjects; subject-bootstrap 95% interval);
    * ECE after temperature scaling <= target_ece (15 equal-width bins; subject-bootstrap interval);
    * marginal coverage (LAC and APS) inside the expected spread of split conformal for this n_cal and
      n_test (Beta-binomial central 95%). That spread assumes exchangeable windows; windows of one
      subject are correlated, so the subject-bootstrap interval is shown next to it.
    ``pass`` judges the point estimate; ``interval_clear`` says whether the whole interval meets the
    target (for coverage: whether the bootstrap interval contains 1 - alpha).
    """
    iv = result.intervals
    rows = [
        {"backend": result.backend, "check": "accuracy", "target": f">= {target_accuracy:.3f}",
         "measured": iv["accuracy"].estimate, "low": iv["accuracy"].low, "high": iv["accuracy"].high,
         "interval": "subject bootstrap 95%", "n": result.test_before["accuracy"].n,
         "pass": bool(iv["accuracy"].estimate >= target_accuracy),
         "interval_clear": bool(iv["accuracy"].low >= target_accuracy)},
        {"backend": result.backend, "check": f"ECE after T (T={result.temperature.temperature:.3f})",
         "target": f"<= {target_ece:.3f}", "measured": iv["ece_after"].estimate, "low": iv["ece_after"].low,
         "high": iv["ece_after"].high, "interval": f"subject bootstrap 95%, {result.n_bins} equal-width bins",
         "n": result.test_after["ece"].n, "pass": bool(iv["ece_after"].estimate <= target_ece),
         "interval_clear": bool(iv["ece_after"].high <= target_ece)}]
    for name in ("LAC marginal", "APS marginal"):
        c = result.conformal[name]
        spread, boot = c["expected_spread"], c["coverage_bootstrap"]
        measured = c["test"]["coverage"]
        rows.append({
            "backend": result.backend, "check": f"coverage {name}",
            "target": f"in [{spread['test_low']:.3f}, {spread['test_high']:.3f}] (1-alpha={1 - result.alpha:.2f})",
            "measured": measured, "low": boot["low"], "high": boot["high"],
            "interval": "subject bootstrap 95%", "n": c["test"]["n"],
            "pass": bool(spread["test_low"] <= measured <= spread["test_high"]),
            "interval_clear": bool(boot["low"] <= 1 - result.alpha <= boot["high"])})
    return pd.DataFrame(rows)


def summary_table(results: Sequence[BackendReliability]) -> pd.DataFrame:
    """One row per backend: T, ECE before/after with intervals, NLL, Brier, coverage and set sizes."""
    rows = []
    for r in results:
        iv = r.intervals
        row = {"backend": r.backend, "T (val)": r.temperature.temperature, "n test": r.test_before["ece"].n,
               "accuracy": iv["accuracy"].estimate,
               "ECE before": iv["ece_before"].estimate,
               "ECE before 95%": f"[{iv['ece_before'].low:.4f}, {iv['ece_before'].high:.4f}]",
               "ECE after": iv["ece_after"].estimate,
               "ECE after 95%": f"[{iv['ece_after'].low:.4f}, {iv['ece_after'].high:.4f}]",
               "ECE eq-mass after": r.test_after["ece_equal_mass"].value,
               "debiased ECE after": r.test_after["debiased_ece"].value,
               "MCE after": r.test_after["mce"].value,
               "classwise ECE after": r.test_after["classwise_ece"].value,
               "NLL before": r.test_before["nll"].value, "NLL after": r.test_after["nll"].value,
               "Brier after": r.test_after["brier"].value}
        for name in ("LAC marginal", "APS marginal"):
            t = r.conformal[name]["test"]
            row[f"{name} coverage"] = t["coverage"]
            row[f"{name} set size"] = t["mean_set_size"]
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_table(result: BackendReliability) -> pd.DataFrame:
    """Every test-set figure before and after temperature scaling, with n, bins and binning."""
    rows = []
    for key in result.test_before:
        b, a = result.test_before[key], result.test_after[key]
        rows.append({"backend": result.backend, "metric": key, "before": b.value, "after": a.value,
                     "n": b.n, "bins": b.n_bins, "binning": b.binning})
    return pd.DataFrame(rows)


def conformal_table(result: BackendReliability) -> pd.DataFrame:
    """One row per conformal method: threshold(s), coverage with spreads, set sizes, empty sets."""
    rows = []
    for name, c in result.conformal.items():
        t, p = c["test"], c["predictor"]
        sp = c.get("expected_spread")
        thr = [x for x in p["thresholds"]]
        rows.append({"backend": result.backend, "method": name, "n_cal": p["n"],
                     "k": p["k"] if not p["mondrian"] else "per class",
                     "q": thr[0] if not p["mondrian"] else ", ".join("inf" if x is None else f"{x:.3f}"
                                                                   for x in thr),
                     "coverage": t["coverage"],
                     "bootstrap 95%": f"[{c['coverage_bootstrap']['low']:.3f}, {c['coverage_bootstrap']['high']:.3f}]",
                     "expected (Beta-binomial 95%)": (f"[{sp['test_low']:.3f}, {sp['test_high']:.3f}]" if sp
                                                      else "per class"),
                     "mean set size": t["mean_set_size"], "empty-set rate": t["empty_set_rate"],
                     "singletons": t["singleton_rate"], "min class coverage":
                         min(pc["coverage"] for pc in t["per_class"] if pc["coverage"] is not None),
                     "min subject coverage": min(ps["coverage"] for ps in t["per_subject"]),
                     "n_test": t["n"]})
    return pd.DataFrame(rows)


__all__ = ["BackendReliability", "CONFORMAL_METHODS", "SplitLogits", "analyse_backend", "conformal_table",
           "deployment_shift", "metrics_table", "report_card", "summary_table", "temperature_verdict"]

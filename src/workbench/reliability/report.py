"""Stage 08 analysis per backend and the report card against the project's targets.

Everything here works on arrays (:class:`SplitLogits`: logits, labels, subjects of one split from one
backend), so it can be tested on synthetic data and does not care how the logits were produced.

Protocol (all splits are disjoint groups of SUBJECTS, made by stage 01; test subjects only report):
* split protocol: temperature T fitted on the validation subjects, per backend; split conformal
  thresholds (LAC/APS, marginal and Mondrian, and the subject-level threshold) calibrated on the
  conformal-calibration subjects, on probabilities softmax(z / T) with that backend's validation T;
* pooled protocol (meant for new subjects): the validation and conformal subjects form one pool; a
  probability calibrator (identity, temperature, vector or matrix scaling) is chosen by its held-out
  NLL leaving one pool subject out at a time and refitted on the pool; conformal thresholds (LAC
  marginal and subject-level) are calibrated on the pool's CROSS-FITTED probabilities (each window
  calibrated by the map fitted without its subject), so the calibration scores are out-of-subject
  like the test scores (the cross-fitting idea of cross-conformal / CV+, Vovk 2015, Barber et al.
  2021; the final map is fitted on one more subject than each fold's, so the split-conformal
  guarantee holds only approximately) and twice as many subjects enter the subject-level quantile;
* every reported figure measured on the test subjects, with subject-bootstrap intervals, per-subject
  coverage (distribution, worst subject, share of subjects below 1 - alpha);
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
from .scaling import DEFAULT_CANDIDATES, CalibratorSelection, select_calibrator
from .temperature import TemperatureCV, TemperatureFit, cross_validate_temperature, fit_temperature

CONFORMAL_METHODS: tuple[tuple[str, str, bool], ...] = (
    ("LAC marginal", "lac", False),
    ("APS marginal", "aps", False),
    ("LAC Mondrian", "lac", True),
    ("APS Mondrian", "aps", True),
)
SUBJECT_METHOD = "LAC subject-level"
POOLED_METHODS = ("LAC marginal, pooled", "LAC subject-level, pooled")


@dataclass
class SplitLogits:
    """Logits of one backend on one split of subjects."""

    backend: str
    split: str  # "val" | "conformal" | "test"
    logits: np.ndarray  # (N, K)
    y: np.ndarray  # (N,)
    subject: np.ndarray  # (N,)
    index: Optional[np.ndarray] = None  # window indices into windows.npz, when known

    def __post_init__(self) -> None:
        self.logits = _as_2d_float(self.logits, f"{self.backend} {self.split} logits")
        self.y = check_labels(self.y, len(self.logits), self.logits.shape[1])
        self.subject = np.asarray(self.subject)
        if self.subject.shape != self.y.shape:
            raise ReliabilityInputError(
                f"{self.backend} {self.split}: subject has shape {self.subject.shape}, "
                f"labels {self.y.shape}; one subject id per window is needed"
            )

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
    selection: Optional[CalibratorSelection] = None
    test_selected: dict[str, CalibrationMetric] = field(default_factory=dict)
    subject_delta: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "backend": self.backend,
                "alpha": self.alpha,
                "n_bins": self.n_bins,
                "splits": self.splits,
                "temperature": self.temperature.to_dict(),
                "temperature_verdict": self.verdict,
                "test_before_scaling": {k: v.to_dict() for k, v in self.test_before.items()},
                "test_after_scaling": {k: v.to_dict() for k, v in self.test_after.items()},
                "bootstrap_intervals": {k: v.to_dict() for k, v in self.intervals.items()},
                "temperature_cv": self.cv.to_dict() if self.cv is not None else None,
                "temperature_cv_pooled_on_test": self.cv_pooled_test,
                "calibrator_selection": self.selection.to_dict() if self.selection is not None else None,
                "test_after_selected_calibrator": {k: v.to_dict() for k, v in self.test_selected.items()},
                "subject_delta": self.subject_delta,
                "conformal": self.conformal,
            }
        )


def _split_info(s: SplitLogits) -> dict[str, Any]:
    return {"n": s.n, "subjects": s.subjects, "n_subjects": len(s.subjects)}


def temperature_verdict(backend: str, before: BootstrapCI, after: BootstrapCI, temperature: float) -> str:
    """A plain sentence, generated from the numbers, on whether temperature scaling helped on test."""
    b, a = 100 * before.estimate, 100 * after.estimate
    direction = "sharpens" if temperature < 1 else "softens"
    head = (
        f"{backend}: T = {temperature:.3f} (fitted on the validation subjects; it {direction} the "
        f"probabilities). Test ECE {b:.2f}% [{100 * before.low:.2f}, {100 * before.high:.2f}] before, "
        f"{a:.2f}% [{100 * after.low:.2f}, {100 * after.high:.2f}] after scaling"
    )
    if a > b:
        return head + (
            f": temperature scaling HURT calibration on the test subjects (ECE rose by "
            f"{a - b:.2f} points); the validation subjects' temperature does not transfer."
        )
    if a < b:
        return head + f": scaling helped (ECE fell by {b - a:.2f} points)."
    return head + ": no change."


def analyse_backend(
    val: SplitLogits,
    calib: SplitLogits,
    test: SplitLogits,
    alpha: float = 0.1,
    n_bins: int = 15,
    n_bootstrap: int = 1000,
    seed: int = 0,
    cv: bool = True,
    cv_folds: Optional[int] = None,
    label_names: Optional[Sequence[str]] = None,
    progress: bool = False,
    subject_delta: float = 0.2,
    calibrators: Sequence[tuple[str, float]] = DEFAULT_CANDIDATES,
) -> BackendReliability:
    """The whole stage-08 analysis for one backend (see the module docstring for the protocol)."""
    backend = test.backend
    for s in (val, calib):
        if s.backend != backend:
            raise ReliabilityInputError(f"all splits must come from one backend; got {s.backend} and {backend}")
        if s.logits.shape[1] != test.logits.shape[1]:
            raise ReliabilityInputError(f"{s.split} has {s.logits.shape[1]} classes, test has {test.logits.shape[1]}")
    overlap = (
        set(val.subjects) & set(test.subjects)
        | set(calib.subjects) & set(test.subjects)
        | set(val.subjects) & set(calib.subjects)
    )
    if overlap:
        raise ReliabilityInputError(
            f"splits share subjects {sorted(overlap)}; validation, conformal and "
            f"test subjects must be disjoint (stage 01 split_by_subject)"
        )
    fit = fit_temperature(val.logits, val.y, backend=backend)
    p0, p1 = softmax(test.logits), softmax(test.logits, fit.temperature)
    before, after = all_metrics(p0, test.y, n_bins, seed), all_metrics(p1, test.y, n_bins, seed)
    pool_z = np.concatenate([val.logits, calib.logits])
    pool_y = np.concatenate([val.y, calib.y])
    pool_s = np.concatenate([val.subject, calib.subject])
    selection = select_calibrator(pool_z, pool_y, pool_s, calibrators, "nll", n_bins=n_bins, backend=backend)
    p2 = selection.chosen.probs(test.logits)
    selected = all_metrics(p2, test.y, n_bins, seed)

    # subject-bootstrap intervals for the headline figures (one resampling for all of them)
    y = test.y
    conf0, correct = p0.max(axis=1), (p0.argmax(axis=1) == y).astype(float)
    conf1 = p1.max(axis=1)
    conf2, correct2 = p2.max(axis=1), (p2.argmax(axis=1) == y).astype(float)
    ly0 = np.log(np.maximum(p0[np.arange(len(y)), y], 1e-12))
    ly1 = np.log(np.maximum(p1[np.arange(len(y)), y], 1e-12))

    def _ece(c: np.ndarray, o: np.ndarray) -> float:
        return _weighted_abs_gap(bin_stats(c, o, n_bins, "equal_width"))

    def stat(idx: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": correct[idx].mean(),
            "ece_before": _ece(conf0[idx], correct[idx]),
            "ece_after": _ece(conf1[idx], correct[idx]),
            "nll_before": -ly0[idx].mean(),
            "nll_after": -ly1[idx].mean(),
            "ece_selected": _ece(conf2[idx], correct2[idx]),
        }

    intervals = subject_bootstrap(stat, test.subject, n_bootstrap, seed=seed, progress=progress)
    verdict = temperature_verdict(backend, intervals["ece_before"], intervals["ece_after"], fit.temperature)
    if not fit.identifiable:
        verdict += f" Note: {fit.reason}."

    cv_res, cv_test = None, {}
    if cv:
        cv_res = cross_validate_temperature(
            pool_z, pool_y, pool_s, n_folds=cv_folds, n_bins=n_bins, backend=backend, progress=progress
        )
        t_pool = cv_res.pooled_fit.temperature
        cv_test = {
            "temperature_val_only": fit.temperature,
            "temperature_val_plus_conformal": t_pool,
            "test_ece_val_only": after["ece"].value,
            "test_ece_val_plus_conformal": expected_calibration_error(softmax(test.logits, t_pool), y, n_bins).value,
            "n_bins": n_bins,
            "binning": "equal_width",
            "n": test.n,
        }

    pc = softmax(calib.logits, fit.temperature)
    predictors, conformal_out = {}, {}
    iv = conf.coverage_interval(calib.n, alpha, n_test=test.n)
    names = list(label_names) if label_names else None
    split_how = f"softmax(logits / T), T = {fit.temperature:.4f} from validation subjects; q from conformal subjects"
    pooled_how = (
        f"{selection.chosen.name} chosen leaving pool subjects out; q from the cross-fitted "
        f"probabilities of validation + conformal subjects"
    )

    def _entry(pred: conf.ConformalPredictor, p_test: np.ndarray, how: str) -> dict[str, Any]:
        sets = pred.predict_sets(p_test)
        m = conf.set_metrics(sets, y, test.subject, names)
        covered = sets[np.arange(len(y)), y]
        m["subject_summary"] = conf.subject_coverage_summary(covered, test.subject, 1 - alpha)
        cov_ci = subject_bootstrap(lambda idx, c=covered: c[idx].mean(), test.subject, n_bootstrap, seed=seed)
        return {
            "predictor": pred.to_dict(),
            "test": m,
            "coverage_bootstrap": cov_ci.to_dict(),
            "probabilities": how,
            "backend": backend,
        }

    for name, score, mondrian in CONFORMAL_METHODS:
        pred = conf.calibrate(pc, calib.y, alpha, score=score, mondrian=mondrian, backend=backend)
        entry = _entry(pred, p1, split_how)
        if mondrian:
            entry["expected_spread_per_class"] = [
                {
                    "class": ci["class"],
                    **conf.coverage_interval(
                        ci["n"], alpha, n_test=entry["test"]["per_class"][ci["class"]]["n"] or None
                    ),
                }
                for ci in pred.class_info
            ]
        else:
            entry["expected_spread"] = iv
        predictors[name], conformal_out[name] = pred, entry
    pred = conf.calibrate_by_subject(pc, calib.y, calib.subject, alpha, subject_delta, backend=backend)
    predictors[SUBJECT_METHOD], conformal_out[SUBJECT_METHOD] = pred, _entry(pred, p1, split_how)
    ph = selection.heldout_probs
    for name, pred in zip(
        POOLED_METHODS,
        (
            conf.calibrate(ph, pool_y, alpha, backend=backend),
            conf.calibrate_by_subject(ph, pool_y, pool_s, alpha, subject_delta, backend=backend),
        ),
    ):
        entry = _entry(pred, p2, pooled_how)
        if not pred.subject_level:
            entry["expected_spread"] = conf.coverage_interval(len(pool_y), alpha, n_test=test.n)
        predictors[name], conformal_out[name] = pred, entry
    return BackendReliability(
        backend=backend,
        alpha=alpha,
        n_bins=n_bins,
        temperature=fit,
        test_before=before,
        test_after=after,
        intervals=intervals,
        cv=cv_res,
        cv_pooled_test=cv_test,
        predictors=predictors,
        conformal=conformal_out,
        splits={s.split: _split_info(s) for s in (val, calib, test)},
        verdict=verdict,
        test_probs_after=p1,
        test=test,
        selection=selection,
        test_selected=selected,
        subject_delta=subject_delta,
    )


def deployment_shift(
    reference: BackendReliability, target: BackendReliability, methods: Sequence[str] = ("LAC marginal", "APS marginal")
) -> pd.DataFrame:
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
            (
                f"{reference.backend} T and q (shipped)",
                shipped,
                reference.temperature.temperature,
                reference.predictors[name].thresholds[0],
            ),
            (
                f"re-calibrated on {target.backend}",
                own,
                target.temperature.temperature,
                target.predictors[name].thresholds[0],
            ),
        ):
            rows.append(
                {
                    "method": name,
                    "evaluated_on": target.backend,
                    "calibration": how,
                    "T": temp,
                    "q": q,
                    "coverage": m["coverage"],
                    "mean_set_size": m["mean_set_size"],
                    "empty_set_rate": m["empty_set_rate"],
                    "n": m["n"],
                    "expected_low": iv.get("test_low"),
                    "expected_high": iv.get("test_high"),
                }
            )
    return pd.DataFrame(rows)


def judge_coverage(
    measured: float,
    low: float,
    high: float,
    target: float,
    mean_set_size: float,
    empty_set_rate: float,
    full_set_rate: float,
    alpha: float,
    conservative_by_design: bool = False,
) -> dict[str, Any]:
    """Verdict on one coverage figure, judged against its subject-bootstrap interval [low, high].

    * ``fail`` / direction ``trivial``: half or more of the sets hold every class (or q = inf): a
      coverage of 1.0 reached that way says nothing;
    * ``fail`` / ``under``: even the top of the interval is below 1 - alpha (the guarantee failed on
      these subjects);
    * ``warn`` / ``over``: the whole interval lies above 1 - alpha: valid but conservative, the sets are
      larger than the target needs (``pass`` for a method built to over-cover, e.g. subject-level);
    * ``pass`` / ``within``: 1 - alpha lies inside the interval; the note says on which side the point is.
    Empty sets (always misses) and all-class sets are named in the note; either one more frequent than
    alpha turns a pass into ``warn``.
    """
    notes = [
        f"mean set size {mean_set_size:.2f}",
        f"{100 * empty_set_rate:.1f}% empty sets",
        f"{100 * full_set_rate:.1f}% sets with every class",
    ]
    if full_set_rate >= 0.5:
        status, direction = "fail", "trivial"
        notes.insert(0, "uninformative: most sets hold every class, so the coverage is trivially high")
    elif high < target:
        status, direction = "fail", "under"
        notes.insert(
            0,
            f"under-coverage: the whole interval is below {target:.2f} "
            f"(point {measured:.4f}, {100 * (target - measured):.2f} points short)",
        )
    elif low > target:
        status, direction = ("pass" if conservative_by_design else "warn"), "over"
        notes.insert(
            0,
            f"over-coverage: the whole interval is above {target:.2f} (point {measured:.4f}, "
            f"{100 * (measured - target):.2f} points over); valid but the sets are larger than "
            f"needed" + (" (expected: this method is built to over-cover)" if conservative_by_design else ""),
        )
    else:
        status, direction = "pass", "within"
        side = "below" if measured < target else "above" if measured > target else "at"
        notes.insert(
            0,
            f"{target:.2f} lies inside the interval; the point is {side} it by "
            f"{100 * abs(measured - target):.2f} points",
        )
    if status == "pass" and (empty_set_rate > alpha or full_set_rate > alpha):
        status = "warn"
        notes.append(f"more {'empty' if empty_set_rate > alpha else 'all-class'} sets than alpha = {alpha:g}")
    return {"status": status, "direction": direction, "note": "; ".join(notes)}


def _status_row(
    backend: str,
    check: str,
    target: str,
    ci: Any,
    n: int,
    ok_point: bool,
    ok_interval: bool,
    interval: str,
    note: str = "",
) -> dict[str, Any]:
    return {
        "backend": backend,
        "check": check,
        "target": target,
        "measured": ci.estimate,
        "low": ci.low,
        "high": ci.high,
        "interval": interval,
        "n": n,
        "status": "pass" if ok_point else "fail",
        "pass": bool(ok_point),
        "interval_clear": bool(ok_interval),
        "direction": "",
        "mean_set_size": None,
        "empty_set_rate": None,
        "full_set_rate": None,
        "note": note,
    }


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for a share k / n (Clopper & Pearson 1934)."""
    from scipy import stats

    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return low, high


def _subject_share_row(backend: str, name: str, t: dict[str, Any], delta: float, target: float) -> dict[str, Any]:
    """The subject-level method promises: at most a share delta of new subjects below 1 - alpha. With a
    handful of test subjects the observed share is coarse, so it is judged against its Clopper-Pearson
    interval: fail when the whole interval lies above delta, warn when only the point does."""
    ss = t["subject_summary"]
    k, n = ss["subjects_under_target"], ss["n_subjects"]
    low, high = clopper_pearson(k, n)
    share = ss["share_subjects_under_target"]
    if low > delta:
        status, direction = "fail", "under"
    else:
        status, direction = ("warn" if share > delta else "pass"), "within"
    note = (
        f"{k} of {n} test subjects below {target:.2f} (worst: subject {ss['worst_subject']} at "
        f"{ss['worst_coverage']:.3f}); promised share <= {delta:g}"
        + (
            "; the whole interval lies above it"
            if status == "fail"
            else "; above it, but within what so few subjects can show"
            if status == "warn"
            else ""
        )
    )
    return {
        "backend": backend,
        "check": f"test subjects below {target:.2f}, {name}",
        "target": f"share <= delta = {delta:g}",
        "measured": share,
        "low": low,
        "high": high,
        "interval": "Clopper-Pearson 95% over test subjects",
        "n": n,
        "status": status,
        "pass": status != "fail",
        "interval_clear": bool(high <= delta),
        "direction": direction,
        "mean_set_size": t["mean_set_size"],
        "empty_set_rate": t["empty_set_rate"],
        "full_set_rate": t["full_set_rate"],
        "note": note,
    }


def report_card(result: BackendReliability, target_accuracy: float, target_ece: float) -> pd.DataFrame:
    """One row per check: measured value, subject-bootstrap 95% interval, ``status`` (pass / warn /
    fail), ``direction`` of a coverage miss, set sizes and a ``note`` that says why.

    * accuracy >= target_accuracy and ECE <= target_ece (after temperature scaling, and after the
      calibrator selected by leaving subjects out) on the test subjects; ``interval_clear`` says
      whether the whole interval meets the target;
    * coverage of each conformal method judged by :func:`judge_coverage` against the subject-bootstrap
      interval (not the point, not a window-exchangeable spread); for the subject-level method also the
      share of test subjects below 1 - alpha against delta.
    ``pass`` is True unless ``status`` is ``fail`` (an over-covering method is not a red failure).
    """
    iv, b = result.intervals, result.backend
    boot = f"subject bootstrap 95%, {result.n_bins} equal-width bins"
    rows = [
        _status_row(
            b,
            "accuracy",
            f">= {target_accuracy:.3f}",
            iv["accuracy"],
            result.test_before["accuracy"].n,
            iv["accuracy"].estimate >= target_accuracy,
            iv["accuracy"].low >= target_accuracy,
            "subject bootstrap 95%",
        ),
        _status_row(
            b,
            f"ECE after T (T={result.temperature.temperature:.3f})",
            f"<= {target_ece:.3f}",
            iv["ece_after"],
            result.test_after["ece"].n,
            iv["ece_after"].estimate <= target_ece,
            iv["ece_after"].high <= target_ece,
            boot,
            "" if result.temperature.identifiable else result.temperature.reason,
        ),
    ]
    if "ece_selected" in iv and result.selection is not None:
        rows.append(
            _status_row(
                b,
                f"ECE after {result.selection.chosen.name} (selected leaving subjects out)",
                f"<= {target_ece:.3f}",
                iv["ece_selected"],
                result.test_after["ece"].n,
                iv["ece_selected"].estimate <= target_ece,
                iv["ece_selected"].high <= target_ece,
                boot,
                f"chosen by held-out {result.selection.criterion} over subjects "
                f"{sorted(sum(result.selection.folds, []))}",
            )
        )
    target = 1 - result.alpha
    for name, c in result.conformal.items():
        if c["predictor"]["mondrian"]:
            continue
        t, bt = c["test"], c["coverage_bootstrap"]
        subject_level = c["predictor"].get("delta") is not None
        q_inf = any(x is None for x in c["predictor"]["thresholds"])
        verdict = judge_coverage(
            t["coverage"],
            bt["low"],
            bt["high"],
            target,
            t["mean_set_size"],
            t["empty_set_rate"],
            1.0 if q_inf else t["full_set_rate"],
            result.alpha,
            conservative_by_design=subject_level,
        )
        rows.append(
            {
                "backend": b,
                "check": f"coverage {name}",
                "target": f">= {target:.2f} (alpha={result.alpha:g})",
                "measured": t["coverage"],
                "low": bt["low"],
                "high": bt["high"],
                "interval": "subject bootstrap 95%",
                "n": t["n"],
                **verdict,
                "pass": verdict["status"] != "fail",
                "interval_clear": bool(bt["low"] >= target),
                "mean_set_size": t["mean_set_size"],
                "empty_set_rate": t["empty_set_rate"],
                "full_set_rate": t["full_set_rate"],
            }
        )
        if subject_level:
            rows.append(_subject_share_row(b, name, t, c["predictor"]["delta"], target))
    return pd.DataFrame(rows)


def summary_table(results: Sequence[BackendReliability]) -> pd.DataFrame:
    """One row per backend: T, ECE before/after with intervals, NLL, Brier, coverage and set sizes."""
    rows = []
    for r in results:
        iv = r.intervals
        row = {
            "backend": r.backend,
            "T (val)": r.temperature.temperature,
            "n test": r.test_before["ece"].n,
            "accuracy": iv["accuracy"].estimate,
            "ECE before": iv["ece_before"].estimate,
            "ECE before 95%": f"[{iv['ece_before'].low:.4f}, {iv['ece_before'].high:.4f}]",
            "ECE after": iv["ece_after"].estimate,
            "ECE after 95%": f"[{iv['ece_after'].low:.4f}, {iv['ece_after'].high:.4f}]",
            "ECE eq-mass after": r.test_after["ece_equal_mass"].value,
            "debiased ECE after": r.test_after["debiased_ece"].value,
            "MCE after": r.test_after["mce"].value,
            "classwise ECE after": r.test_after["classwise_ece"].value,
            "NLL before": r.test_before["nll"].value,
            "NLL after": r.test_after["nll"].value,
            "Brier after": r.test_after["brier"].value,
        }
        for name in ("LAC marginal", "APS marginal"):
            t = r.conformal[name]["test"]
            row[f"{name} coverage"] = t["coverage"]
            row[f"{name} set size"] = t["mean_set_size"]
        if r.selection is not None:
            row["calibrator (selected)"] = r.selection.chosen.name
            row["ECE after selected"] = iv["ece_selected"].estimate
            row["ECE after selected 95%"] = f"[{iv['ece_selected'].low:.4f}, {iv['ece_selected'].high:.4f}]"
            row["NLL after selected"] = r.test_selected["nll"].value
            row["accuracy after selected"] = r.test_selected["accuracy"].value
        for name in (SUBJECT_METHOD,) + POOLED_METHODS:
            if name in r.conformal:
                t = r.conformal[name]["test"]
                row[f"{name} coverage"] = t["coverage"]
                row[f"{name} set size"] = t["mean_set_size"]
                row[f"{name} min subject coverage"] = t["subject_summary"]["min"]
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_table(result: BackendReliability) -> pd.DataFrame:
    """Every test-set figure before and after temperature scaling, with n, bins and binning."""
    rows = []
    for key in result.test_before:
        b, a = result.test_before[key], result.test_after[key]
        rows.append(
            {
                "backend": result.backend,
                "metric": key,
                "before": b.value,
                "after": a.value,
                "n": b.n,
                "bins": b.n_bins,
                "binning": b.binning,
            }
        )
    return pd.DataFrame(rows)


def conformal_table(result: BackendReliability) -> pd.DataFrame:
    """One row per conformal method: calibration, threshold(s), coverage with its subject-bootstrap
    interval, set sizes (empty and all-class shares) and the per-subject coverage summary."""
    rows = []
    for name, c in result.conformal.items():
        t, p = c["test"], c["predictor"]
        sp, ss = c.get("expected_spread"), t["subject_summary"]
        thr = p["thresholds"]
        if p["mondrian"]:
            q, k = ", ".join("inf" if x is None else f"{x:.3f}" for x in thr), "per class"
        else:
            q, k = ("inf" if thr[0] is None else thr[0]), p["k"]
        rows.append(
            {
                "backend": result.backend,
                "method": name,
                "calibration": "pooled, cross-fitted" if "pooled" in name else "split",
                "n_cal": p["n"],
                "subjects_cal": len(p["subject_info"]) if p.get("delta") else None,
                "k": k,
                "q": q,
                "coverage": t["coverage"],
                "bootstrap 95%": f"[{c['coverage_bootstrap']['low']:.3f}, {c['coverage_bootstrap']['high']:.3f}]",
                "expected (Beta-binomial 95%)": (
                    f"[{sp['test_low']:.3f}, {sp['test_high']:.3f}]" if sp else "per class" if p["mondrian"] else "-"
                ),
                "mean set size": t["mean_set_size"],
                "empty-set rate": t["empty_set_rate"],
                "all-class rate": t["full_set_rate"],
                "singletons": t["singleton_rate"],
                "min class coverage": min(pc["coverage"] for pc in t["per_class"] if pc["coverage"] is not None),
                "min subject coverage": ss["min"],
                "worst subject": ss["worst_subject"],
                "median subject coverage": ss["median"],
                "subjects below 1-alpha": f"{ss['subjects_under_target']}/{ss['n_subjects']}",
                "n_test": t["n"],
            }
        )
    return pd.DataFrame(rows)


def calibrator_table(result: BackendReliability) -> pd.DataFrame:
    """The leave-subjects-out comparison of probability calibrators (selection data only) next to what
    the chosen one does on the test subjects."""
    if result.selection is None:
        return pd.DataFrame()
    df = pd.DataFrame(result.selection.candidates)
    df.insert(0, "backend", result.backend)
    return df


__all__ = [
    "BackendReliability",
    "CONFORMAL_METHODS",
    "POOLED_METHODS",
    "SUBJECT_METHOD",
    "SplitLogits",
    "analyse_backend",
    "calibrator_table",
    "clopper_pearson",
    "conformal_table",
    "deployment_shift",
    "judge_coverage",
    "metrics_table",
    "report_card",
    "summary_table",
    "temperature_verdict",
]

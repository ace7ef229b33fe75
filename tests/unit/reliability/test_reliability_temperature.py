"""Temperature scaling (workbench.reliability.temperature)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.reliability import temperature as T
from workbench.reliability.metrics import ReliabilityInputError, expected_calibration_error, softmax


def _simulate(rng, n, k, t_true, scale=3.0):
    """Logits z; labels drawn from softmax(z / t_true): the best temperature is t_true."""
    z = rng.normal(size=(n, k)) * scale
    u = rng.uniform(size=(n, 1))
    y = (np.cumsum(softmax(z, t_true), axis=1) > u).argmax(axis=1)
    return z, y


@pytest.mark.parametrize("t_true", [0.6, 1.0, 2.5])
def test_recovers_known_temperature(t_true):
    rng = np.random.default_rng(int(t_true * 10))
    z, y = _simulate(rng, 6000, 6, t_true)
    fit = T.fit_temperature(z, y, backend="torch-fp32")
    assert fit.temperature == pytest.approx(t_true, rel=0.06)
    assert not fit.at_bound and fit.backend == "torch-fp32"
    # the bounded search agrees with the grid (its optimum is at least as good, and close in T)
    assert fit.nll_after <= fit.grid_nll + 1e-9
    assert abs(np.log(fit.grid_temperature) - fit.log_t) <= (np.log(20) - np.log(0.05)) / 400
    assert fit.nll_after <= fit.nll_before


def test_scaling_reduces_ece_on_miscalibrated_logits_and_keeps_accuracy():
    rng = np.random.default_rng(1)
    z, y = _simulate(rng, 4000, 5, 2.0)  # model logits are twice too sharp
    fit = T.fit_temperature(z[:2000], y[:2000])
    before = expected_calibration_error(softmax(z[2000:]), y[2000:]).value
    after = expected_calibration_error(T.apply_temperature(z[2000:], fit.temperature), y[2000:]).value
    assert after < before / 2
    assert (softmax(z).argmax(1) == T.apply_temperature(z, fit.temperature).argmax(1)).all()


def test_at_bound_flagged_and_bad_bounds():
    rng = np.random.default_rng(2)
    z, y = _simulate(rng, 3000, 4, 5.0)
    fit = T.fit_temperature(z, y, bounds=(0.5, 2.0))
    assert fit.at_bound and fit.temperature == pytest.approx(2.0, rel=1e-3)
    with pytest.raises(ReliabilityInputError, match="bounds"):
        T.fit_temperature(z, y, bounds=(2.0, 1.0))
    with pytest.raises(ReliabilityInputError, match="shape"):
        T.fit_temperature(z, y[:-1])


def test_leave_subjects_out_cv():
    rng = np.random.default_rng(3)
    # three subjects with different true temperatures: a pooled T cannot suit all of them
    parts = [_simulate(rng, 800, 4, t) for t in (0.7, 1.5, 3.0)]
    z = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    subject = np.repeat([11, 12, 13], 800)
    cv = T.cross_validate_temperature(z, y, subject, backend="ort-int8-emulated")
    assert [f["subjects"] for f in cv.folds] == [[11], [12], [13]]
    assert sum(f["n"] for f in cv.folds) == len(z)
    # fold 0 holds out subject 11 (T=0.7): the others' T is > 1 and makes that subject worse
    assert cv.folds[0]["temperature"] > 1.2
    assert cv.folds[0]["nll_after"] > cv.folds[0]["nll_before"]
    assert any(f["fold"] == 0 for f in cv.folds_hurt())
    assert cv.pooled_fit.n == len(z)
    d = cv.to_dict()
    assert d["backend"] == "ort-int8-emulated" and d["folds_hurt"] >= 1
    cv2 = T.cross_validate_temperature(z, y, subject, n_folds=2)
    assert [f["subjects"] for f in cv2.folds] == [[11, 13], [12]]
    with pytest.raises(ReliabilityInputError, match="at least two subjects"):
        T.cross_validate_temperature(z[:800], y[:800], subject[:800])


# ------------------------------------------------------------------------------------------------
# separable and degenerate data (issue 11: stage 08 crashed on a model that was perfect on validation)
# ------------------------------------------------------------------------------------------------
def _separable(rng, n=400, k=4, margin=30.0):
    y = rng.integers(0, k, n)
    z = rng.uniform(-1, 1, size=(n, k)) * min(1.0, margin / 4)  # noise below the margin: all correct
    z[np.arange(n), y] += margin
    return z, y


def _nll_brute(z, y, t):
    """Mean NLL written without log-softmax helpers (a second, independent formula)."""
    total = 0.0
    for row, label in zip(z / t, y):
        m = max(row)
        total += -(row[label] - m - np.log(sum(np.exp(v - m) for v in row)))
    return total / len(y)


@pytest.mark.parametrize("margin", [30.0, 0.5])  # huge margins (NLL underflows to 0) and small ones
def test_perfectly_separated_logits_are_reported_not_identifiable(margin):
    rng = np.random.default_rng(7)
    z, y = _separable(rng, margin=margin)
    assert (z.argmax(1) == y).all()
    fit = T.fit_temperature(z, y, backend="ort-int8-emulated")
    assert not fit.identifiable and fit.temperature == 1.0 and not fit.at_bound
    assert "not identifiable" in fit.reason and "400" in fit.reason
    # the NLL really is monotone in T here: the grid minimum sits on the lower bound
    assert fit.grid_temperature == pytest.approx(0.05)
    assert fit.nll_after == pytest.approx(_nll_brute(z, y, 1.0), rel=1e-9, abs=1e-12)
    d = fit.to_dict()
    assert d["identifiable"] is False and d["temperature"] == 1.0


def test_single_class_present():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(300, 3))
    y = np.zeros(300, dtype=int)
    z[:, 0] += 6.0  # every window says class 0: separable, one class only
    fit = T.fit_temperature(z, y)
    assert not fit.identifiable and fit.temperature == 1.0
    z[:, 0] -= 5.0  # now some windows are wrong: T is identifiable again
    assert not (z.argmax(1) == 0).all()
    fit2 = T.fit_temperature(z, y)
    assert fit2.identifiable and 0.05 < fit2.temperature < 20
    # the bounded search found the minimum of an independently written NLL on a fine grid
    ts = np.exp(np.linspace(np.log(fit2.temperature) - 0.05, np.log(fit2.temperature) + 0.05, 41))
    brute = [_nll_brute(z, y, t) for t in ts]
    assert abs(np.log(ts[int(np.argmin(brute))]) - fit2.log_t) <= 0.0026


def test_uninformative_logits_are_reported_not_identifiable():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 3, 300)
    z = rng.normal(size=(300, 3))
    z[np.arange(300), y] -= 2.0  # the true class is systematically the LOWEST logit
    fit = T.fit_temperature(z, y)
    assert not fit.identifiable and fit.temperature == 1.0 and "infinity" in fit.reason


def test_nan_logits_are_a_clear_error():
    rng = np.random.default_rng(10)
    z, y = _separable(rng)
    z[3, 1] = np.nan
    with pytest.raises(ReliabilityInputError, match="NaN"):
        T.fit_temperature(z, y)


def test_cross_validation_on_separable_subjects_completes():
    rng = np.random.default_rng(11)
    z, y = _separable(rng, n=600)
    subject = np.repeat([1, 2, 3], 200)
    cv = T.cross_validate_temperature(z, y, subject)
    assert [f["identifiable"] for f in cv.folds] == [False, False, False]
    assert (cv.temperatures == 1.0).all() and not cv.pooled_fit.identifiable

"""Probability-calibration metrics (workbench.reliability.metrics) against torchmetrics and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.reliability import metrics as M


def _random_probs(rng, n, k, scale=2.0):
    z = rng.normal(size=(n, k)) * scale
    return M.softmax(z), rng.integers(0, k, size=n)


@pytest.mark.torch
@pytest.mark.parametrize("seed,n,k", [(0, 500, 6), (1, 73, 3), (2, 2000, 12)])
@pytest.mark.parametrize("norm", ["l1", "max"])
def test_ece_mce_match_torchmetrics(seed, n, k, norm):
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    # torchmetrics applies softmax only when some value lies outside [0, 1]; logits that happen to lie
    # in [0, 1] would be read as probabilities. We pass PROBABILITIES so both sides see the same input.
    rng = np.random.default_rng(seed)
    p, y = _random_probs(rng, n, k)
    ref = float(
        multiclass_calibration_error(torch.from_numpy(p), torch.from_numpy(y), num_classes=k, n_bins=15, norm=norm)
    )
    fn = M.expected_calibration_error if norm == "l1" else M.maximum_calibration_error
    ours = fn(p, y, n_bins=15)
    assert ours.value == pytest.approx(ref, abs=1e-6)  # torchmetrics bins in float32
    assert (ours.n, ours.n_bins, ours.binning) == (n, 15, "equal_width")
    assert ours.bins.count.sum() == n


@pytest.mark.torch
def test_torchmetrics_logits_quirk_is_why_we_pass_probabilities():
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    # Logits that all lie in [0, 1] are NOT softmaxed by torchmetrics: it would report the ECE of
    # the raw numbers. Our functions refuse logits outside [0, 1] and rows that do not sum to 1.
    rng = np.random.default_rng(0)
    logits = rng.uniform(0, 1, size=(200, 4))
    y = rng.integers(0, 4, 200)
    tm_raw = float(multiclass_calibration_error(torch.from_numpy(logits), torch.from_numpy(y), 4))
    tm_soft = float(multiclass_calibration_error(torch.from_numpy(M.softmax(logits)), torch.from_numpy(y), 4))
    assert abs(tm_raw - tm_soft) > 0.05
    with pytest.raises(M.ReliabilityInputError, match="sum to 1"):
        M.expected_calibration_error(logits, y)
    with pytest.raises(M.ReliabilityInputError, match="logits"):
        M.expected_calibration_error(rng.normal(size=(10, 4)) * 5, y[:10])


def test_ece_by_hand_and_bin_edges():
    # 4 windows, 2 classes, 5 bins ((0,.2],(.2,.4],...): confidences .6 (bin 2), .8 (bin 3, edge:
    # Guo's bins are right-closed), .9 and 1.0 (bin 4).
    p = np.array([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1], [0.0, 1.0]])
    y = np.array([0, 0, 0, 1])  # correct, wrong, correct, correct
    r = M.expected_calibration_error(p, y, n_bins=5)
    assert r.bins.count.tolist() == [0, 0, 1, 1, 2]
    expected = (1 * abs(1 - 0.6) + 1 * abs(0 - 0.8) + 2 * abs(1 - 0.95)) / 4
    assert r.value == pytest.approx(expected)
    assert M.maximum_calibration_error(p, y, n_bins=5).value == pytest.approx(0.8)
    d = r.to_dict()
    assert d["bins"]["accuracy"][:2] == [None, None] and d["n"] == 4 and d["binning"] == "equal_width"


def test_equal_mass_bins_are_balanced_and_differ_from_equal_width():
    rng = np.random.default_rng(3)
    p, _ = _random_probs(rng, 1003, 5, scale=3.0)
    y = np.array([rng.choice(5, p=row) for row in p])  # calibrated: bin gaps of both signs
    em = M.expected_calibration_error(p, y, n_bins=10, binning="equal_mass")
    assert em.bins.count.max() - em.bins.count.min() <= 1 and em.bins.count.sum() == 1003
    assert np.all(np.diff(em.bins.lower) >= 0)
    ew = M.expected_calibration_error(p, y, n_bins=10)
    assert em.value != pytest.approx(ew.value)


@pytest.mark.torch
def test_classwise_ece_matches_per_class_binary_torchmetrics():
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    rng = np.random.default_rng(5)
    p, y = _random_probs(rng, 400, 3)
    ours = M.classwise_ece(p, y, n_bins=15)
    ref = [
        float(
            binary_calibration_error(
                torch.from_numpy(np.ascontiguousarray(p[:, c])), torch.from_numpy((y == c).astype(np.int64)), n_bins=15
            )
        )
        for c in range(3)
    ]
    assert ours.extra["per_class"] == pytest.approx(ref, abs=1e-9)
    assert ours.value == pytest.approx(np.mean(ref), abs=1e-9)


def test_debiased_ece_below_plugin_when_perfectly_calibrated():
    # Labels drawn from the model's own probabilities: true calibration error is 0, the plug-in ECE is
    # positive from noise alone, and the debiased estimate must sit below it (on average over seeds).
    gaps_l1, gaps_l2 = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        p = M.softmax(rng.normal(size=(300, 4)) * 2)
        y = np.array([rng.choice(4, p=row) for row in p])
        plug = M.expected_calibration_error(p, y, 15, "equal_mass").value
        d1 = M.debiased_ece(p, y, 15, "equal_mass", "l1", seed=seed)
        d2 = M.debiased_ece(p, y, 15, "equal_mass", "l2")
        assert d1.extra["plugin"] == pytest.approx(plug)
        gaps_l1.append(plug - d1.value)
        gaps_l2.append(d2.extra["plugin"] - d2.value)
    assert np.mean(gaps_l1) > 0.01 and np.mean(np.array(gaps_l1) > 0) >= 0.9
    assert np.mean(gaps_l2) > 0.01 and min(gaps_l2) >= 0


@pytest.mark.torch
def test_debiased_l2_matches_torchmetrics_debias_formula_on_equal_width():
    import torch

    # torchmetrics' private _ce_compute(debias=True) implements the same Kumar et al. estimator.
    from torchmetrics.functional.classification.calibration_error import _ce_compute

    rng = np.random.default_rng(7)
    p, y = _random_probs(rng, 600, 4)
    conf, correct, _ = M.top_label(p, y)
    ref = float(_ce_compute(torch.from_numpy(conf), torch.from_numpy(correct), 15, norm="l2", debias=True))
    ours = M.debiased_ece(p, y, 15, "equal_width", "l2")
    # identical unless a bin holds a single window (torchmetrics then divides by zero -> nan_to_num)
    assert ours.bins.count[ours.bins.count > 0].min() > 1
    assert ours.value == pytest.approx(ref, abs=1e-6)


def test_nll_and_brier_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 1])
    assert M.nll(p, y).value == pytest.approx(-(np.log(0.7) + np.log(0.1)) / 2)
    b = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert M.brier(p, y).value == pytest.approx(b)
    z = np.log(p)
    assert M.nll_from_logits(z, y) == pytest.approx(M.nll(p, y).value)


def test_softmax_temperature_and_saturation():
    z = np.array([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(M.log_softmax(z)).all() and M.softmax(z)[0, 0] == pytest.approx(1.0)
    z2 = np.array([[2.0, 1.0]])
    assert M.softmax(z2, 2.0) == pytest.approx(M.softmax(z2 / 2.0))
    with pytest.raises(M.ReliabilityInputError, match="temperature"):
        M.softmax(z2, 0.0)


@pytest.mark.parametrize(
    "bad,msg",
    [
        (dict(probs=np.full((3,), 0.5)), "2-D"),
        (dict(labels=np.array([0, 1])), r"shape \(3,\)"),
        (dict(labels=np.array([0, 1, 3])), r"0\.\.2"),
        (dict(labels=np.array([0.5, 1, 2])), "integer"),
        (dict(probs=np.array([[np.nan, 0.5, 0.5]] * 3)), "NaN"),
    ],
)
def test_bad_input_raises_clear_error(bad, msg):
    kwargs = dict(probs=np.full((3, 3), 1 / 3), labels=np.array([0, 1, 2]))
    kwargs.update(bad)
    with pytest.raises(M.ReliabilityInputError, match=msg):
        M.expected_calibration_error(kwargs["probs"], kwargs["labels"])


def test_bad_bins():
    p, y = np.full((3, 3), 1 / 3), np.array([0, 1, 2])
    with pytest.raises(M.ReliabilityInputError, match="n_bins"):
        M.expected_calibration_error(p, y, n_bins=0)
    with pytest.raises(M.ReliabilityInputError, match="binning"):
        M.expected_calibration_error(p, y, binning="quantile")


def test_all_metrics_keys_and_json():
    import json

    rng = np.random.default_rng(0)
    p, y = _random_probs(rng, 120, 6)
    res = M.all_metrics(p, y, n_bins=15)
    assert {"ece", "ece_equal_mass", "mce", "classwise_ece", "debiased_ece", "nll", "brier"} <= set(res)
    json.dumps({k: v.to_dict() for k, v in res.items()})
    assert res["ece_equal_mass"].binning == "equal_mass"

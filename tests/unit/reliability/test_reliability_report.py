"""Stage-08 analysis, report card and figures on synthetic logits (workbench.reliability.report/plots)."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from workbench.reliability import plots  # noqa: E402
from workbench.reliability.bootstrap import BootstrapCI  # noqa: E402
from workbench.reliability.metrics import ReliabilityInputError, softmax  # noqa: E402
from workbench.reliability.report import (  # noqa: E402
    SplitLogits,
    analyse_backend,
    conformal_table,
    deployment_shift,
    metrics_table,
    report_card,
    summary_table,
    temperature_verdict,
)


def _split(rng, backend, split, subjects, per_subject=150, k=5, sharp=2.0, noise=0.0):
    """Logits whose labels come from softmax(z): the model reports softmax(sharp * z) (over-confident
    when sharp > 1). ``noise`` perturbs logits (a stand-in for INT8 rounding)."""
    n = len(subjects) * per_subject
    z = rng.normal(size=(n, k)) * 1.5
    z[:, 0] += 0.5
    y = (np.cumsum(softmax(z), axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    logits = sharp * z + noise * rng.normal(size=z.shape)
    return SplitLogits(backend, split, logits.astype(np.float32), y, np.repeat(subjects, per_subject))


def _analyse(backend="torch-fp32", noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    val = _split(rng, backend, "val", [1, 2, 3], noise=noise)
    cal = _split(rng, backend, "conformal", [4, 5, 6], noise=noise)
    test = _split(rng, backend, "test", [7, 8, 9, 10], noise=noise)
    return analyse_backend(val, cal, test, alpha=0.1, n_bins=15, n_bootstrap=60, seed=0)


@pytest.fixture(scope="module")
def fp32():
    return _analyse()


@pytest.fixture(scope="module")
def int8():
    return _analyse("ort-int8-emulated", noise=0.3, seed=0)


def test_analysis_numbers_and_json(fp32):
    r = fp32
    assert r.temperature.temperature == pytest.approx(2.0, rel=0.15)     # the logits are 2x too sharp
    assert r.test_after["ece"].value < r.test_before["ece"].value
    assert r.test_after["accuracy"].value == r.test_before["accuracy"].value  # T does not move argmax
    assert r.splits["test"]["n_subjects"] == 4 and r.splits["val"]["n"] == 450
    for name in ("LAC marginal", "APS marginal", "LAC Mondrian", "APS Mondrian"):
        c = r.conformal[name]
        assert 0.8 < c["test"]["coverage"] <= 1.0 and c["predictor"]["n"] == 450
    assert r.conformal["LAC marginal"]["expected_spread"]["k"] == 406   # ceil(451 * 0.9)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["backend"] == "torch-fp32" and d["test_after_scaling"]["ece"]["n_bins"] == 15
    assert d["test_after_scaling"]["ece"]["binning"] == "equal_width"
    assert d["bootstrap_intervals"]["ece_after"]["resampling_unit"] == "subject"
    assert len(d["temperature_cv"]["folds"]) == 6


def test_tables_and_report_card(fp32, int8):
    card = report_card(fp32, target_accuracy=0.99, target_ece=0.5)
    assert list(card["check"])[0] == "accuracy" and not card.iloc[0]["pass"]   # 0.99 is out of reach
    assert card.iloc[1]["pass"]                                                # ECE <= 0.5
    assert set(card["backend"]) == {"torch-fp32"} and len(card) == 4
    assert (card["low"] <= card["high"]).all()
    s = summary_table([fp32, int8])
    assert list(s["backend"]) == ["torch-fp32", "ort-int8-emulated"]
    assert len(metrics_table(fp32)) == len(fp32.test_before)
    ct = conformal_table(int8)
    assert len(ct) == 4 and (ct["n_test"] == 600).all()
    shift = deployment_shift(fp32, int8)
    assert len(shift) == 4 and set(shift["evaluated_on"]) == {"ort-int8-emulated"}
    shipped = shift[shift["calibration"].str.contains("shipped")]
    assert (shipped["T"] == fp32.temperature.temperature).all()


def test_verdict_says_when_scaling_hurt():
    b = BootstrapCI(0.020, 0.01, 0.03, 0.95, 100, 5, 500)
    a = BootstrapCI(0.045, 0.03, 0.06, 0.95, 100, 5, 500)
    text = temperature_verdict("ort-int8-emulated", b, a, 0.8)
    assert "HURT" in text and "2.50 points" in text and "ort-int8-emulated" in text and "sharpens" in text
    assert "helped" in temperature_verdict("torch-fp32", a, b, 1.3)


def test_rejects_overlapping_subjects_and_mixed_backends():
    rng = np.random.default_rng(1)
    val = _split(rng, "torch-fp32", "val", [1, 2])
    cal = _split(rng, "torch-fp32", "conformal", [2, 3])
    test = _split(rng, "torch-fp32", "test", [4, 5])
    with pytest.raises(ReliabilityInputError, match=r"share subjects \[2\]"):
        analyse_backend(val, cal, test, n_bootstrap=10)
    cal2 = _split(rng, "ort-fp32", "conformal", [3, 6])
    with pytest.raises(ReliabilityInputError, match="one backend"):
        analyse_backend(val, cal2, test, n_bootstrap=10)
    with pytest.raises(ReliabilityInputError, match="subject"):
        SplitLogits("torch-fp32", "val", np.zeros((4, 3)), np.zeros(4, int), np.zeros(3, int))


def test_figures(fp32, int8):
    import matplotlib.pyplot as plt
    fig = plots.reliability_grid({b.backend: {"before T": b.test_before["ece"], "after T": b.test_after["ece"]}
                                  for b in (fp32, int8)})
    assert len(fig.axes) == 8
    fig2 = plots.reliability_grid({"torch-fp32": {"equal mass": fp32.test_after["ece_equal_mass"]}})
    fig3 = plots.set_size_histograms({n: c["test"]["set_size_histogram"] for n, c in fp32.conformal.items()})
    fig4 = plots.subject_coverage({n: c["test"]["per_subject"] for n, c in fp32.conformal.items()}, 0.1,
                                  n_cal=fp32.conformal["LAC marginal"]["predictor"]["n"])
    fig5 = plots.temperature_cv_plot({"torch-fp32": fp32.cv})
    for f in (fig, fig2, fig3, fig4, fig5):
        f.canvas.draw()
        plt.close(f)
    with pytest.raises(ValueError, match="no bins"):
        plots.draw_reliability(plt.gca(), None, fp32.test_after["nll"])

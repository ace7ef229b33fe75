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
    calibrator_table,
    conformal_table,
    deployment_shift,
    judge_coverage,
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
    assert r.temperature.temperature == pytest.approx(2.0, rel=0.15)  # the logits are 2x too sharp
    assert r.test_after["ece"].value < r.test_before["ece"].value
    assert r.test_after["accuracy"].value == r.test_before["accuracy"].value  # T does not move argmax
    assert r.splits["test"]["n_subjects"] == 4 and r.splits["val"]["n"] == 450
    for name in ("LAC marginal", "APS marginal", "LAC Mondrian", "APS Mondrian"):
        c = r.conformal[name]
        assert 0.8 < c["test"]["coverage"] <= 1.0 and c["predictor"]["n"] == 450
    assert r.conformal["LAC marginal"]["expected_spread"]["k"] == 406  # ceil(451 * 0.9)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["backend"] == "torch-fp32" and d["test_after_scaling"]["ece"]["n_bins"] == 15
    assert d["test_after_scaling"]["ece"]["binning"] == "equal_width"
    assert d["bootstrap_intervals"]["ece_after"]["resampling_unit"] == "subject"
    assert len(d["temperature_cv"]["folds"]) == 6


def test_tables_and_report_card(fp32, int8):
    card = report_card(fp32, target_accuracy=0.99, target_ece=0.5)
    assert list(card["check"])[0] == "accuracy" and not card.iloc[0]["pass"]  # 0.99 is out of reach
    assert card.iloc[0]["status"] == "fail" and card.iloc[1]["status"] == "pass"  # ECE <= 0.5
    assert set(card["backend"]) == {"torch-fp32"}
    checks = list(card["check"])
    assert checks[2].startswith("ECE after ") and "selected leaving subjects out" in checks[2]
    for name in (
        "LAC marginal",
        "APS marginal",
        "LAC subject-level",
        "LAC marginal, pooled",
        "LAC subject-level, pooled",
    ):
        row = card[card["check"] == f"coverage {name}"].iloc[0]
        assert row["direction"] in ("under", "over", "within", "trivial")
        assert row["pass"] == (row["status"] != "fail") and row["mean_set_size"] > 0
        assert "empty sets" in row["note"] and "every class" in row["note"]
    assert card["check"].str.startswith("test subjects below").sum() == 2
    assert (card["low"].dropna() <= card["high"].dropna()).all()
    s = summary_table([fp32, int8])
    assert list(s["backend"]) == ["torch-fp32", "ort-int8-emulated"]
    assert {"ECE after selected", "calibrator (selected)", "LAC subject-level coverage"} <= set(s.columns)
    assert len(metrics_table(fp32)) == len(fp32.test_before)
    ct = conformal_table(int8)
    assert len(ct) == 7 and (ct["n_test"] == 600).all()
    assert list(ct["calibration"]).count("pooled, cross-fitted") == 2
    assert (ct[ct["method"] == "LAC marginal, pooled"]["n_cal"] == 900).all()  # val + conformal windows
    cal = calibrator_table(fp32)
    assert cal["chosen"].sum() == 1 and cal.iloc[0]["name"] == "identity"
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

    fig = plots.reliability_grid(
        {b.backend: {"before T": b.test_before["ece"], "after T": b.test_after["ece"]} for b in (fp32, int8)}
    )
    assert len(fig.axes) == 8
    fig2 = plots.reliability_grid({"torch-fp32": {"equal mass": fp32.test_after["ece_equal_mass"]}})
    fig3 = plots.set_size_histograms({n: c["test"]["set_size_histogram"] for n, c in fp32.conformal.items()})
    fig4 = plots.subject_coverage(
        {n: c["test"]["per_subject"] for n, c in fp32.conformal.items()},
        0.1,
        n_cal=fp32.conformal["LAC marginal"]["predictor"]["n"],
    )
    fig5 = plots.temperature_cv_plot({"torch-fp32": fp32.cv})
    for f in (fig, fig2, fig3, fig4, fig5):
        f.canvas.draw()
        plt.close(f)
    with pytest.raises(ValueError, match="no bins"):
        plots.draw_reliability(plt.gca(), None, fp32.test_after["nll"])


# ------------------------------------------------------------------------------------------------
# report card: direction of a coverage miss, set sizes, the bootstrap interval (issue 11)
# ------------------------------------------------------------------------------------------------
def test_report_card_calls_over_coverage_over_not_fail():
    v = judge_coverage(0.9347, 0.918, 0.951, 0.9, mean_set_size=1.4, empty_set_rate=0.0, full_set_rate=0.01, alpha=0.1)
    assert v["status"] == "warn" and v["direction"] == "over" and "over-coverage" in v["note"]
    assert "3.47 points over" in v["note"]
    assert (
        judge_coverage(0.9347, 0.918, 0.951, 0.9, 1.4, 0.0, 0.01, 0.1, conservative_by_design=True)["status"] == "pass"
    )


def test_report_card_all_class_sets_never_pass():
    v = judge_coverage(1.0, 1.0, 1.0, 0.9, mean_set_size=6.0, empty_set_rate=0.0, full_set_rate=1.0, alpha=0.1)
    assert v["status"] == "fail" and v["direction"] == "trivial" and "100.0% sets with every class" in v["note"]
    v2 = judge_coverage(0.97, 0.95, 0.99, 0.9, 2.5, 0.0, 0.2, 0.1)  # over and many all-class sets
    assert v2["status"] == "warn"


def test_report_card_under_within_and_empty_sets():
    under = judge_coverage(0.85, 0.80, 0.88, 0.9, 1.1, 0.02, 0.0, 0.1)
    assert under["status"] == "fail" and under["direction"] == "under" and "5.00 points short" in under["note"]
    within = judge_coverage(0.895, 0.87, 0.92, 0.9, 1.1, 0.02, 0.0, 0.1)
    assert within["status"] == "pass" and within["direction"] == "within" and "below it by 0.50" in within["note"]
    empty = judge_coverage(0.90, 0.87, 0.93, 0.9, 0.86, 0.14, 0.0, 0.1)  # 14% empty sets
    assert empty["status"] == "warn" and "14.0% empty sets" in empty["note"]


def test_report_card_on_too_few_calibration_windows_is_trivial_not_pass():
    rng = np.random.default_rng(3)
    val = _split(rng, "torch-fp32", "val", [1, 2, 3])
    cal = _split(rng, "torch-fp32", "conformal", [4], per_subject=5)  # n = 5 < 9: q = inf at alpha 0.1
    test = _split(rng, "torch-fp32", "test", [7, 8, 9])
    r = analyse_backend(val, cal, test, alpha=0.1, n_bootstrap=30, cv=False)
    row = report_card(r, 0.5, 0.5).set_index("check").loc["coverage LAC marginal"]
    assert row["measured"] == 1.0 and row["full_set_rate"] == 1.0
    assert row["status"] == "fail" and row["direction"] == "trivial" and not row["pass"]


def test_analysis_completes_on_perfectly_separable_validation_subjects():
    """Issue 11: stage 08 crashed when a model classified the validation subjects perfectly."""
    rng = np.random.default_rng(4)

    def sep(split, subjects, wrong=0):
        n = 60 * len(subjects)
        y = rng.integers(0, 4, n)
        z = rng.uniform(-1, 1, (n, 4))
        z[np.arange(n), y] += 25.0
        z[:wrong, :] = z[:wrong, ::-1]  # a few errors on test only
        return SplitLogits("torch-fp32", split, z, y, np.repeat(subjects, 60))

    r = analyse_backend(
        sep("val", [1, 2, 3]), sep("conformal", [4, 5, 6]), sep("test", [7, 8], wrong=3), n_bootstrap=30, seed=0
    )
    assert not r.temperature.identifiable and r.temperature.temperature == 1.0
    assert "not identifiable" in r.verdict
    card = report_card(r, 0.5, 0.5)
    assert "not identifiable" in card.iloc[1]["note"]
    assert json.loads(json.dumps(r.to_dict()))["temperature"]["identifiable"] is False


def test_new_figures(fp32, int8):
    import matplotlib.pyplot as plt

    per = {n: c["test"]["per_subject"] for n, c in fp32.conformal.items() if not c["predictor"]["mondrian"]}
    fig = plots.subject_coverage_spread(per, 0.1, {n: fp32.conformal[n]["test"]["mean_set_size"] for n in per})
    assert len(fig.axes) == 1 and len(fig.axes[0].get_xticklabels()) == len(per)
    fig2 = plots.calibrator_comparison({r.backend: r.selection.candidates for r in (fp32, int8)})
    assert len(fig2.axes) == 4
    for f in (fig, fig2):
        f.canvas.draw()
        plt.close(f)
    with pytest.raises(ValueError, match="at least one"):
        plots.subject_coverage_spread({}, 0.1)


def test_subject_share_row_judged_against_its_binomial_interval():
    from scipy import stats

    from workbench.reliability.report import _subject_share_row, clopper_pearson

    low, high = clopper_pearson(2, 6)
    # the interval's ends are where the binomial tail probabilities reach 2.5%
    assert stats.binom.sf(1, 6, low) == pytest.approx(0.025, abs=1e-6)
    assert stats.binom.cdf(2, 6, high) == pytest.approx(0.025, abs=1e-6)
    assert clopper_pearson(0, 6)[0] == 0.0 and clopper_pearson(6, 6)[1] == 1.0

    def t(k, n):
        return {
            "subject_summary": {
                "subjects_under_target": k,
                "n_subjects": n,
                "share_subjects_under_target": k / n,
                "worst_subject": 14,
                "worst_coverage": 0.82,
            },
            "mean_set_size": 1.0,
            "empty_set_rate": 0.0,
            "full_set_rate": 0.0,
        }

    assert _subject_share_row("ort-int8-emulated", "LAC subject-level", t(1, 6), 0.2, 0.9)["status"] == "pass"
    two = _subject_share_row("ort-int8-emulated", "LAC subject-level", t(2, 6), 0.2, 0.9)
    assert two["status"] == "warn" and two["pass"] and "2 of 6" in two["note"]
    five = _subject_share_row("ort-int8-emulated", "LAC subject-level", t(5, 6), 0.2, 0.9)
    assert five["status"] == "fail" and five["direction"] == "under"

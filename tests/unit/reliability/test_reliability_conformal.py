"""Split conformal prediction (workbench.reliability.conformal): exact quantile, coverage, variants."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.reliability import conformal as C
from workbench.reliability.metrics import ReliabilityInputError, softmax


# ---- the quantile is the exact order statistic ---------------------------------------------------
def test_rank_and_quantile_off_by_one_cases():
    rng = np.random.default_rng(0)
    # n = 9, alpha = 0.1: (n+1)(1-alpha) = 9 exactly -> k = 9 = n -> q is the maximum.
    # (A float 10 * 0.9 rounding up to 9.000...01 would give k = 10 and q = inf: k is computed exactly.)
    s9 = rng.uniform(size=9)
    q, k, n = C.conformal_quantile(s9, 0.1)
    assert (k, n) == (9, 9) and q == s9.max()
    assert q == np.quantile(s9, 0.9, method="higher")  # the idiom agrees here by coincidence
    # n = 8: k = ceil(8.1) = 9 > n -> q = inf (every set is the full label set).
    s8 = rng.uniform(size=8)
    q, k, n = C.conformal_quantile(s8, 0.1)
    assert (k, n) == (9, 8) and q == np.inf
    assert np.isfinite(np.quantile(s8, 0.9, method="higher"))  # the idiom gives a finite q: under-covers
    # n = 11: k = ceil(10.8) = 11 -> q = max; the idiom picks the 10th smallest (one rank too low).
    s11 = rng.uniform(size=11)
    q, k, _ = C.conformal_quantile(s11, 0.1)
    assert k == 11 and q == s11.max()
    assert np.quantile(s11, 0.9, method="higher") == np.sort(s11)[9] < q


@pytest.mark.parametrize(
    "n,alpha,k", [(9, 0.1, 9), (8, 0.1, 9), (99, 0.1, 90), (19, 0.05, 19), (1000, 0.1, 901), (0, 0.1, 1), (29, 0.3, 21)]
)
def test_conformal_rank_exact(n, alpha, k):
    assert C.conformal_rank(n, alpha) == k


def test_quantile_is_kth_smallest_with_ties():
    s = np.array(
        [0.3, 0.1, 0.1, 0.2, 0.9, 0.5, 0.5, 0.7, 0.2, 0.4, 0.6, 0.8, 0.05, 0.95, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85]
    )
    q, k, n = C.conformal_quantile(s, 0.2)  # k = ceil(21 * 0.8) = 17
    assert k == 17 and q == np.sort(s)[16]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_bad_alpha(alpha):
    with pytest.raises(ReliabilityInputError, match="alpha"):
        C.conformal_quantile(np.arange(5.0), alpha)


# ---- coverage on exchangeable synthetic data --------------------------------------------------------
def _synthetic(rng, n, k=5):
    """A deliberately miscalibrated model on exchangeable data: labels from softmax(z), model reports
    softmax(2 z) (over-confident). Conformal coverage must not care."""
    z = rng.normal(size=(n, k)) * 1.5
    y = (np.cumsum(softmax(z), axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return softmax(2 * z), y


@pytest.mark.parametrize("score", ["lac", "aps"])
@pytest.mark.parametrize("n_cal", [50, 199])
def test_marginal_coverage_over_seeds(score, n_cal):
    alpha, seeds, n_test = 0.1, 300, 400
    cov = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        p, y = _synthetic(rng, n_cal + n_test)
        pred = C.calibrate(p[:n_cal], y[:n_cal], alpha, score=score)
        cov.append(C.set_metrics(pred.predict_sets(p[n_cal:]), y[n_cal:])["coverage"])
    mean = float(np.mean(cov))
    se = float(np.std(cov) / np.sqrt(seeds))
    # 1 - alpha <= E[coverage] <= 1 - alpha + 1/(n+1); allow 3 standard errors of the seed average.
    assert mean >= 1 - alpha - 3 * se
    # deterministic APS with a discrete-looking score is conservative but still within the bound here
    assert mean <= 1 - alpha + 1 / (n_cal + 1) + 3 * se
    # and the spread over seeds matches Beta(k, n+1-k) + binomial noise (sanity, loose)
    iv = C.coverage_interval(n_cal, alpha, n_test=n_test)
    inside = np.mean((np.array(cov) >= iv["test_low"]) & (np.array(cov) <= iv["test_high"]))
    assert inside >= 0.88


def test_randomized_aps_coverage_and_needs_rng():
    alpha, n_cal, cov = 0.2, 100, []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        p, y = _synthetic(rng, n_cal + 300)
        pred = C.calibrate(p[:n_cal], y[:n_cal], alpha, score="aps", randomized=True, rng=rng)
        cov.append(C.set_metrics(pred.predict_sets(p[n_cal:], rng=rng), y[n_cal:])["coverage"])
    assert abs(np.mean(cov) - (C.conformal_rank(n_cal, alpha) / (n_cal + 1))) < 0.01
    with pytest.raises(ReliabilityInputError, match="rng"):
        C.aps_scores(np.full((2, 3), 1 / 3), randomized=True)


def test_mondrian_per_class_coverage():
    # class 0 is easy and class 2 hard: marginal LAC under-covers class 2, Mondrian fixes that.
    alpha, k, per_class_marg, per_class_mond = 0.1, 3, [], []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = 1500
        y = rng.integers(0, k, n)
        z = rng.normal(size=(n, k))
        z[np.arange(n), y] += np.array([4.0, 2.0, 0.3])[y]
        p = softmax(z)
        marg = C.calibrate(p[:600], y[:600], alpha, "lac")
        mond = C.calibrate(p[:600], y[:600], alpha, "lac", mondrian=True)
        per_class_marg.append([c["coverage"] for c in C.set_metrics(marg.predict_sets(p[600:]), y[600:])["per_class"]])
        per_class_mond.append([c["coverage"] for c in C.set_metrics(mond.predict_sets(p[600:]), y[600:])["per_class"]])
        assert len(mond.class_info) == k and sum(c["n"] for c in mond.class_info) == 600
        assert len(set(mond.thresholds)) == k and len(set(marg.thresholds)) == 1
    marg_c, mond_c = np.mean(per_class_marg, axis=0), np.mean(per_class_mond, axis=0)
    assert marg_c[2] < 1 - alpha - 0.03
    assert np.all(mond_c >= 1 - alpha - 0.01)


def test_scores_and_sets_by_hand():
    p = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    assert C.lac_scores(p) == pytest.approx(1 - p)
    # APS deterministic: cumulative mass up to and including y in descending order; tie -> class index
    assert C.aps_scores(p) == pytest.approx(np.array([[0.5, 0.8, 1.0], [0.8, 1.0, 0.6]]))
    pred = C.ConformalPredictor("aps", 0.1, False, False, np.full(3, 0.8), 10, 9)
    assert pred.predict_sets(p).tolist() == [[True, True, False], [True, False, True]]
    pred_inf = C.ConformalPredictor("lac", 0.1, False, False, np.full(3, np.inf), 8, 9)
    assert pred_inf.predict_sets(p).all()
    m = C.set_metrics(
        np.array([[True, True, False], [False, False, False]]), np.array([1, 2]), subject=np.array([7, 8])
    )
    assert m["coverage"] == 0.5 and m["set_size_histogram"] == [1, 0, 1, 0] and m["empty_set_rate"] == 0.5
    assert [s["coverage"] for s in m["per_subject"]] == [1.0, 0.0]
    with pytest.raises(ReliabilityInputError, match="3 classes"):
        pred.predict_sets(np.full((1, 4), 0.25))


def test_coverage_interval_beta():
    from scipy import stats

    iv = C.coverage_interval(100, 0.1, n_test=500)
    k = 91
    assert iv["k"] == k and iv["mean"] == pytest.approx(k / 101)
    assert iv["low"] == pytest.approx(stats.beta(k, 10).ppf(0.025))
    assert iv["test_low"] <= iv["low"] < iv["mean"] < iv["high"] <= iv["test_high"]
    assert C.coverage_interval(8, 0.1)["low"] == 1.0


# ---- subject-level split conformal (new subjects) ------------------------------------------------
def _brute_subject_threshold(scores, subject, alpha, delta):
    """Reference written from the definition, differently: the per-subject quantile is the smallest
    score value at which the covered share of that subject's windows reaches 1 - alpha; across subjects,
    the smallest per-subject value at which at least (K + 1)(1 - delta) of K + 1 slots are covered."""
    per = []
    for v in sorted(set(subject.tolist())):
        own = scores[subject == v]
        per.append(min(c for c in own if np.mean(own <= c) >= 1 - alpha - 1e-12))
    kk = len(per)
    for c in sorted(per):
        if sum(p <= c for p in per) >= (kk + 1) * (1 - delta) - 1e-12:
            return c
    return np.inf


@pytest.mark.parametrize("n_subjects,delta", [(4, 0.2), (5, 0.2), (9, 0.1), (8, 0.1), (12, 0.25)])
def test_subject_level_quantile_matches_brute_force(n_subjects, delta):
    rng = np.random.default_rng(n_subjects)
    subject = np.repeat(np.arange(100, 100 + n_subjects), rng.integers(15, 60, n_subjects))
    scores = rng.uniform(size=len(subject)) ** rng.uniform(0.5, 3, n_subjects)[subject - 100]
    q, k, rows = C.subject_level_quantile(scores, subject, 0.1, delta)
    assert q == _brute_subject_threshold(scores, subject, 0.1, delta)
    assert len(rows) == n_subjects and k == C.conformal_rank(n_subjects, delta)
    for r in rows:  # every calibration subject's own coverage at its own quantile is >= 1 - alpha
        own = scores[subject == r["subject"]]
        assert np.mean(own <= r["q"]) >= 0.9


def test_subject_level_guarantee_on_heterogeneous_subjects():
    """Subjects differ in difficulty: plain split conformal leaves many new subjects below 1 - alpha,
    the subject-level threshold leaves at most about delta of them (over many draws of subjects)."""
    rng = np.random.default_rng(5)
    k, alpha, delta = 6, 0.1, 0.2
    share_plain, share_subj = [], []
    for _ in range(300):
        sharp = rng.lognormal(0.0, 0.6, size=9)  # 8 calibration subjects + 1 new one
        subs = []
        for s in range(9):
            z = rng.normal(size=(60, k)) * 1.5
            y = (np.cumsum(softmax(z), 1) > rng.uniform(size=(60, 1))).argmax(1)
            subs.append((softmax(z * sharp[s]), y))  # each subject mis-calibrated its own way
        p = np.concatenate([s[0] for s in subs[:8]])
        y = np.concatenate([s[1] for s in subs[:8]])
        sid = np.repeat(np.arange(8), 60)
        pn, yn = subs[8]
        plain = C.calibrate(p, y, alpha).predict_sets(pn)[np.arange(60), yn].mean()
        subj = C.calibrate_by_subject(p, y, sid, alpha, delta).predict_sets(pn)[np.arange(60), yn].mean()
        share_plain.append(plain < 1 - alpha)
        share_subj.append(subj < 1 - alpha)
    assert np.mean(share_subj) <= delta + 0.05
    assert np.mean(share_plain) > np.mean(share_subj) + 0.1


def test_subject_level_too_few_subjects_gives_full_sets_and_bad_delta():
    rng = np.random.default_rng(6)
    p = softmax(rng.normal(size=(90, 4)))
    y = rng.integers(0, 4, 90)
    pred = C.calibrate_by_subject(p, y, np.repeat([1, 2, 3], 30), 0.1, delta=0.2)  # K = 3 < 4
    assert np.isinf(pred.thresholds).all() and pred.predict_sets(p).all()
    assert pred.name == "LAC subject-level" and pred.to_dict()["delta"] == 0.2
    with pytest.raises(ReliabilityInputError, match="delta"):
        C.calibrate_by_subject(p, y, np.repeat([1, 2, 3], 30), 0.1, delta=1.5)
    with pytest.raises(ReliabilityInputError, match="one id per score"):
        C.subject_level_quantile(np.zeros(5), np.zeros(4), 0.1, 0.2)


def test_subject_coverage_summary_and_full_sets():
    covered = np.array([1, 1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=bool)
    subject = np.array([7, 7, 7, 7, 8, 8, 8, 9, 9, 9])
    s = C.subject_coverage_summary(covered, subject, 0.9)
    assert s["n_subjects"] == 3 and s["worst_subject"] == 8 and s["worst_coverage"] == pytest.approx(1 / 3)
    assert s["subjects_under_target"] == 2 and s["share_subjects_under_target"] == pytest.approx(2 / 3)
    assert s["share_windows_in_subjects_under_target"] == pytest.approx(0.7) and s["max"] == 1.0
    sets = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [1, 1, 1]], dtype=bool)
    m = C.set_metrics(sets, np.array([0, 1, 0, 2]))
    assert m["full_set_rate"] == 0.5 and m["empty_set_rate"] == 0.25 and m["coverage"] == 0.75

"""Subject-level bootstrap (workbench.reliability.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.reliability import bootstrap as B
from workbench.reliability.metrics import ReliabilityInputError


def test_resamples_whole_subjects_not_windows():
    subject = np.repeat([3, 5, 9, 20], [4, 7, 2, 5])  # unequal sizes
    uniq, groups = B.subject_groups(subject)
    assert uniq.tolist() == [3, 5, 9, 20]
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx, picks = B.resample_subject_indices(groups, rng)
        assert len(picks) == 4
        # every draw is a concatenation of complete subjects: the count of each subject's windows in
        # the draw is (times that subject was picked) x (its window count)
        drawn = subject[idx]
        for pos, sub in enumerate(uniq):
            times = int((picks == pos).sum())
            assert (drawn == sub).sum() == times * (subject == sub).sum()
        assert len(idx) == sum(len(groups[p]) for p in picks)


def test_interval_reflects_between_subject_spread():
    # 10 subjects; each subject's windows are all correct or all wrong. Accuracy across subjects varies
    # a lot; a window bootstrap would be narrow (n = 1000), the subject bootstrap must be wide.
    rng = np.random.default_rng(1)
    subject = np.repeat(np.arange(10), 100)
    correct = np.repeat(rng.integers(0, 2, 10), 100).astype(float)
    ci = B.subject_bootstrap(lambda idx: correct[idx].mean(), subject, n_resamples=500, seed=0)
    assert ci.estimate == pytest.approx(correct.mean())
    assert ci.high - ci.low > 0.3
    assert ci.n_subjects == 10 and ci.n == 1000 and ci.to_dict()["resampling_unit"] == "subject"
    # each resample's value can only be a multiple of 1/10 (whole subjects)
    vals = []
    _, groups = B.subject_groups(subject)
    r = np.random.default_rng(0)
    for _ in range(20):
        idx, _ = B.resample_subject_indices(groups, r)
        vals.append(correct[idx].mean() * 10)
    assert np.allclose(vals, np.round(vals))


def test_dict_statistic_and_reproducible():
    subject = np.repeat(np.arange(6), 20)
    x = np.random.default_rng(2).normal(size=120)
    stat = lambda idx: {"mean": x[idx].mean(), "max": x[idx].max()}  # noqa: E731
    a = B.subject_bootstrap(stat, subject, n_resamples=100, seed=4)
    b = B.subject_bootstrap(stat, subject, n_resamples=100, seed=4)
    assert set(a) == {"mean", "max"} and a["mean"].low == b["mean"].low
    assert a["mean"].low <= a["mean"].estimate <= a["mean"].high


def test_errors():
    with pytest.raises(ReliabilityInputError, match="at least 2 subjects"):
        B.subject_bootstrap(lambda idx: 0.0, np.zeros(10, int))
    with pytest.raises(ReliabilityInputError, match="n_resamples"):
        B.subject_bootstrap(lambda idx: 0.0, np.arange(10), n_resamples=0)

"""Quantization calibration set builder: training split only, balance, NHWC layout, JSON, errors."""

import json
from collections import Counter

import numpy as np
import pytest

from workbench.errors import DataError
from workbench.quant.calibset import (
    LAYOUT,
    CalibSetError,
    assert_train_only,
    build_calibset,
    load_calibset,
    save_calibset,
    select_indices,
)

C, S, T = 5, 3, 7  # non-square so a swapped axis cannot pass


@pytest.fixture()
def data():
    """10 subjects x 4 classes; subjects 0-5 train, 6 val, 7 conformal, 8-9 test; uneven cell sizes."""
    rng = np.random.default_rng(0)
    ys, subs = [], []
    for s in range(10):
        for k in range(4):
            n = 3 + (s * 7 + k * 3) % 5 + (6 if k == 0 else 0)  # class 0 over-represented
            ys += [k] * n
            subs += [s] * n
    y, subject = np.array(ys), np.array(subs)
    split = np.select([subject <= 5, subject == 6, subject == 7], ["train", "val", "conformal"], "test")
    X = rng.normal(2.0, 3.0, size=(len(y), C, S, T)).astype(np.float32)
    mean = rng.normal(size=(C, S, 1)).astype(np.float32)
    std = rng.uniform(0.5, 2.0, size=(C, S, 1)).astype(np.float32)
    return dict(X=X, y=y, subject=subject, split=split, mean=mean, std=std)


@pytest.mark.parametrize("strategy", ["random_windows", "stratified"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_only_training_windows_are_used(data, strategy, seed):
    n_train = int((data["split"] == "train").sum())
    idx = select_indices(data["y"], data["subject"], data["split"], strategy, n_train - 3, seed)
    assert set(data["split"][idx]) == {"train"}
    assert not set(data["subject"][idx]) & {6, 7, 8, 9}
    assert len(np.unique(idx)) == len(idx)  # no duplicates


def test_assert_train_only_names_the_leak(data):
    test_i = int(np.flatnonzero(data["split"] == "test")[0])
    with pytest.raises(CalibSetError, match="test"):
        assert_train_only(np.array([0, test_i]), data["split"])


def test_stratified_balances_classes_and_subjects(data):
    idx = select_indices(data["y"], data["subject"], data["split"], "stratified", 48, seed=3)
    cls = Counter(data["y"][idx].tolist())
    assert sorted(cls) == [0, 1, 2, 3] and max(cls.values()) - min(cls.values()) <= 1
    for k in range(4):
        subj = Counter(data["subject"][idx][data["y"][idx] == k].tolist())
        assert sorted(subj) == [0, 1, 2, 3, 4, 5]
        assert max(subj.values()) - min(subj.values()) <= 1
    # random sampling follows the class imbalance instead (class 0 has ~2x the windows)
    rnd = select_indices(data["y"], data["subject"], data["split"], "random_windows", 48, seed=3)
    assert Counter(data["y"][rnd].tolist())[0] > 12


def test_stratified_fills_up_when_a_class_runs_out(data):
    train = data["split"] == "train"
    n_small = min(int(((data["y"] == k) & train).sum()) for k in range(1, 4))
    size = int(train.sum()) - 2
    idx = select_indices(data["y"], data["subject"], data["split"], "stratified", size, seed=0)
    assert len(idx) == size
    assert min(Counter(data["y"][idx].tolist()).values()) >= n_small - 2


def test_too_large_size_names_available_count(data):
    n_train = int((data["split"] == "train").sum())
    with pytest.raises(CalibSetError, match=f"exceeds the {n_train} training windows"):
        build_calibset(
            data["X"], data["y"], data["subject"], data["split"], data["mean"], data["std"], "stratified", n_train + 1
        )


def test_unknown_strategy_and_bad_normaliser(data):
    d = data
    with pytest.raises(CalibSetError, match="unknown strategy"):
        build_calibset(d["X"], d["y"], d["subject"], d["split"], d["mean"], d["std"], "kmeans", 4)
    with pytest.raises(CalibSetError, match=r"expected \(5, 3, 1\)"):
        build_calibset(d["X"], d["y"], d["subject"], d["split"], d["mean"][:, :, 0], d["std"], "stratified", 4)


def test_nhwc_layout_dtype_and_normalisation_exact(data):
    d = data
    cs = build_calibset(d["X"], d["y"], d["subject"], d["split"], d["mean"], d["std"], "random_windows", 10, seed=5)
    idx = np.array(cs.info["indices"])
    assert cs.x_nhwc.shape == (10, S, T, C) and cs.x_nhwc.dtype == np.float32
    n, s, t, c = 7, 2, 5, 4
    want = (d["X"][idx[n], c, s, t] - d["mean"][c, s, 0]) / d["std"][c, s, 0]
    assert cs.x_nhwc[n, s, t, c] == pytest.approx(want, rel=1e-6)
    full = (d["X"][idx] - d["mean"]) / d["std"]
    np.testing.assert_allclose(cs.x_nchw, full, rtol=1e-6)


def test_json_contents_and_roundtrip(data, tmp_path):
    d = data
    cs = build_calibset(
        d["X"],
        d["y"],
        d["subject"],
        d["split"],
        d["mean"],
        d["std"],
        "stratified",
        16,
        seed=1,
        label_names=["a", "b", "c", "d"],
    )
    npy, js = save_calibset(cs, tmp_path / "calibset_nhwc.npy")
    assert js.name == "calibset_nhwc.json"
    info = json.loads(js.read_text())
    assert info["strategy"] == "stratified" and info["size"] == 16 and info["seed"] == 1
    assert info["layout"] == LAYOUT == "NHWC (N, S, T, C)" and info["shape"] == [16, S, T, C]
    assert info["source_split"] == "train"
    assert info["class_counts"] == {"a": 4, "b": 4, "c": 4, "d": 4}
    assert sum(info["subject_counts"].values()) == 16 and set(info["subject_counts"]) <= set("012345")
    np.testing.assert_allclose(info["normalisation"]["mean"], d["mean"].ravel(), rtol=1e-6)
    np.testing.assert_allclose(info["normalisation"]["std"], d["std"].ravel(), rtol=1e-6)
    back = load_calibset(npy)
    assert np.array_equal(back.x_nhwc, cs.x_nhwc) and back.info == info


def test_gaussian_noise_is_labelled_and_uses_no_windows(data):
    d = data
    cs = build_calibset(d["X"], d["y"], d["subject"], d["split"], d["mean"], d["std"], "gaussian_noise", 500, seed=0)
    assert cs.x_nhwc.shape == (500, S, T, C) and cs.x_nhwc.dtype == np.float32
    assert cs.info["indices"] is None and cs.info["class_counts"] is None
    assert "comparison only" in cs.info["note"] and "noise" in cs.info["source_split"]
    assert abs(cs.x_nhwc.mean()) < 0.05 and abs(cs.x_nhwc.std() - 1) < 0.05


def test_seed_reproducible_and_changes_selection(data):
    d = data
    a = select_indices(d["y"], d["subject"], d["split"], "stratified", 12, seed=7)
    b = select_indices(d["y"], d["subject"], d["split"], "stratified", 12, seed=7)
    c = select_indices(d["y"], d["subject"], d["split"], "stratified", 12, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_load_windows_npz_needs_the_split(data, tmp_path):
    from workbench.data.windowset import WindowSet
    from workbench.quant.calibset import load_windows_npz

    d = data
    ws = WindowSet(
        X=d["X"],
        y=d["y"],
        subject=d["subject"],
        label_names=list("abcd"),
        channel_names=[f"c{i}" for i in range(C)],
        site_names=[f"s{i}" for i in range(S)],
        sample_rate_hz=50.0,
        source="synthetic",
        provenance={"kind": "synthetic"},
    )
    ws.save(tmp_path / "w.npz", split=d["split"])
    w = load_windows_npz(tmp_path / "w.npz")
    assert np.array_equal(w["split"], d["split"]) and w["label_names"] == list("abcd")
    ws.save(tmp_path / "nosplit.npz")
    with pytest.raises(DataError, match="no .split. array"):
        load_windows_npz(tmp_path / "nosplit.npz")

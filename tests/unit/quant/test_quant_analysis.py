"""Flip metrics, boundary margin, SQNR and codebook statistics on inputs with known answers."""

import math

import numpy as np
import pytest
from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

from workbench.quant.analysis import (
    boundary_margin,
    code_flip_rate,
    codebook_stats,
    compare_npu_outputs,
    cosine,
    level_flip_rate,
    levels_to_indices,
    margin_histogram,
    per_dim_flip_rate,
    select_eval_indices,
    sqnr_db,
)


def test_sqnr_known_signal_noise_pair():
    x = np.full(100, 2.0)  # ||x|| = 20
    noise = np.zeros(100)
    noise[:4] = 1.0  # ||e|| = 2  -> 20 log10(10) = 20 dB
    assert sqnr_db(x, x + noise) == pytest.approx(20.0, abs=1e-12)
    noise[:4] = 0.2  # ||e|| = 0.4 -> 20 log10(50)
    assert sqnr_db(x, x - noise) == pytest.approx(20 * math.log10(50), abs=1e-12)
    assert sqnr_db(x, x) == math.inf


def test_sqnr_matches_onnxruntime_implementation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    xh = x + rng.normal(scale=0.03, size=x.shape).astype(np.float32)
    assert sqnr_db(x, xh) == pytest.approx(compute_signal_to_quantization_noice_ratio(x, xh), rel=1e-6)


def test_sqnr_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shapes"):
        sqnr_db(np.zeros(3), np.zeros(4))


def test_cosine():
    assert cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert cosine([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)


def test_flip_rates_three_of_twenty():
    a = np.zeros((4, 5))
    b = a.copy()
    b[0, 1] = 1
    b[0, 3] = -1
    b[2, 4] = 2  # 3 of 20 entries in 2 of 4 windows
    assert level_flip_rate(a, b) == pytest.approx(0.15)
    assert code_flip_rate(a, b) == pytest.approx(0.5)
    np.testing.assert_allclose(per_dim_flip_rate(a, b), [0, 0.25, 0, 0.25, 0.25])
    assert level_flip_rate(a, a) == 0.0 and code_flip_rate(a, a) == 0.0
    with pytest.raises(ValueError, match="equal shape"):
        level_flip_rate(a, b[:, :4])


def test_boundary_margin_values():
    b = np.array([0.0, 0.49, 0.25, -1.4, 2.5, -3.0, 1.75])
    np.testing.assert_allclose(boundary_margin(b), [0.5, 0.01, 0.25, 0.1, 0.0, 0.5, 0.25], atol=1e-12)
    assert boundary_margin(np.linspace(-4, 4, 1001)).min() >= 0
    assert boundary_margin(np.linspace(-4, 4, 1001)).max() <= 0.5


def test_margin_histogram_counts_flips_per_bin():
    margin = np.array([0.01, 0.02, 0.03, 0.35, 0.45, 0.49])
    flipped = np.array([True, True, False, False, True, False])
    h = margin_histogram(margin, flipped, bins=5)  # bins of width 0.1
    assert h["entries"].tolist() == [3, 0, 0, 1, 2]
    assert h["flipped"].tolist() == [2, 0, 0, 0, 1]
    assert h["flip_rate"].iloc[0] == pytest.approx(2 / 3) and np.isnan(h["flip_rate"].iloc[1])


def test_levels_to_indices_matches_the_model_fsq():
    import torch

    from workbench.model.fsq import FSQ

    levels = [8, 6, 5, 5, 4]
    fsq = FSQ(levels)
    all_lv = fsq.all_levels().numpy()
    ours = levels_to_indices(all_lv.astype(np.float32), levels)
    ref = fsq.codes_to_indices(torch.as_tensor(all_lv)).numpy()
    assert np.array_equal(ours, ref) and np.array_equal(ours, np.arange(8 * 6 * 5 * 5 * 4))
    with pytest.raises(ValueError, match="out of range"):
        levels_to_indices(np.array([[4, 0, 0, 0, 0]]), levels)


def test_codebook_stats_against_model_perplexity():
    from workbench.model.fsq import codebook_usage, perplexity

    idx = np.array([0, 0, 1, 1, 2, 2, 2, 2, 7])
    st = codebook_stats(idx, 16)
    assert st["unique_codes"] == 4 and st["usage"] == pytest.approx(4 / 16)
    assert st["usage"] == pytest.approx(codebook_usage(idx, 16))
    assert st["perplexity"] == pytest.approx(perplexity(idx))


def test_compare_npu_outputs_known_flips():
    levels = [5, 5]
    # FP32 bound values; INT8 nudges: window 0 dim 0 crosses 0.5 (flip), window 1 stays, window 2 dim 1 flips.
    fp = np.array([[0.45, 1.0], [1.2, -0.8], [0.0, -1.48], [2.0, 2.0]], np.float32)
    q = fp + np.array([[0.1, 0.0], [0.05, 0.0], [0.0, -0.04], [0.0, 0.0]], np.float32)
    W = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]], np.float32)

    def post(npu):
        lv = np.rint(npu)
        return lv, lv @ W

    rep = compare_npu_outputs(fp, q, post, lambda z: z, levels, y=np.array([0, 0, 1, 0]))
    s = rep.summary
    assert s["level_flip_rate"] == pytest.approx(2 / 8) and s["code_flip_rate"] == pytest.approx(2 / 4)
    assert s["backend"] == "ort-int8-emulated" and s["reference_backend"] == "ort-fp32"
    assert s["sqnr_db"] == pytest.approx(sqnr_db(fp, q))
    assert rep.per_dim["level_flip_rate"].tolist() == [0.25, 0.25]
    assert s["flipped_margin_max"] == pytest.approx(0.05, abs=1e-6)  # 0.45 and -1.48 -> margins 0.05, 0.02
    assert rep.margin_hist["flipped"].sum() == 2
    assert {"accuracy_fp32", "accuracy_int8", "accuracy_change"} <= set(s)


def test_select_eval_indices_defaults_to_validation_and_caps_within_the_split():
    split = np.array(["train"] * 5 + ["test"] * 10 + ["val"] * 3 + ["test"] * 4)
    assert select_eval_indices(split).tolist() == [15, 16, 17]  # selection happens on validation
    all_test = select_eval_indices(split, split_name="test")
    assert all_test.tolist() == list(range(5, 15)) + list(range(18, 22))
    capped = select_eval_indices(split, cap=6, seed=1, split_name="test")
    assert len(capped) == 6 and set(capped) <= set(all_test) and np.all(np.diff(capped) > 0)
    assert np.array_equal(capped, select_eval_indices(split, cap=6, seed=1, split_name="test"))
    assert len(select_eval_indices(split, cap=100, split_name="test")) == 14
    with pytest.raises(ValueError, match="no 'test' windows"):
        select_eval_indices(np.array(["train", "val"]), split_name="test")


def test_split_windows_normalises_one_split():
    from workbench.data import Normalizer
    from workbench.quant.analysis import split_windows

    X = np.arange(6 * 2 * 1 * 3, dtype=np.float32).reshape(6, 2, 1, 3)
    w = {"X": X, "y": np.arange(6), "split": np.array(["train", "val", "test", "val", "train", "test"])}
    norm = Normalizer(mean=np.full((2, 1, 1), 1.0, np.float32), std=np.full((2, 1, 1), 2.0, np.float32))
    x, y = split_windows(w, norm, "val")
    assert y.tolist() == [1, 3] and x.dtype == np.float32
    np.testing.assert_allclose(x, (X[[1, 3]] - 1.0) / 2.0)
    assert split_windows(w, norm, "test", cap=1, seed=0)[1].tolist() in ([2], [5])

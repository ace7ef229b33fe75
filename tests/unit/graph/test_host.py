"""The numpy host post-processor against host.onnx (ONNX Runtime): random inputs and exact .5 ties."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from test_export import SHAPE, tiny_model

from workbench.graph.export import export_onnx, ort_session, with_extra_outputs
from workbench.graph.host import HostError, HostPostprocessor, compare_with_host_onnx, row_scaled_ulp, ulp_distance
from workbench.graph.split import host_onnx_outputs, split_model

LEVELS = [8, 5, 4]
MAX_LOGIT_ULP = 4  # in ulps of each row's largest logit: Gemm summation order differs (MLAS vs BLAS)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    d = tmp_path_factory.mktemp("host")
    m = tiny_model()
    s = export_onnx(m, d / "model.onnx", SHAPE)
    dyn = export_onnx(m, d / "model_dynamic.onnx", SHAPE, dynamic_batch=True)
    out = {}
    for cut in ("after_bound", "after_projection"):
        info = split_model(s, dyn, d / cut, cut=cut, fsq_levels=LEVELS)
        post = HostPostprocessor.from_files(d / cut / "split.json", d / cut / "host_weights.npz")
        out[cut] = (info, post, d / cut / "host.onnx")
    return out


def _half_even(values: np.ndarray) -> np.ndarray:
    """Independent reference: Python's round() rounds half to even on exact floats."""
    return np.array([round(float(v)) for v in values.ravel()], dtype=np.float32).reshape(values.shape)


@pytest.mark.parametrize("cut", ["after_bound", "after_projection"])
def test_matches_host_onnx_on_random_npu_outputs(splits, cut):
    info, post, host = splits[cut]
    rng = np.random.default_rng(3)
    scale = 3.0 if cut == "after_bound" else 1.5
    x = (rng.normal(size=(5000, 3)) * scale).astype(np.float32)
    lv_ref, lg_ref = host_onnx_outputs(host, info, x)
    rep = compare_with_host_onnx(post, lv_ref, lg_ref, x)
    assert rep["levels_bitwise"], rep
    assert rep["logits_max_row_ulp"] <= MAX_LOGIT_ULP, rep
    assert len(np.unique(lv_ref[:, 0])) >= 8  # at least every level of the L=8 dimension
    one_lv, one_lg = post(x[:1])  # batch 1 takes the same path
    assert np.array_equal(one_lv, lv_ref[:1]) and row_scaled_ulp(one_lg, lg_ref[:1]).max() <= MAX_LOGIT_ULP


def test_exact_ties_after_bound_round_half_to_even(splits):
    info, post, host = splits["after_bound"]
    ties = np.arange(-4.5, 4.0, 1.0, dtype=np.float32)  # -4.5, -3.5, ..., 3.5: all exact
    x = np.stack([ties, ties[::-1], ties + 0.0], axis=1).astype(np.float32)
    lv, lg = post(x)
    lv_ref, lg_ref = host_onnx_outputs(host, info, x)
    np.testing.assert_array_equal(lv, _half_even(x))
    np.testing.assert_array_equal(lv, lv_ref)
    assert row_scaled_ulp(lg, lg_ref).max() <= MAX_LOGIT_ULP
    # and not round-half-away-from-zero (C roundf), which would give 3 for 2.5
    assert lv[np.flatnonzero(x[:, 0] == 2.5)[0], 0] == 2.0


def test_exact_ties_after_projection(splits):
    """Projections z whose bound tanh(z+shift)*half_l-offset lands exactly on k + 0.5 in both ORT and
    numpy (found by searching float32 neighbours of the analytic inverse); levels must agree."""
    info, post, host = splits["after_projection"]
    steps = info["host_program"]
    sub_out = next(s["output"] for s in steps if s["op"] == "Sub")
    sess = ort_session(with_extra_outputs(onnx.load(str(host)), [sub_out]))
    with np.load(host.parent / "host_weights.npz") as z:
        w = {k: z[k] for k in z.files}
    shift, half_l, offset = w["00_B"], w["02_B"], w["03_B"]
    rows = []
    for j, L in enumerate(LEVELS):
        lo = -(L // 2)
        for k in range(lo, lo + L - 1):  # thresholds between consecutive levels
            target = k + 0.5
            z0 = np.arctanh((target + float(offset[j])) / float(half_l[j])) - float(shift[j])
            cand = np.float32(z0) + np.arange(-200, 201, dtype=np.float32) * np.spacing(np.float32(z0))
            zz = np.zeros((len(cand), 3), np.float32)
            zz[:, j] = cand
            b_ort = sess.run([sub_out], {info["host_input_name"]: zz})[0][:, j]
            b_np = post.intermediates(zz)[3][:, j]
            hit = np.flatnonzero((b_ort == target) & (b_np == target))
            rows.extend(zz[hit])
    assert len(rows) >= 5, "no exact ties found: the search window is too small"
    x = np.array(rows, np.float32)
    lv, _ = post(x)
    lv_ref, _ = host_onnx_outputs(host, info, x)
    np.testing.assert_array_equal(lv, lv_ref)
    b = post.intermediates(x)[3]
    np.testing.assert_array_equal(lv, _half_even(b))


def test_accepts_nhwc_and_rejects_wrong_width(splits):
    _, post, _ = splits["after_bound"]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    a = post(x)
    b = post(x.reshape(4, 1, 1, 3))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[1].shape == (4, 4) and a[0].dtype == np.float32
    with pytest.raises(HostError, match=r"expected \(N, 3\)"):
        post(np.zeros((4, 5), np.float32))
    lv64, _ = post(x.astype(np.float64))  # converted to float32 first
    assert np.array_equal(lv64, a[0])


def test_outputs_are_fresh_arrays(splits):
    _, post, _ = splits["after_bound"]
    x = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    lv1, lg1 = post(x)
    keep = lg1.copy()
    post(x * 2.0)
    assert np.array_equal(lg1, keep)  # not overwritten by the next call


def test_missing_files_and_program_errors(tmp_path, splits):
    with pytest.raises(HostError, match="run stage 04"):
        HostPostprocessor.from_files(tmp_path / "split.json", tmp_path / "host_weights.npz")
    info, _, host = splits["after_bound"]
    bad = dict(info)
    bad.pop("host_program")
    (tmp_path / "split.json").write_text(json.dumps(bad))
    (tmp_path / "host_weights.npz").write_bytes((host.parent / "host_weights.npz").read_bytes())
    with pytest.raises(HostError, match="host_program"):
        HostPostprocessor.from_files(tmp_path / "split.json", tmp_path / "host_weights.npz")
    with pytest.raises(HostError, match="no Round"):
        HostPostprocessor([{"op": "Relu", "node": "r"}], {})


def test_ulp_distance_counts_representable_steps():
    a = np.array([1.0, -1.0, 0.0, -0.0], np.float32)
    b = np.nextafter(a, np.float32(np.inf)).astype(np.float32)
    assert ulp_distance(a, b).tolist() == [1, 1, 1, 1]
    assert ulp_distance(np.float32([0.0]), np.float32([-0.0])).tolist() == [0]
    assert ulp_distance(np.float32([-1e-45]), np.float32([1e-45])).tolist() == [2]


def test_linear_head_model_round_trips(tmp_path):
    """head_hidden=0: the host program is Round -> Div -> Gemm (no Relu), and still matches host.onnx."""
    import torch

    from workbench.model.network import FSQClassifier, ModelConfig

    torch.manual_seed(2)
    m = FSQClassifier(
        ModelConfig(
            in_channels=2,
            sites=3,
            window=16,
            num_classes=5,
            encoder_channels=[4],
            kernel_time=3,
            fsq_levels=[7, 6],
            head_hidden=0,
        )
    ).eval()
    shape = (1, 2, 3, 16)
    s = export_onnx(m, tmp_path / "m.onnx", shape)
    d = export_onnx(m, tmp_path / "md.onnx", shape, dynamic_batch=True)
    info = split_model(s, d, tmp_path / "split", cut="after_bound", fsq_levels=[7, 6])
    assert [st["op"] for st in info["host_program"]] == ["Round", "Div", "Gemm"]
    post = HostPostprocessor.from_files(tmp_path / "split" / "split.json", tmp_path / "split" / "host_weights.npz")
    x = (np.random.default_rng(5).normal(size=(700, 2)) * 2.5).astype(np.float32)  # > chunk_rows: chunked path
    lv_ref, lg_ref = host_onnx_outputs(tmp_path / "split" / "host.onnx", info, x)
    lv, lg = post(x)
    assert np.array_equal(lv, lv_ref) and row_scaled_ulp(lg, lg_ref).max() <= MAX_LOGIT_ULP
    assert lg.shape == (700, 5)


def test_row_scaled_ulp_ignores_cancellation_near_zero():
    ref = np.array([[8.0, 1e-9]], np.float32)
    got = np.array([[8.0, 0.0]], np.float32)
    assert ulp_distance(got, ref).max() > 1000  # plain ulp explodes near zero
    assert row_scaled_ulp(got, ref).max() < 0.01  # but it is far below one ulp of 8.0
    got2 = np.array([[np.nextafter(np.float32(8.0), np.float32(9.0)), 1e-9]], np.float32)
    assert row_scaled_ulp(got2, ref).max() == 1.0

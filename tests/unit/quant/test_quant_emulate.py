"""INT8 emulation path (ORT static QDQ), per-layer SQNR, sensitivity and the comparison table.

Small hand-built ONNX graphs for the mechanics, plus one test on the smoke-sized FSQClassifier exported
and split with workbench.graph, post-processed by the shared HostPostprocessor.
"""

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.quant.analysis import cosine, per_layer_sqnr
from workbench.quant.calibset import CalibSet
from workbench.quant.compare import CutModel, recommend, recommendation_text, run_comparison
from workbench.quant.emulate import (
    ArrayCalibrationReader,
    QuantError,
    count_qdq,
    make_batch_dynamic,
    output_quantization,
    quantize_npu,
    run_onnx,
)
from workbench.quant.sensitivity import alls_lines, hn_layer_guesses, layer_sensitivity, sixteen_bit_candidates

C, S, T = 3, 2, 20
LEVELS = [8, 6, 5, 5, 4]


def _fsq_consts(levels, eps=1e-3):
    L = np.asarray(levels, np.float64)
    half_l = (L - 1) * (1 + eps) / 2
    offset = np.where(L % 2 == 0, 0.5, 0.0)
    return half_l.astype(np.float32), offset.astype(np.float32), np.arctanh(offset / half_l).astype(np.float32)


def tiny_npu(path, batch="N", seed=0):
    """Conv -> Relu -> site-mixing Conv -> Relu -> GAP -> Flatten -> Gemm -> FSQ bound (after_bound cut)."""
    rng = np.random.default_rng(seed)
    D = len(LEVELS)
    half_l, offset, shift = _fsq_consts(LEVELS)
    arrays = {
        "w1": rng.normal(0, 0.4, (8, C, 1, 5)),
        "b1": rng.normal(0, 0.1, 8),
        "w2": rng.normal(0, 0.3, (8, 8, S, 1)),
        "b2": rng.normal(0, 0.1, 8),
        "wp": rng.normal(0, 0.8, (D, 8)),
        "bp": rng.normal(0, 0.1, D),
        "shift": shift,
        "half_l": half_l,
        "offset": offset,
    }
    inits = [nh.from_array(np.asarray(a, np.float32), n) for n, a in arrays.items()]
    nodes = [
        h.make_node("Conv", ["imu", "w1", "b1"], ["c1"], name="/enc/conv1", strides=[1, 2], pads=[0, 2, 0, 2]),
        h.make_node("Relu", ["c1"], ["r1"], name="/enc/relu1"),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="/enc/mix"),
        h.make_node("Relu", ["c2"], ["r2"], name="/enc/relu2"),
        h.make_node("GlobalAveragePool", ["r2"], ["gap"], name="/pool"),
        h.make_node("Flatten", ["gap"], ["flat"], name="/flatten"),
        h.make_node("Gemm", ["flat", "wp", "bp"], ["proj"], name="/project/Gemm", transB=1),
        h.make_node("Add", ["proj", "shift"], ["a"], name="/fsq/Add"),
        h.make_node("Tanh", ["a"], ["t"], name="/fsq/Tanh"),
        h.make_node("Mul", ["t", "half_l"], ["m"], name="/fsq/Mul"),
        h.make_node("Sub", ["m", "offset"], ["bound"], name="/fsq/Sub"),
    ]
    g = h.make_graph(
        nodes,
        "tiny",
        [h.make_tensor_value_info("imu", TP.FLOAT, [batch, C, S, T])],
        [h.make_tensor_value_info("bound", TP.FLOAT, [batch, D])],
        inits,
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def rint_post(npu):
    lv = np.rint(npu)
    return lv, lv @ np.arange(len(LEVELS) * 3, dtype=np.float32).reshape(len(LEVELS), 3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(1)
    return {
        "dir": d,
        "model": tiny_npu(d / "npu_dynamic.onnx"),
        "calib": rng.normal(size=(64, C, S, T)).astype(np.float32),
        "eval": rng.normal(size=(200, C, S, T)).astype(np.float32),
    }


def test_int8_model_is_qdq_and_close_to_fp32(tiny):
    out = tiny["dir"] / "int8.onnx"
    info = quantize_npu(tiny["model"], out, tiny["calib"])
    assert info["backend"] == "ort-int8-emulated" and info["output_bits"] == 8
    n = count_qdq(out)
    assert n["QuantizeLinear"] > 0 and n["DequantizeLinear"] > 0
    oq = output_quantization(out)
    assert oq["tensor"] == "bound" and oq["dtype"] == "uint8" and oq["bits"] == 8
    ref, q = run_onnx(tiny["model"], tiny["eval"]), run_onnx(out, tiny["eval"])
    assert q.shape == ref.shape == (200, len(LEVELS))
    assert cosine(ref, q) > 0.99
    assert 0 < np.abs(ref - q).max() < 0.5  # quantized, but not broken


def test_weights_per_channel_int8_activations_uint8(tiny):
    out = tiny["dir"] / "int8_pc.onnx"
    quantize_npu(tiny["model"], out, tiny["calib"])
    m = onnx.load(str(out))
    inits = {i.name: nh.to_array(i) for i in m.graph.initializer}
    conv_w_dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w1")]
    assert len(conv_w_dq) == 1
    assert inits[conv_w_dq[0].input[0]].dtype == np.int8
    assert inits[conv_w_dq[0].input[1]].shape == (8,)  # one scale per output channel
    act_zp = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(z.dtype == np.uint8 for z in act_zp)
    # the FSQ bound ops are quantized too (the NPU quantizes every activation)
    quantized_inputs = {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    assert {"t", "m"} <= quantized_inputs
    assert output_quantization(out)["quantize_node"] == "bound_QuantizeLinear"


def test_16bit_output_override(tiny):
    out8, out16 = tiny["dir"] / "o8.onnx", tiny["dir"] / "o16.onnx"
    quantize_npu(tiny["model"], out8, tiny["calib"])
    info = quantize_npu(tiny["model"], out16, tiny["calib"], output_16bit=True)
    q8, q16 = output_quantization(out8), output_quantization(out16)
    assert info["output_bits"] == 16
    assert q16["dtype"] == "uint16" and q16["bits"] == 16
    assert q16["scale"] < q8["scale"] / 100  # ~256x finer step
    # other activations stay 8-bit
    m = onnx.load(str(out16))
    inits = {i.name: nh.to_array(i) for i in m.graph.initializer}
    zps = [inits[n.input[2]].dtype for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert zps.count(np.dtype(np.uint16)) == 1 and zps.count(np.dtype(np.uint8)) >= 5


def test_calibration_method_and_bad_input(tiny):
    with pytest.raises(QuantError, match="calibrate_method"):
        quantize_npu(tiny["model"], tiny["dir"] / "x.onnx", tiny["calib"], calibrate_method="Magic")
    with pytest.raises(QuantError, match="4-D NCHW"):
        ArrayCalibrationReader(np.zeros((4, C, T), np.float32), "imu")
    info = quantize_npu(tiny["model"], tiny["dir"] / "pct.onnx", tiny["calib"], calibrate_method="Percentile")
    assert info["calibrate_method"] == "Percentile"


def test_make_batch_dynamic(tiny):
    static = tiny_npu(tiny["dir"] / "static.onnx", batch=1)
    dyn = make_batch_dynamic(static, tiny["dir"] / "dyn.onnx")
    out = run_onnx(dyn, tiny["eval"][:7], batch_size=7)
    np.testing.assert_allclose(out, run_onnx(tiny["model"], tiny["eval"][:7]), rtol=1e-5, atol=1e-6)
    # a static batch-1 model still runs (one window at a time)
    assert run_onnx(static, tiny["eval"][:3]).shape == (3, len(LEVELS))


def test_per_layer_sqnr(tiny):
    out = tiny["dir"] / "int8_l.onnx"
    quantize_npu(tiny["model"], out, tiny["calib"])
    df = per_layer_sqnr(tiny["model"], out, tiny["eval"][:64], tiny["dir"] / "dbg")
    assert {"tensor", "xmodel_sqnr_db", "qdq_sqnr_db", "backend"} <= set(df.columns)
    # Relu after Conv is folded into the activation quantization (as the DFC fuses it): tensor r1
    assert {"imu", "r1", "proj", "bound"} <= set(df.tensor)
    assert df.tensor.iloc[0] == "imu" and df.tensor.iloc[-1] == "bound"  # graph order
    assert np.isfinite(df.xmodel_sqnr_db).all() and (df.xmodel_sqnr_db > 5).all()


def test_hn_layer_guesses_fuse_relu_and_number_kinds(tiny):
    g = hn_layer_guesses(tiny["model"])
    assert g["/enc/conv1"] == "conv1" and g["/enc/relu1"] == "conv1"
    assert g["/enc/mix"] == "conv2" and g["/enc/relu2"] == "conv2"
    assert g["/pool"] == "avgpool1" and g["/flatten"] == "(folded)" and g["/project/Gemm"] == "fc1"
    assert (g["/fsq/Add"], g["/fsq/Tanh"], g["/fsq/Mul"], g["/fsq/Sub"]) == (
        "ew_add1",
        "activation1",
        "ew_mult1",
        "ew_sub1",
    )


def test_layer_sensitivity_and_alls_lines(tiny):
    df = layer_sensitivity(tiny["model"], tiny["calib"], tiny["eval"], rint_post, tiny["dir"] / "sens", progress=False)
    assert len(df) == 11 and set(df.backend) == {"ort-int8-emulated"}
    full = df.code_flip_all_int8.iloc[0]
    assert full > 0  # the tiny model does flip codes
    np.testing.assert_allclose(df.code_flip_reduction_if_kept, full - df.code_flip_all_but_this_int8)
    assert (df.code_flip_only_this_int8 <= 1).all() and df["rank"].tolist() == list(range(1, 12))
    # quantizing only the output-producing Sub adds its output step and nothing else
    assert df[df.produces_npu_output].node.tolist() == ["/fsq/Sub"]
    sub = df.set_index("node").loc["/fsq/Sub"]
    assert sub.code_flip_only_this_int8 <= full
    cand = sixteen_bit_candidates(df, top_k=2)
    lines = alls_lines(cand, net_name="tiny")
    assert len(lines) == len(cand) <= 2
    for line, (_, r) in zip(lines, cand.iterrows()):
        assert line.startswith(f"quantization_param({r.hn_layer_guess}, precision_mode=a16_w16)")
        assert "get_hn_dict" in line and r.node in line


def test_run_comparison_and_recommendation(tiny):
    rng = np.random.default_rng(3)
    sets = {
        ("random_windows", 32): CalibSet(np.transpose(tiny["calib"][:32], (0, 2, 3, 1)).copy(), {}),
        ("gaussian_noise", 32): CalibSet((rng.normal(size=(32, S, T, C)) * 4).astype(np.float32), {}),
    }
    cm = CutModel("after_bound", tiny["model"], rint_post, lambda z: z)
    df = run_comparison([cm], sets, tiny["eval"], np.zeros(200, np.int64), LEVELS, tiny["dir"] / "cmp", progress=False)
    assert len(df) == 4 and set(df.output_bits) == {8, 16} and set(df.backend) == {"ort-int8-emulated"}
    assert df.real_data.tolist().count(True) == 2
    rec = recommend(df)
    assert rec["best"]["code_flip_rate"] == df.code_flip_rate.min()
    ties = df[df.code_flip_rate == df.code_flip_rate.min()]
    assert rec["best"]["level_flip_rate"] == ties.level_flip_rate.min()
    assert "Lowest code-flip rate" in recommendation_text(rec)


def test_recommend_claims_on_constructed_table():
    rows = []
    for cut, cut_f in (("after_bound", 1.0), ("after_projection", 3.0)):
        for strategy, s_f in (("gaussian_noise", 4.0), ("random_windows", 1.2), ("stratified", 1.0)):
            for bits, b_f in ((8, 1.0), (16, 0.2)):
                rows.append(
                    dict(
                        cut=cut,
                        strategy=strategy,
                        calib_size=64,
                        output_bits=bits,
                        code_flip_rate=0.01 * cut_f * s_f * b_f,
                        prediction_flip_rate=0.0,
                    )
                )
    df = pd.DataFrame(rows)
    rec = recommend(df)
    assert (rec["best"]["cut"], rec["best"]["strategy"], rec["best"]["output_bits"]) == (
        "after_bound",
        "stratified",
        16,
    )
    c = rec["claims"]
    assert c["real_calibration_far_fewer_flips_than_noise"]["supported"]
    assert c["real_calibration_far_fewer_flips_than_noise"]["median_ratio_real_over_noise"] == pytest.approx(0.25)
    assert c["output_16bit_removes_most_flips"]["median_share_removed"] == pytest.approx(0.8)
    assert c["cut_kind_matters"]["supported"]
    # same numbers for both cuts: the cut does not matter
    flat = df.copy()
    flat.loc[flat.cut == "after_projection", "code_flip_rate"] = flat.loc[
        flat.cut == "after_bound", "code_flip_rate"
    ].values
    assert not recommend(flat)["claims"]["cut_kind_matters"]["supported"]


def test_smoke_model_export_split_quantize(tmp_path):
    """The real path: FSQClassifier (smoke size) -> export -> split -> INT8 -> HostPostprocessor."""
    import torch

    from workbench.graph.export import export_onnx
    from workbench.graph.host import HostPostprocessor
    from workbench.graph.split import split_model
    from workbench.model import FSQClassifier, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(
        in_channels=9, sites=2, window=100, num_classes=6, encoder_channels=[8, 16], fsq_levels=LEVELS, head_hidden=16
    )
    model = FSQClassifier(cfg).eval()
    export_onnx(model, tmp_path / "model.onnx", (1, 9, 2, 100))
    export_onnx(model, tmp_path / "model_dynamic.onnx", (1, 9, 2, 100), dynamic_batch=True)
    info = split_model(
        tmp_path / "model.onnx",
        tmp_path / "model_dynamic.onnx",
        tmp_path / "split",
        cut="after_bound",
        fsq_levels=LEVELS,
    )
    post = HostPostprocessor.from_files(tmp_path / "split" / "split.json", tmp_path / "split" / "host_weights.npz")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 9, 2, 100)).astype(np.float32)
    npu = tmp_path / "split" / "npu_dynamic.onnx"
    quantize_npu(npu, tmp_path / "npu_int8.onnx", x[:32], output_16bit=True)
    assert output_quantization(tmp_path / "npu_int8.onnx")["tensor"] == info["npu_output_tensor"]
    ref, q = run_onnx(npu, x[32:]), run_onnx(tmp_path / "npu_int8.onnx", x[32:])
    lv_ref, logits_ref = post(ref)
    lv_q, _ = post(q)
    assert lv_q.shape == (64, len(LEVELS)) and logits_ref.shape == (64, 6)
    assert cosine(ref, q) > 0.95
    # the full model's own levels equal the host's levels on the FP32 NPU output
    with torch.no_grad():
        parts = model.forward_parts(torch.from_numpy(x[32:]))
    assert (parts["levels"].numpy() == lv_ref).mean() > 0.999
    # the other cut: re-split, and the FSQ bound used for margins reproduces the after_bound NPU output
    from workbench.quant.compare import cut_model_from_split, other_cut_model

    bound_cut = cut_model_from_split(tmp_path / "split")
    proj_cut = other_cut_model(
        tmp_path / "model.onnx",
        tmp_path / "model_dynamic.onnx",
        "after_projection",
        ["Round"],
        LEVELS,
        tmp_path / "proj",
    )
    assert (bound_cut.cut, proj_cut.cut) == ("after_bound", "after_projection")
    proj = run_onnx(proj_cut.npu_model, x[32:])
    np.testing.assert_allclose(proj_cut.bound_of(proj), ref, atol=1e-5)
    assert (proj_cut.postprocess(proj)[0] == lv_ref).mean() > 0.999
    np.testing.assert_array_equal(bound_cut.bound_of(ref), ref)

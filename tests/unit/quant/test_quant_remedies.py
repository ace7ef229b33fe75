"""Issue 14 remedies: input equalization folded into the first Conv (exact in FP32), clipping, 16-bit
plans in ONNX Runtime, the ladder's pick on validation windows, attribution, the host transform.

Graphs are built by hand here (not by our exporter), plus one exported FSQClassifier.
"""

import json

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.errors import QuantError
from workbench.quant.emulate import output_quantization, quantize_npu, run_onnx
from workbench.quant.remedies import (
    LADDER,
    RUNG_NAMES,
    build_remedy,
    clip_range,
    deploy_graph,
    first_conv,
    flip_attribution,
    flips_per_class,
    fold_input_scale,
    input_channel_scales,
    pick_remedy,
    remedy_stage,
    rung,
    save_remedy,
    sixteen_bit_plan,
    weights_only_int8,
)
from workbench.quant.transform import InputTransform, load_remedy

C, S, T, D = 4, 2, 16, 3
LEVELS = [8, 5, 4]


def graph(path, *, extra_reader=False, group=1, seed=0):
    """imu -> Conv -> Relu -> Conv(sites) -> Relu -> GAP -> Flatten -> Gemm -> Add -> Tanh -> Mul -> Sub."""
    rng = np.random.default_rng(seed)
    L = np.asarray(LEVELS, np.float64)
    half_l = (L - 1) * 1.001 / 2
    offset = np.where(L % 2 == 0, 0.5, 0.0)
    arrays = {
        "w1": rng.normal(0, 0.5, (6, C // group, 1, 3)),
        "b1": rng.normal(0, 0.1, 6),
        "w2": rng.normal(0, 0.4, (6, 6, S, 1)),
        "b2": rng.normal(0, 0.1, 6),
        "wp": rng.normal(0, 0.9, (D, 6)),
        "bp": rng.normal(0, 0.1, D),
        "shift": np.arctanh(offset / half_l),
        "half_l": half_l,
        "offset": offset,
    }
    inits = [nh.from_array(np.asarray(a, np.float32), n) for n, a in arrays.items()]
    nodes = [
        h.make_node("Conv", ["imu", "w1", "b1"], ["c1"], name="first", pads=[0, 1, 0, 1], group=group),
        h.make_node("Relu", ["c1"], ["r1"], name="relu_a"),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="mix"),
        h.make_node("Relu", ["c2"], ["r2"], name="relu_b"),
        h.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        h.make_node("Flatten", ["g"], ["f"], name="flat"),
        h.make_node("Gemm", ["f", "wp", "bp"], ["z"], name="proj", transB=1),
        h.make_node("Add", ["z", "shift"], ["a"], name="b_add"),
        h.make_node("Tanh", ["a"], ["t"], name="b_tanh"),
        h.make_node("Mul", ["t", "half_l"], ["m"], name="b_mul"),
        h.make_node("Sub", ["m", "offset"], ["bound"], name="b_sub"),
    ]
    outputs = [h.make_tensor_value_info("bound", TP.FLOAT, ["N", D])]
    if extra_reader:
        nodes.append(h.make_node("Identity", ["imu"], ["imu_copy"], name="tap"))
        outputs.append(h.make_tensor_value_info("imu_copy", TP.FLOAT, ["N", C, S, T]))
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("imu", TP.FLOAT, ["N", C, S, T])], outputs, inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def windows(n=256, seed=1):
    """Channels with very different ranges, like acc (quiet) next to gyro (wide)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, C, S, T)).astype(np.float32)
    x[:, 0] *= 0.05
    x[:, 3] *= 8.0
    return x


def post(npu):
    lv = np.rint(npu)
    return lv, np.concatenate([lv, -lv], axis=1)


def test_fold_is_exact_in_fp32_on_our_exported_model(tmp_path):
    torch = pytest.importorskip("torch")
    from workbench.graph.export import export_onnx
    from workbench.graph.split import split_model
    from workbench.model import FSQClassifier, ModelConfig

    torch.manual_seed(0)
    model = FSQClassifier(
        ModelConfig(in_channels=6, sites=2, window=32, num_classes=4, encoder_channels=[8, 8], fsq_levels=[5, 4, 3])
    )
    model.eval()
    export_onnx(model, tmp_path / "m.onnx", (1, 6, 2, 32))
    export_onnx(model, tmp_path / "md.onnx", (1, 6, 2, 32), dynamic_batch=True)
    split_model(tmp_path / "m.onnx", tmp_path / "md.onnx", tmp_path / "s", fsq_levels=[5, 4, 3])
    rng = np.random.default_rng(0)
    gains = np.array([0.1, 0.1, 0.1, 9, 9, 9], np.float32)[None, :, None, None]  # quiet acc, wide gyro
    x = rng.normal(0, 1, (64, 6, 2, 32)).astype(np.float32) * gains
    s = input_channel_scales(x)
    folded = fold_input_scale(tmp_path / "s" / "npu_dynamic.onnx", tmp_path / "f.onnx", s)
    ref = run_onnx(tmp_path / "s" / "npu_dynamic.onnx", x)
    got = run_onnx(folded, InputTransform(scale=s.tolist()).apply(x))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert not np.allclose(s, 1.0)  # the fold did something
    # the static graph stage 06 compiles carries the same fold
    rm = build_remedy(rung("equalize"), tmp_path / "s" / "npu_dynamic.onnx", x, tmp_path / "w")
    dep = deploy_graph(tmp_path / "s" / "npu.onnx", tmp_path / "deploy.onnx", rm)
    one = run_onnx(dep, rm.transform.apply(x[:1]), batch_size=1)
    np.testing.assert_allclose(one, ref[:1], rtol=1e-5, atol=1e-5)


def test_fold_on_hand_built_graph_and_refusals(tmp_path):
    p = graph(tmp_path / "g.onnx")
    x = windows()
    s = input_channel_scales(x)
    assert s.max() == pytest.approx(1.0) and s.argmax() == 3 and s.argmin() == 0
    eq = InputTransform(scale=s.tolist()).apply(x)
    spread = np.abs(eq).max(axis=(0, 2, 3))
    np.testing.assert_allclose(spread, spread.max(), rtol=1e-5)  # every channel now spans the same range
    folded = fold_input_scale(p, tmp_path / "f.onnx", s)
    np.testing.assert_allclose(run_onnx(folded, eq), run_onnx(p, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(QuantError, match="exactly one Conv"):
        fold_input_scale(graph(tmp_path / "two.onnx", extra_reader=True), tmp_path / "x.onnx", s)
    with pytest.raises(QuantError, match="grouped"):
        fold_input_scale(graph(tmp_path / "grp.onnx", group=2), tmp_path / "x.onnx", s)
    with pytest.raises(QuantError, match="input channels"):
        fold_input_scale(p, tmp_path / "x.onnx", s[:2])
    dead = x.copy()
    dead[:, 1] = 0
    with pytest.raises(QuantError, match=r"channels \[1\] are all zero"):
        input_channel_scales(dead)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(QuantError, match="NaN"):
        input_channel_scales(bad)


def test_equalization_lowers_int8_input_error_on_quiet_channels(tmp_path):
    p = graph(tmp_path / "g.onnx")
    x = windows()
    plain = build_remedy(rung("int8"), p, x, tmp_path / "a")
    eq = build_remedy(rung("equalize"), p, x, tmp_path / "b")
    ref = run_onnx(p, x)
    err_plain = np.abs(run_onnx(plain.int8_model, x) - ref).mean()
    err_eq = np.abs(run_onnx(eq.int8_model, eq.transform.apply(x)) - ref).mean()
    assert err_eq < err_plain


def test_clip_range_and_transform():
    x = windows()
    lo, hi = clip_range(x, 99.0)
    assert lo < 0 < hi and hi < np.abs(x).max()
    assert clip_range(np.abs(x) + 1, 99.0)[0] == 0.0  # zero always inside the range
    t = InputTransform(clip=[lo, hi])
    y = t.apply(x)
    assert y.min() >= lo and y.max() <= hi
    with pytest.raises(QuantError, match="percentile"):
        clip_range(x, 40.0)
    with pytest.raises(QuantError, match="channel scales"):
        InputTransform(scale=[1.0, 2.0]).apply(x)
    assert InputTransform().identity and InputTransform.from_dict(t.to_dict()).clip == [lo, hi]


def test_sixteen_bit_plan_reaches_the_quantized_graph(tmp_path):
    p = graph(tmp_path / "g.onnx")
    plan = sixteen_bit_plan(p, input16=True, tail16=True)
    assert plan["inputs"] == ["imu"] and "imu" in plan["activations"]
    assert plan["nodes"][:2] == ["first", "relu_a"]
    assert {"proj", "b_add", "b_tanh", "b_mul", "b_sub"} <= set(plan["nodes"])
    assert "mix" not in plan["nodes"] and "gap" not in plan["nodes"]  # the body stays INT8
    assert set(plan["weights"]) == {"w1", "wp"}
    rm = build_remedy(rung("input16_tail16"), p, windows(), tmp_path / "w")
    m = onnx.load(str(rm.int8_model))
    inits = {t.name: nh.to_array(t) for t in m.graph.initializer}
    zp_of = {n.input[0]: inits[n.input[2]].dtype for n in m.graph.node if n.op_type == "QuantizeLinear"}
    assert zp_of["imu"] == np.uint16 and output_quantization(rm.int8_model)["bits"] == 16
    assert {zp_of.get(t) for t in ("c1", "r1", "z", "a", "t", "m")} - {None} == {np.dtype(np.uint16)}
    assert {zp_of.get(t) for t in ("c2", "r2", "g")} - {None} == {np.dtype(np.uint8)}  # the body stays 8-bit
    assert sixteen_bit_plan(p, False, False) == {
        "activations": [],
        "weights": [],
        "nodes": [],
        "inputs": [],
        "tail": False,
    }


def test_pick_uses_validation_and_prefers_the_cheaper_rung():
    rows = []
    flips = {
        "int8": (0.20, 0.01),
        "equalize": (0.05, 0.5),
        "equalize_clip": (0.0101, 0.5),
        "equalize_clip_tail16": (0.010, 0.5),
        "input16": (0.02, 0.5),
        "input16_tail16": (0.009, 0.5),
    }
    for name, (val, test) in flips.items():
        r = rung(name)
        for split, f in (("val", val), ("test", test)):
            rows.append(
                {"remedy": name, "split": split, "code_flip_rate": f, "sixteen_bit_layers": len(r.sixteen_bit_parts)}
            )
    table = pd.DataFrame(rows)
    assert pick_remedy(table, tolerance=0.0)["remedy"] == "input16_tail16"
    assert pick_remedy(table, tolerance=0.002)["remedy"] == "equalize_clip"  # cheapest within tolerance
    assert pick_remedy(table, allow_16bit=False, tolerance=0.0)["remedy"] == "equalize_clip"
    with pytest.raises(QuantError, match="never picked on test"):
        pick_remedy(table, split="test")
    with pytest.raises(QuantError, match="unknown remedy"):
        rung("fp64")
    assert RUNG_NAMES[0] == "int8" and len(LADDER) == len(set(RUNG_NAMES))


def test_attribution_parts_and_weights_only(tmp_path):
    p = graph(tmp_path / "g.onnx")
    x = windows(300)
    w = weights_only_int8(p, tmp_path / "wq.onnx")
    m0, m1 = onnx.load(str(p)), onnx.load(str(w))
    a = {t.name: nh.to_array(t) for t in m0.graph.initializer}
    b = {t.name: nh.to_array(t) for t in m1.graph.initializer}
    for name in ("w1", "w2", "wp"):
        step = np.abs(a[name]).reshape(a[name].shape[0], -1).max(1) / 127
        err = np.abs(a[name] - b[name]).reshape(a[name].shape[0], -1).max(1)
        assert np.all(err <= step / 2 + 1e-7) and not np.array_equal(a[name], b[name])
    assert np.array_equal(a["b1"], b["b1"])  # biases untouched
    attr = flip_attribution(p, x[:128], x[128:], post, tmp_path / "attr")
    assert list(attr.part) == ["input only", "weights only", "activations only", "all (INT8)"]
    assert attr.code_flip_rate.between(0, 1).all()
    assert (attr.backend == "ort-int8-emulated").all()


def test_flips_per_class_counts():
    a = np.array([[0, 1], [1, 1], [2, 0], [0, 0]])
    b = np.array([[0, 1], [1, 2], [2, 0], [1, 0]])
    df = flips_per_class(a, b, np.array([0, 0, 1, 1]), ["SIT", "<b>STAND</b>"])
    assert df.code_flips.tolist() == [1, 1] and df.code_flip_rate.tolist() == [0.5, 0.5]
    assert df["class"].tolist() == ["SIT", "<b>STAND</b>"]  # names kept verbatim; HTML escaping is the renderer's


def test_remedy_stage_picks_on_val_and_saves(tmp_path):
    p = graph(tmp_path / "g.onnx")
    x = windows(400)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(int)
    out = remedy_stage(
        p,
        x[:128],
        (x[128:256], y[128:256]),
        (x[256:], y[256:]),
        post,
        lambda z: z,
        LEVELS,
        ["a", "b"],
        tmp_path / "st",
        attribution=False,
    )
    assert set(out.ladder.split) == {"val", "test"} and len(out.ladder) == 2 * len(LADDER)
    assert out.pick["picked_on"] == "val"
    val = out.ladder[out.ladder.split == "val"]
    assert out.pick["code_flip_rate"] <= val.code_flip_rate.min() + out.pick["tolerance"] + 1e-12
    path = save_remedy(tmp_path / "quant_remedy.json", out.chosen, out.pick)
    back = load_remedy(path)
    assert back["remedy"] == out.pick["remedy"] and "input_transform" in back
    assert load_remedy(tmp_path / "missing.json")["remedy"] == "int8"
    forced = remedy_stage(
        p,
        x[:128],
        (x[128:256], y[128:256]),
        (x[256:], y[256:]),
        post,
        lambda z: z,
        LEVELS,
        ["a", "b"],
        tmp_path / "st2",
        remedy="equalize",
        attribution=False,
    )
    assert forced.chosen.remedy.name == "equalize" and forced.chosen.transform.scale is not None
    json.dumps(forced.pick)


def test_first_conv_needs_a_conv_reader(tmp_path):
    g = h.make_graph(
        [h.make_node("Relu", ["x"], ["y"], name="r")],
        "g",
        [h.make_tensor_value_info("x", TP.FLOAT, [1, 2])],
        [h.make_tensor_value_info("y", TP.FLOAT, [1, 2])],
    )
    with pytest.raises(QuantError, match="exactly one Conv"):
        first_conv(h.make_model(g))
    assert quantize_npu  # imported API used by the module under test

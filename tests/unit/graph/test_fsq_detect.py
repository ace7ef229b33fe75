"""Finding FSQ in graphs the workbench did not write: hand-built chains in every spelling exporters use,
and real exports of models written elsewhere (vector-quantize-pytorch's FSQ, the predecessor's own FSQ,
an encoder without class output, a Round that is not FSQ)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import byom_models as bm  # models written outside the workbench
from workbench.graph.fsq_detect import FsqNotFound, find_fsq, levels_from_constants
from workbench.graph.host import HostPostprocessor, compare_with_host_onnx
from workbench.graph.split import SplitError, find_cut, host_onnx_outputs, prove_recomposition, split_model


def _consts(levels, eps=1e-3):
    L = np.asarray(levels, np.float64)
    half_l = (L - 1) * (1 + eps) / 2
    offset = np.where(L % 2 == 0, 0.5, 0.0)
    return half_l.astype(np.float32), offset.astype(np.float32), np.arctanh(offset / half_l).astype(np.float32)


def _graph(nodes, inits, d, extra_outputs=()):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", d]), *extra_outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    return onnx.shape_inference.infer_shapes(m)


def _chain(levels, order="plain", ste=False, index_round=False):
    """z -> Relu (so the chain does not start at the graph input) -> FSQ bound -> Round [-> index Round]."""
    half_l, offset, shift = _consts(levels)
    d = len(levels)
    nodes = [helper.make_node("Relu", ["z"], ["p"], name="proj")]
    inits = {"shift": shift, "half_l": half_l, "offset": offset, "neg_offset": -offset}
    if order == "plain":
        nodes += [
            helper.make_node("Add", ["p", "shift"], ["a"], name="add_shift"),
            helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
            helper.make_node("Mul", ["t", "half_l"], ["m"], name="mul"),
            helper.make_node("Sub", ["m", "offset"], ["b"], name="sub"),
        ]
    elif order == "swapped":  # constants first, - offset as + (-offset), a leading Unsqueeze
        inits["axes"] = np.asarray([1], np.int64)
        nodes += [
            helper.make_node("Unsqueeze", ["p", "axes"], ["u"], name="pack"),
            helper.make_node("Add", ["shift", "u"], ["a"], name="add_shift"),
            helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
            helper.make_node("Mul", ["half_l", "t"], ["m"], name="mul"),
            helper.make_node("Add", ["neg_offset", "m"], ["b4"], name="add_neg_offset"),
            helper.make_node("Squeeze", ["b4", "axes"], ["b"], name="unpack"),
        ]
    elif order == "unfolded":  # half_l computed in the graph: (levels - 1) * (1 + eps) / 2
        inits = {
            "levels": np.asarray(levels, np.float32),
            "one": np.float32(1.0),
            "k": np.float32((1 + 1e-3) / 2),
            "shift": shift,
            "offset": offset,
        }
        nodes += [
            helper.make_node("Sub", ["levels", "one"], ["lm1"], name="c_sub"),
            helper.make_node("Mul", ["lm1", "k"], ["hl"], name="c_mul"),
            helper.make_node("Add", ["p", "shift"], ["a"], name="add_shift"),
            helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
            helper.make_node("Mul", ["t", "hl"], ["m"], name="mul"),
            helper.make_node("Sub", ["m", "offset"], ["b"], name="sub"),
        ]
    nodes.append(helper.make_node("Round", ["b"], ["r"], name="fsq_round"))
    if ste:
        nodes += [
            helper.make_node("Sub", ["r", "b"], ["d"], name="ste_sub"),
            helper.make_node("Add", ["b", "d"], ["q"], name="ste_add"),
        ]
    q = "q" if ste else "r"
    nodes.append(helper.make_node("Relu", [q], ["out"], name="head"))
    extra = []
    if index_round:
        inits["basis"] = np.cumprod([1] + list(levels[:-1])).astype(np.float32)
        nodes += [
            helper.make_node("Mul", [q, "basis"], ["qb"], name="idx_mul"),
            helper.make_node("ReduceSum", ["qb"], ["s"], name="idx_sum", keepdims=0),
            helper.make_node("Round", ["s"], ["idx"], name="index_round"),
        ]
        extra = [helper.make_tensor_value_info("idx", TensorProto.FLOAT, ["batch"])]
    return _graph(nodes, inits, d, extra)


@pytest.mark.parametrize("order", ["plain", "swapped", "unfolded"])
@pytest.mark.parametrize("ste", [False, True])
def test_every_spelling_of_the_bound_chain_gives_the_levels(order, ste):
    levels = [8, 6, 5, 5, 4]
    fsq = find_fsq(_chain(levels, order=order, ste=ste), expected_levels=levels)
    assert fsq.levels == levels and fsq.round_node == "fsq_round"
    assert fsq.straight_through is ste
    assert fsq.levels_tensor == ("q" if ste else "r")
    assert fsq.bound_tensor == "b"
    assert fsq.projection_tensor == "p"  # leading Unsqueeze belongs to the projection side
    assert abs(fsq.eps - 1e-3) < 1e-6


def test_index_round_is_not_taken_for_the_quantizer():
    fsq = find_fsq(_chain([7, 5, 5, 5], ste=True, index_round=True))
    assert fsq.round_node == "fsq_round" and fsq.other_rounds == ["index_round"]
    assert fsq.levels == [7, 5, 5, 5]


def test_levels_mismatch_names_both_and_the_fix():
    with pytest.raises(
        SplitError,
        match=r"encodes levels \[8, 5, 5, 5\].*fsq_levels is \[8, 6, 5, 5, 4\].*"
        r"set fsq_levels: \[8, 5, 5, 5\]",
    ):
        find_fsq(_chain([8, 5, 5, 5]), expected_levels=[8, 6, 5, 5, 4])


def test_levels_from_constants_refuses_what_is_not_fsq():
    half_l, offset, shift = _consts([8, 5])
    assert levels_from_constants(half_l, offset, shift)[0] == [8, 5]
    # the classic wrong mapping round(tanh(z) * L) has 2L + 1 levels (REFERENCE.md section 1): reported as
    # such, so a check against the intended fsq_levels fails instead of passing silently
    assert levels_from_constants(np.array([8.0, 5.0]), np.zeros(2), np.zeros(2))[0] == [17, 11]
    assert "integer L" in levels_from_constants(np.array([8.3, 5.0]), np.zeros(2), np.zeros(2))[2]
    assert "offset" in levels_from_constants(half_l, np.zeros(2), shift)[2]  # even L needs 0.5
    assert "shift" in levels_from_constants(half_l, offset, np.zeros(2))[2]
    assert "positive" in levels_from_constants(-half_l, offset, shift)[2]


def test_scalar_constants_broadcast_to_every_dimension():
    half_l, offset, shift = _consts([5])
    nodes = [
        helper.make_node("Relu", ["z"], ["p"]),
        helper.make_node("Add", ["p", "s"], ["a"]),
        helper.make_node("Tanh", ["a"], ["t"]),
        helper.make_node("Mul", ["t", "h"], ["b"]),
        helper.make_node("Round", ["b"], ["out"], name="r"),
    ]
    fsq = find_fsq(_graph(nodes, {"s": shift[0], "h": half_l[0]}, 3))
    assert fsq.levels == [5, 5, 5]


def test_round_that_is_not_fsq_lists_every_round_and_cut_tensor():
    nodes = [
        helper.make_node("Mul", ["z", "k"], ["a"], name="scale100"),
        helper.make_node("Round", ["a"], ["r"], name="grid_round"),
        helper.make_node("Tanh", ["r"], ["t"], name="t"),
        helper.make_node("Round", ["t"], ["out"], name="tanh_round"),
    ]
    m = _graph(nodes, {"k": np.float32(100.0)}, 3)
    with pytest.raises(FsqNotFound) as err:
        find_fsq(m)
    msg = str(err.value)
    assert "'grid_round' (node 1" in msg and "'tanh_round' (node 3" in msg and "-p cut_tensor" in msg
    with pytest.raises(FsqNotFound, match="no Round node"):
        find_fsq(_graph([helper.make_node("Relu", ["z"], ["out"])], {}, 3))


# ---- real exports of models written elsewhere --------------------------------------------------
@pytest.fixture(scope="module")
def windows():
    return np.random.default_rng(0).normal(size=(48, 9, 2, 40)).astype(np.float32)


def _export_pair(model, tmp, shape, outs, fold=True):
    dyn, sta = tmp / "model_dynamic.onnx", tmp / "model.onnx"
    bm.export(model, dyn, shape, outs, dynamic=True, fold=fold)
    bm.export(model, sta, shape, outs, dynamic=False, fold=fold)
    return sta, dyn


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("cut", ["after_bound", "after_projection"])
def test_vector_quantize_pytorch_fsq_is_found_split_and_recomposed(tmp_path, windows, cut, fold):
    import torch

    torch.manual_seed(0)
    model = bm.LucidrainsFSQNet(levels=(8, 5, 5, 5)).eval()
    sta, dyn = _export_pair(model, tmp_path, (1, 9, 2, 40), ["logits", "indices"], fold=fold)
    info = split_model(sta, dyn, tmp_path / "split", cut=cut, fsq_levels=[8, 5, 5, 5])
    assert info["fsq_levels"] == [8, 5, 5, 5] and info["fsq_levels_source"] == "graph constants"
    assert info["fsq"]["straight_through"] and len(info["fsq"]["other_rounds"]) == 1  # the index Round
    assert info["logits_output"] == "logits" and info["host_output_names"] == ["logits", "indices"]
    rec = prove_recomposition(
        dyn, tmp_path / "split" / "npu_dynamic.onnx", tmp_path / "split" / "host.onnx", info, windows
    )
    assert rec["passed"] and rec["outputs_bitwise_equal"] == {
        "logits": True,
        "indices": True,
        info["levels_tensor"]: True,
    }
    post = HostPostprocessor.from_files(tmp_path / "split" / "split.json", tmp_path / "split" / "host_weights.npz")
    lv, lg = host_onnx_outputs(tmp_path / "split" / "host.onnx", info, rec["npu_output"])
    cmp = compare_with_host_onnx(post, lv, lg, rec["npu_output"])
    assert cmp["levels_bitwise"] and cmp["logits_max_row_ulp"] <= 4
    # the levels are FSQ's: cross-check against the formula on the projection computed by PyTorch
    with torch.no_grad():
        z = model.proj(model.conv(torch.from_numpy(windows)).mean(dim=(2, 3))).numpy()
    ref = bm.fsq_reference_levels([8, 5, 5, 5], z.astype(np.float64))
    assert (post(rec["npu_output"])[0] == ref).mean() > 0.999


def test_predecessor_architecture_levels_from_graph_and_torch_agree(tmp_path):
    import torch

    torch.manual_seed(1)
    model = bm.PredecessorNet(in_channels=9, num_classes=6).eval()
    sta, dyn = _export_pair(model, tmp_path, (1, 9, 2, 40), ["logits"])
    proto = onnx.load(str(dyn))
    fsq = find_fsq(proto)
    assert fsq.levels == [8, 6, 5, 5, 4] and fsq.round_node == "/fsq_model/fsq/Round"
    # the predecessor cut by hand at /fsq_model/fsq/Sub: the same tensor the detector finds
    prod = {t: n for n in proto.graph.node for t in n.output}
    assert prod[fsq.bound_tensor].name == "/fsq_model/fsq/Sub"
    plan = find_cut(proto, "after_bound", cut_tensor=fsq.bound_tensor)
    assert plan.end_node == "/fsq_model/fsq/Sub" and plan.fsq.levels == fsq.levels


def test_encoder_without_logits_splits_to_the_levels(tmp_path):
    model = bm.TcnEncoder(in_channels=18, levels=(7, 5, 5, 5)).eval()
    sta, dyn = _export_pair(model, tmp_path, (1, 18, 40), ["latent_embeddings", "code_indices"])
    info = split_model(sta, dyn, tmp_path / "split", logits_output=None)
    assert info["logits_output"] is None and info["fsq_levels"] == [7, 5, 5, 5]
    assert [s["op"] for s in info["host_program"]] == ["RoundSTE"]
    x = np.random.default_rng(2).normal(size=(32, 18, 40)).astype(np.float32)
    rec = prove_recomposition(dyn, tmp_path / "split" / "npu_dynamic.onnx", tmp_path / "split" / "host.onnx", info, x)
    assert rec["passed"] and rec["logits_bitwise_equal"] is None
    post = HostPostprocessor.from_files(tmp_path / "split" / "split.json", tmp_path / "split" / "host_weights.npz")
    levels, logits = post(rec["npu_output"])
    assert logits.shape == (32, 0) and not post.has_logits
    assert np.array_equal(levels, rec["levels"].reshape(32, -1))


def test_input_rounding_model_gives_the_clear_error(tmp_path):
    sta, dyn = _export_pair(bm.InputRounder(), tmp_path, (1, 9, 2, 40), ["logits"])
    with pytest.raises(FsqNotFound, match=r"(?s)'/Round' \(node \d+, input tensor .* from Mul.*cut_tensor"):
        split_model(sta, dyn, tmp_path / "split")

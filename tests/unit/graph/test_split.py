"""Split at the FSQ Round: both cut kinds, split.json, bit-exact recomposition, error paths."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_export import SHAPE, tiny_model

from workbench.graph.export import export_onnx
from workbench.graph.fsq_detect import FsqNotFound
from workbench.graph.split import SplitError, find_cut, prove_recomposition, split_model

SPLIT_FIELDS = {
    "cut",
    "round_nodes",
    "npu_output_tensor",
    "npu_end_nodes",
    "npu_input_name",
    "npu_input_shape",
    "npu_output_shape",
    "host_input_name",
    "host_output_names",
    "fsq_levels",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("split")
    m = tiny_model()
    return (
        export_onnx(m, d / "model.onnx", SHAPE),
        export_onnx(m, d / "model_dynamic.onnx", SHAPE, dynamic_batch=True),
        d,
    )


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(300,) + SHAPE[1:]).astype(np.float32)


def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]


@pytest.mark.parametrize("cut", ["after_bound", "after_projection"])
def test_split_files_fields_and_bitwise_recomposition(models, windows, cut):
    static, dynamic, d = models
    out = d / cut
    info = split_model(static, dynamic, out, cut=cut, fsq_levels=[8, 5, 4])
    for f in ("npu.onnx", "npu_dynamic.onnx", "host.onnx", "split.json", "host_weights.npz"):
        assert (out / f).is_file()
    on_disk = json.loads((out / "split.json").read_text())
    assert SPLIT_FIELDS <= set(on_disk) and on_disk["cut"] == cut
    full = onnx.load(str(static))
    producer = {t: n for n in full.graph.node for t in n.output}
    end = producer[info["npu_output_tensor"]]
    assert info["npu_end_nodes"] == [end.name]  # the node that PRODUCES the cut tensor
    rnd = next(n for n in full.graph.node if n.op_type == "Round")
    assert info["round_nodes"] == [rnd.name]
    if cut == "after_bound":
        assert info["npu_output_tensor"] == rnd.input[0] and end.op_type == "Sub"
        assert [s["op"] for s in info["host_program"]][0] == "Round"
    else:
        assert end.op_type == "Gemm" and end.name.startswith("/project")
        assert [s["op"] for s in info["host_program"]][:5] == ["Add", "Tanh", "Mul", "Sub", "Round"]
    assert info["npu_input_shape"] == list(SHAPE) and info["npu_output_shape"] == [1, 3]
    assert info["npu_input_name"] == "imu" and info["host_output_names"] == ["logits"]
    npu, npu_dyn, host = (onnx.load(str(out / f)) for f in ("npu.onnx", "npu_dynamic.onnx", "host.onnx"))
    assert _dims(npu.graph.input[0]) == list(SHAPE) and _dims(npu.graph.output[0]) == [1, 3]
    assert _dims(npu_dyn.graph.input[0])[0] == "batch"
    assert "Round" not in [n.op_type for n in npu.graph.node]
    assert [o.name for o in npu.graph.output] == [info["npu_output_tensor"]]
    assert [i.name for i in host.graph.input] == [info["host_input_name"]]
    assert all(i.version == 13 for i in npu.opset_import if i.domain == "")
    rep = prove_recomposition(dynamic, out / "npu_dynamic.onnx", out / "host.onnx", info, windows)
    assert rep["passed"] and rep["levels_bitwise_equal"] and rep["logits_bitwise_equal"]
    assert rep["npu_output"].shape == (300, 3)


def test_host_ops_other_than_round_moves_the_cut(models):
    static = onnx.load(str(models[0]))
    plan = find_cut(static, "after_bound", host_ops=["Tanh", "Round"])
    producer = {t: n for n in static.graph.node for t in n.output}
    assert producer[plan.tensor].op_type == "Add"  # Tanh's input: z + shift
    assert [h["op_type"] for h in plan.host_op_nodes] == ["Tanh", "Round"]


def _model(nodes, inits, out_shape=(1, 3)):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_graph_without_round_names_ops_and_parameter():
    m = _model([helper.make_node("Relu", ["imu"], ["logits"], name="r")], {})
    with pytest.raises(SplitError, match=r"ops found: \['Relu'\].*'host_ops' parameter"):
        find_cut(m)


def test_bad_host_ops_are_refused_with_a_hint(models):
    static = onnx.load(str(models[0]))
    with pytest.raises(SplitError, match="did you mean 'Round'"):
        find_cut(static, host_ops=["round"])
    with pytest.raises(SplitError, match="host_ops is empty"):
        find_cut(static, host_ops=[])
    with pytest.raises(SplitError, match="unknown cut"):
        find_cut(static, cut="before_round")


def test_skip_connection_around_round_is_refused():
    nodes = [
        helper.make_node("MatMul", ["imu", "w"], ["a"], name="scale"),
        helper.make_node("Tanh", ["a"], ["b"], name="bound"),
        helper.make_node("Round", ["b"], ["r"], name="round"),
        helper.make_node("Add", ["r", "a"], ["logits"], name="skip_add"),
    ]  # reads 'a' from before the cut
    m = _model(nodes, {"w": np.eye(3) * 2.0})
    # not an FSQ chain (no half_l scale): the cut must be named by hand
    with pytest.raises(SplitError, match=r"does not separate.*skip_add.*\['a'\]"):
        find_cut(m, "after_bound", cut_tensor="b")
    # cutting at the projection makes 'a' the cut tensor, which then does separate the graph
    plan = find_cut(m, "after_bound", cut_tensor="a")
    assert plan.tensor == "a" and plan.end_node == "scale" and plan.cut_source == "cut_tensor"


def test_round_without_fsq_chain_lists_rounds_and_cut_tensor():
    m = _model(
        [
            helper.make_node("Mul", ["imu", "k"], ["a"], name="p"),
            helper.make_node("Round", ["a"], ["logits"], name="round"),
        ],
        {"k": [2.0, 2.0, 2.0]},
    )
    with pytest.raises(FsqNotFound, match=r"(?s)'round' \(node 1.*from Mul 'p'.*cut_tensor"):
        find_cut(m, "after_projection")
    with pytest.raises(SplitError, match="graph input"):
        find_cut(m, "after_bound", cut_tensor="imu")
    with pytest.raises(SplitError, match=r"not produced by any node; did you mean \['a'\]"):
        find_cut(m, "after_bound", cut_tensor="a_")

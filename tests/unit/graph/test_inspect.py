"""Graph inspection: node table, histogram, parameters, MACs (cross-checked with torch), Hailo flags, drawing."""

from __future__ import annotations

import matplotlib
import onnx
import pytest
import torch
from onnx import TensorProto, helper

matplotlib.use("Agg")

from test_export import SHAPE, tiny_model  # noqa: E402

from workbench.graph.draw import draw_graph, status_by_op  # noqa: E402
from workbench.graph.export import export_onnx  # noqa: E402
from workbench.graph.inspect import (  # noqa: E402
    compat_summary,
    hailo_compatibility,
    load_hailo_ops,
    macs_per_layer,
    node_table,
    op_histogram,
    parameter_count,
)


@pytest.fixture(scope="module")
def model_and_path(tmp_path_factory):
    m = tiny_model()
    return m, export_onnx(m, tmp_path_factory.mktemp("insp") / "model.onnx", SHAPE)


def _torch_macs(model) -> list[int]:
    """Independent count from torch forward hooks: Conv2d and Linear in call order."""
    macs: list[int] = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            macs.append(out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1])
        elif isinstance(mod, torch.nn.Linear):
            macs.append(out.numel() * mod.in_features)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(SHAPE))
    for h in hs:
        h.remove()
    return macs


def test_node_table_has_every_node_with_shapes(model_and_path):
    _, path = model_and_path
    t = node_table(path)
    proto = onnx.load(str(path))
    assert len(t) == len(proto.graph.node)
    assert list(t.columns) == ["index", "op_type", "name", "inputs", "outputs", "output_shapes"]
    first_conv = t[t.op_type == "Conv"].iloc[0]
    assert first_conv["output_shapes"] == "[1, 4, 2, 12]"  # T=24 -> 12 with stride 2, C 3 -> 4
    assert "imu" in first_conv["inputs"]
    assert t[t.op_type == "Round"].iloc[0]["output_shapes"] == "[1, 3]"


def test_histogram_and_parameter_count(model_and_path):
    model, path = model_and_path
    h = op_histogram(path)
    assert h["Conv"] == 3 and h["Gemm"] == 3 and h["Round"] == 1 and "BatchNormalization" not in h
    # after BN folding every conv gains a bias (C_out values); BN's 4 vectors disappear
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    expected = sum(c.weight.numel() + c.out_channels for c in convs) + sum(
        p.numel() for lin in lins for p in lin.parameters()
    )
    pc = parameter_count(path)
    assert pc["initializer_values"] == expected
    assert pc["constant_node_values"] == 4 * 3  # shift, half_l, offset, half_width for 3 dims


def test_macs_match_an_independent_torch_count(model_and_path):
    model, path = model_and_path
    df = macs_per_layer(path)
    assert df["macs"].tolist() == _torch_macs(model)
    assert list(df.op_type) == ["Conv", "Conv", "Conv", "Gemm", "Gemm", "Gemm"]


def test_hailo_compat_flags_round_with_position(model_and_path):
    _, path = model_and_path
    c = hailo_compatibility(path)
    s = compat_summary(c)
    proto = onnx.load(str(path))
    idx = next(i for i, n in enumerate(proto.graph.node) if n.op_type == "Round")
    assert s["unsupported"] == [{"index": idx, "name": proto.graph.node[idx].name, "op_type": "Round"}]
    assert s["first_unsupported"]["index"] == idx and s["unknown"] == []
    assert set(c[c.op_type == "Conv"].status) == {"supported"}


def test_table_is_data_with_sources_and_evidence():
    t = load_hailo_ops()
    for op in ("Round", "Floor", "Ceil"):
        assert t["ops"][op]["status"] == "unsupported" and t["ops"][op]["evidence"] == "documented"
    for op, e in t["ops"].items():
        assert e["evidence"] in ("documented", "assumed"), op
        assert e["source"] in t["sources"], op
        assert onnx.defs.has(op), f"{op} is not an ONNX op type"


def test_unknown_op_is_flagged_not_assumed():
    g = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"], name="erf0"), helper.make_node("Floor", ["y"], ["z"], name="floor0")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])],
    )
    c = hailo_compatibility(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    assert c.status.tolist() == ["unknown", "unsupported"]
    s = compat_summary(c)
    assert s["unknown"][0]["name"] == "erf0" and s["first_unsupported"] == {"index": 1, "name": "floor0"}


def test_drawings_full_and_zoomed(model_and_path):
    import matplotlib.pyplot as plt

    _, path = model_and_path
    status = status_by_op(hailo_compatibility(path))
    fig = draw_graph(path, status=status, highlight_tensor="/fsq/Sub_output_0", title="full")
    n_full = len([t for t in fig.axes[0].texts if t.get_text().startswith("[")])
    zoom = draw_graph(path, status=status, focus_op="Round", radius=2)
    labels = [t.get_text() for t in zoom.axes[0].texts if t.get_text().startswith("[")]
    assert n_full == len([n for n in onnx.load(str(path)).graph.node if n.op_type != "Constant"])
    assert any("Round" in s for s in labels) and len(labels) == 5  # Round and 2 layers either side
    with pytest.raises(ValueError, match="no Floor node"):
        draw_graph(path, focus_op="Floor")
    plt.close("all")

"""FSQClassifier and ModelConfig: shapes, BN after every conv, parts, Hailo-friendly export."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from workbench.model import FSQClassifier, ModelConfig


def _cfg(**kw) -> ModelConfig:
    base = dict(in_channels=9, sites=2, window=100, num_classes=6)
    base.update(kw)
    return ModelConfig(**base)


def test_config_round_trip_and_validation():
    c = _cfg(encoder_channels=(16, 24), fsq_levels=(8, 5, 5, 5), head_hidden=0, dropout=0.2)
    d = c.to_dict()
    assert d["encoder_channels"] == [16, 24] and d["fsq_levels"] == [8, 5, 5, 5]
    assert ModelConfig.from_dict(d) == c
    assert c.diff(_cfg()) == {
        "encoder_channels": ([16, 24], [32, 64, 64]),
        "fsq_levels": ([8, 5, 5, 5], [8, 6, 5, 5, 4]),
        "head_hidden": (0, 64),
        "dropout": (0.2, 0.1),
    }
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['levels'\]"):
        ModelConfig.from_dict({**d, "levels": [5]})
    with pytest.raises(ValueError, match="missing required fields"):
        ModelConfig.from_dict({"in_channels": 3})
    with pytest.raises(ValueError, match=">= 2"):
        _cfg(fsq_levels=[8, 1])
    with pytest.raises(ValueError, match="encoder_channels"):
        _cfg(encoder_channels=[])
    with pytest.raises(ValueError, match="num_classes"):
        _cfg(num_classes=1)


def test_config_from_params_uses_the_schema_names():
    from workbench.config import Params

    p = Params(encoder_channels=[8, 16], fsq_levels=[7, 5, 5], head_hidden=12, kernel_time=3, window=64)
    c = ModelConfig.from_params(p, in_channels=6, sites=1, num_classes=4)
    assert (c.encoder_channels, c.fsq_levels, c.head_hidden, c.kernel_time, c.window) == ([8, 16], [7, 5, 5], 12, 3, 64)
    assert {f.name for f in dataclasses.fields(ModelConfig)} - {"in_channels", "sites", "num_classes"} <= set(
        Params.model_fields
    )


@pytest.mark.parametrize("shape", [(3, 9, 2, 100), (2, 6, 1, 128), (5, 4, 3, 37), (1, 9, 2, 7)])
def test_forward_shapes_non_square(shape):
    n, c, s, t = shape
    m = FSQClassifier(_cfg(in_channels=c, sites=s, window=t, num_classes=5)).eval()
    x = torch.randn(*shape)
    assert m(x).shape == (n, 5)
    parts = m.forward_parts(x)
    assert parts["projection"].shape == (n, 5) and parts["logits"].shape == (n, 5)


def test_wrong_input_shape_is_a_clear_error():
    m = FSQClassifier(_cfg())
    with pytest.raises(ValueError, match=r"\(N, C=9, S=2, T\).*\(4, 2, 9, 100\)"):
        m(torch.randn(4, 2, 9, 100))  # channels and sites swapped
    with pytest.raises(ValueError, match="expects input"):
        m(torch.randn(9, 2, 100))


def test_batchnorm_follows_every_conv():
    m = FSQClassifier(_cfg(encoder_channels=[8, 16, 24]))
    convs = 0
    for parent in m.modules():
        children = list(parent.children())
        for i, child in enumerate(children):
            if isinstance(child, nn.Conv2d):
                convs += 1
                nxt = children[i + 1]
                assert isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == child.out_channels
                assert isinstance(children[i + 2], nn.ReLU)
    assert convs == 4  # three temporal convs + the site-mixing conv
    site_conv = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)][-1]
    assert site_conv.kernel_size == (2, 1)


def test_forward_parts_are_consistent_in_eval():
    m = FSQClassifier(_cfg()).eval()
    x = torch.randn(32, 9, 2, 100, generator=torch.Generator().manual_seed(0))
    p = m.forward_parts(x)
    assert torch.equal(p["bound"], m.fsq.bound(p["projection"]))
    assert torch.equal(p["levels"], torch.round(p["bound"]))
    assert torch.equal(p["codes"], p["levels"] / m.fsq.half_width)
    assert torch.equal(p["logits"], m(x))
    low, high = m.fsq.level_range()
    assert ((p["levels"] >= low) & (p["levels"] <= high)).all()


def test_head_variants_and_size():
    m = FSQClassifier(_cfg())
    assert m.num_parameters() < 100_000
    assert [type(h) for h in m.head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert m.project.out_features == 5 and m.head[0].in_features == 5
    lin = FSQClassifier(_cfg(head_hidden=0, fsq_levels=[8, 5, 5, 5], num_classes=3))
    assert len(lin.head) == 1 and (lin.head[0].in_features, lin.head[0].out_features) == (4, 3)


def test_export_graph_is_hailo_friendly_and_ends_in_the_fsq_chain(tmp_path):
    import onnx

    m = FSQClassifier(_cfg(encoder_channels=[8, 16])).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        m,
        (torch.randn(1, 9, 2, 100),),
        str(path),
        input_names=["imu"],
        output_names=["logits"],
        opset_version=18,
        dynamo=True,
        verbose=False,
    )
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    allowed = {
        "Conv",
        "BatchNormalization",
        "Relu",
        "GlobalAveragePool",
        "ReduceMean",
        "Flatten",
        "Reshape",
        "Gemm",
        "Tanh",
        "Add",
        "Mul",
        "Sub",
        "Round",
        "Div",
        "Constant",
        "Identity",
    }
    assert set(ops) <= allowed, set(ops) - allowed
    assert ops.count("Round") == 1
    core = [o for o in ops if o not in ("Constant", "Identity")]
    r = core.index("Round")
    assert core[r - 5 : r + 2] == ["Gemm", "Add", "Tanh", "Mul", "Sub", "Round", "Div"]

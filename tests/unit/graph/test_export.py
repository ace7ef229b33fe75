"""ONNX export: opset, names, static/dynamic shapes, BatchNorm folded, Round only, parity with torch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from workbench.errors import DataError
from workbench.graph.export import (
    ExportError,
    check_parity,
    export_onnx,
    heldout_windows,
    opset_of,
    run_onnx_parts,
    simplify_onnx,
    verify_inference_graph,
)
from workbench.model.network import FSQClassifier, ModelConfig

SHAPE = (1, 3, 2, 24)  # non-square: C=3 channels, S=2 sites, T=24 samples


def tiny_model(seed: int = 0) -> FSQClassifier:
    torch.manual_seed(seed)
    m = FSQClassifier(
        ModelConfig(
            in_channels=3,
            sites=2,
            window=24,
            num_classes=4,
            encoder_channels=[4, 6],
            kernel_time=3,
            fsq_levels=[8, 5, 4],
            head_hidden=8,
            dropout=0.0,
        )
    )
    for mod in m.modules():  # non-trivial BN statistics so folding matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    m.eval()
    with torch.no_grad():  # spread the projection (std ~1.2, mean 0) so most FSQ levels occur
        x = torch.from_numpy(np.random.default_rng(123).normal(size=(256,) + SHAPE[1:]).astype(np.float32))
        z = m.embed(x)
        scale = 1.2 / z.std(0)
        m.project.weight.mul_(scale[:, None])
        m.project.bias.copy_(m.project.bias * scale - z.mean(0) * scale)
    return m


@pytest.fixture(scope="module")
def model() -> FSQClassifier:
    return tiny_model()


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(200,) + SHAPE[1:]).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("export")
    return (
        export_onnx(model, d / "model.onnx", SHAPE),
        export_onnx(model, d / "model_dynamic.onnx", SHAPE, dynamic_batch=True),
    )


def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]


def test_static_export_names_shape_and_clean_graph(exported):
    proto = onnx.load(str(exported[0]))
    assert [i.name for i in proto.graph.input] == ["imu"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert _dims(proto.graph.input[0]) == list(SHAPE)
    assert _dims(proto.graph.output[0]) == [1, 4]
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops
    assert ops.count("Round") == 1
    assert ops.count("Conv") == 3  # 2 temporal + 1 site-mixing conv
    assert opset_of(proto) == 13
    onnx.checker.check_model(proto, full_check=True)


def test_dynamic_export_has_symbolic_batch_and_runs(exported, windows):
    proto = onnx.load(str(exported[1]))
    assert _dims(proto.graph.input[0])[0] == "batch"
    out = run_onnx_parts(exported[1], windows[:7])
    assert out["logits"].shape == (7, 4) and out["bound"].shape == (7, 3)


@pytest.mark.parametrize("opset", [13, 17])
def test_opset_is_honoured(tmp_path, model, opset):
    p = export_onnx(model, tmp_path / "m.onnx", SHAPE, opset=opset)
    assert opset_of(onnx.load(str(p))) == opset


def test_bad_input_shape_is_refused(tmp_path, model):
    with pytest.raises(ExportError, match="N, C, S, T"):
        export_onnx(model, tmp_path / "m.onnx", (3, 2, 24))


def test_training_mode_model_is_exported_in_eval(tmp_path):
    m = tiny_model().train()  # STE + batch statistics if it were exported as is
    p = export_onnx(m, tmp_path / "m.onnx", SHAPE)
    verify_inference_graph(onnx.load(str(p)), opset=13)
    assert m.training  # the caller's model is untouched


def test_parity_on_windows_passes_and_levels_match(model, exported, windows):
    for path in exported:
        rep = check_parity(model, path, windows[:40] if path == exported[0] else windows)
        assert rep["passed"], rep["failures"]
        assert rep["level_agreement"] == 1.0 and rep["argmax_agreement"] == 1.0
        assert rep["max_abs_diff"] < 1e-4
        assert rep["backend"] == "ort-fp32" and rep["reference_backend"] == "torch-fp32"
    # the windows really exercise several levels per dimension (else level agreement proves little)
    levels = np.rint(run_onnx_parts(exported[1], windows)["bound"])
    assert all(len(np.unique(levels[:, j])) >= 3 for j in range(3))


def test_parity_detects_a_wrong_graph(tmp_path, model, exported, windows):
    proto = onnx.load(str(exported[1]))
    last = sorted(i.name for i in proto.graph.initializer if i.name.startswith("head.") and i.name.endswith("bias"))[-1]
    for init in proto.graph.initializer:  # corrupt the last head layer's bias
        if init.name == last:
            arr = onnx.numpy_helper.to_array(init).copy()
            arr[0] += 5.0
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    rep = check_parity(model, bad, windows)
    assert not rep["passed"]
    assert any("argmax" in f or "cosine" in f for f in rep["failures"])
    assert rep["max_abs_diff"] == pytest.approx(5.0, abs=1e-4)


def test_simplify_onnxslim_keeps_parity_and_onnxsim_says_how_to_install(tmp_path, model, exported, windows):
    out = simplify_onnx(exported[1], tmp_path / "slim.onnx", "onnxslim")
    assert check_parity(model, out, windows)["passed"]
    try:
        import onnxsim  # noqa: F401
    except ImportError:
        with pytest.raises(ExportError, match="pip install onnxsim"):
            simplify_onnx(exported[1], tmp_path / "sim.onnx", "onnxsim")


def _graph(nodes, inits=(), opset=13):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        list(inits),
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_verify_rejects_batchnorm_missing_round_ste_and_wrong_opset():
    with pytest.raises(ExportError, match="no Round"):
        verify_inference_graph(_graph([helper.make_node("Relu", ["x"], ["y"])]))
    ste = _graph(
        [
            helper.make_node("Round", ["x"], ["r"]),
            helper.make_node("Sub", ["r", "x"], ["d"]),
            helper.make_node("Add", ["x", "d"], ["y"]),
        ]
    )
    with pytest.raises(ExportError, match="straight-through"):
        verify_inference_graph(ste)
    s = onnx.numpy_helper.from_array
    bn = _graph(
        [
            helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["t"], name="bn0"),
            helper.make_node("Round", ["t"], ["y"]),
        ],
        [s(np.ones(3, np.float32), n) for n in ("s", "b", "m", "v")],
    )
    with pytest.raises(ExportError, match="BatchNormalization"):
        verify_inference_graph(bn)
    ok = _graph([helper.make_node("Round", ["x"], ["y"])], opset=17)
    with pytest.raises(ExportError, match="opset is 17, expected 13"):
        verify_inference_graph(ok, opset=13)


def test_heldout_windows_normalises_the_test_split(tmp_path):
    from workbench.data.normalize import Normalizer
    from workbench.data.windowset import WindowSet

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(10, 3, 2, 24)).astype(np.float32)
    ws = WindowSet(
        X=X,
        y=np.arange(10) % 2,
        subject=np.arange(10),
        label_names=["a", "b"],
        channel_names=["c0", "c1", "c2"],
        site_names=["s0", "s1"],
        sample_rate_hz=50.0,
        source="synthetic",
        provenance={"kind": "synthetic"},
    )
    split = np.array(["train"] * 6 + ["test"] * 4)
    ws.save(tmp_path / "w.npz", split)
    norm = Normalizer.fit(X[:6])
    Xn, y = heldout_windows(tmp_path / "w.npz", norm.to_dict(), n=3)
    assert Xn.shape == (3, 3, 2, 24) and Xn.dtype == np.float32
    np.testing.assert_allclose(Xn, (X[6:9] - norm.mean) / norm.std, rtol=1e-5, atol=1e-5)
    assert y.tolist() == [0, 1, 0]
    ws.save(tmp_path / "nosplit.npz")
    with pytest.raises(DataError, match="no .split."):
        heldout_windows(tmp_path / "nosplit.npz", norm.to_dict())

"""Stage-07 backends: selection rules, every backend returning the pre-Round tensor, and every
prediction going through the one shared host post-processor."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from workbench.evaluate.backends import (
    BACKEND_NAMES,
    EMULATOR_FP_FILE,
    EMULATOR_INDEX_FILE,
    EMULATOR_QUANTIZED_FILE,
    BackendUnavailable,
    EvalContext,
    EvalData,
    Hailo8Device,
    HailoEmulator,
    OrtFP32,
    OrtInt8Emulated,
    TorchFP32,
    availability_table,
    evaluate_backend,
    load_test_data,
    select_backends,
)
from workbench.evaluate.latency import measure_backend

C, S, T, D, K = 3, 2, 5, 3, 4  # non-square on purpose: a swapped axis cannot pass


class RecordingHost:
    """Stand-in for graph.host.HostPostprocessor: levels = round-half-even, logits = levels @ W."""

    def __init__(self):
        self.W = np.arange(D * K, dtype=np.float32).reshape(D, K) - 5.0
        self.calls = []

    def __call__(self, npu_out):
        self.calls.append(np.array(npu_out, copy=True))
        levels = np.round(npu_out).astype(np.float32)
        return levels, levels @ self.W


def _mean_onnx(path, batch):
    """NPU-part stand-in: ReduceMean over (S, T) of an NCHW (N, C, S, T) input -> (N, C) = (N, D)."""
    node = helper.make_node("ReduceMean", ["imu"], ["bound"], axes=[2, 3], keepdims=0)
    graph = helper.make_graph(
        [node],
        "npu",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, [batch, C, S, T])],
        [helper.make_tensor_value_info("bound", TensorProto.FLOAT, [batch, D])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _ctx(tmp_path, host=None, **kw) -> EvalContext:
    compile_dir = tmp_path / "06_compile_hailo"
    compile_dir.mkdir(exist_ok=True)
    split = {
        "cut": "after_bound",
        "npu_input_shape": [1, C, S, T],
        "npu_output_shape": [1, D],
        "npu_output_tensor": "bound",
        "fsq_levels": [5, 5, 4],
    }
    args = dict(
        run_dir=tmp_path,
        split=split,
        host=host or RecordingHost(),
        checkpoint=tmp_path / "checkpoint.pt",
        npu_dynamic_onnx=tmp_path / "npu_dynamic.onnx",
        npu_int8_onnx=tmp_path / "npu_int8.onnx",
        compile_dir=compile_dir,
    )
    args.update(kw)
    return EvalContext(**args)


def _x(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, C, S, T)).astype(np.float32) * 2


# ---- selection ------------------------------------------------------------------------------------
def test_none_selects_only_available_and_table_gives_reasons(tmp_path):
    _mean_onnx(tmp_path / "npu_dynamic.onnx", "N")
    (tmp_path / "06_compile_hailo" / "stage_status.json").parent.mkdir(exist_ok=True)
    (tmp_path / "06_compile_hailo" / "stage_status.json").write_text(json.dumps({"status": "bundle-only"}))
    ctx = _ctx(tmp_path)
    chosen = select_backends(ctx, None)
    assert [b.name for b in chosen] == ["ort-fp32"]
    table = availability_table(ctx).set_index("backend")
    assert list(table.index) == list(BACKEND_NAMES)
    assert table.loc["ort-fp32", "available"]
    assert "run stage 01" in table.loc["torch-fp32", "reason"]
    assert "npu_int8.onnx" in table.loc["ort-int8-emulated", "reason"]
    assert "bundle-only" in table.loc["hailo-emulator", "reason"]
    assert "no HEF" in table.loc["hailo8-device", "reason"]


def test_explicit_unavailable_backend_is_an_error_with_the_reason(tmp_path):
    _mean_onnx(tmp_path / "npu_dynamic.onnx", "N")
    ctx = _ctx(tmp_path)
    with pytest.raises(BackendUnavailable, match=r"hailo-emulator: no emulator_quantized_test\.npy"):
        select_backends(ctx, ["ort-fp32", "hailo-emulator"])
    with pytest.raises(BackendUnavailable, match="hailo8-device: no HEF"):
        select_backends(ctx, ["hailo8-device"])
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        select_backends(ctx, ["ort-fp16"])
    with pytest.raises(BackendUnavailable, match="empty list"):
        select_backends(ctx, [])
    assert [b.name for b in select_backends(ctx, ["ort-fp32"])] == ["ort-fp32"]


def test_nothing_available_is_an_error(tmp_path):
    with pytest.raises(BackendUnavailable, match="no backend is available"):
        select_backends(_ctx(tmp_path), None)


# ---- CPU backends ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,fname,batch", [(OrtFP32, "npu_dynamic.onnx", "N"), (OrtInt8Emulated, "npu_int8.onnx", 1)])
def test_ort_backends_output_and_host_path(tmp_path, cls, fname, batch):
    _mean_onnx(tmp_path / fname, batch)  # batch 1 = static graph, run window by window
    host = RecordingHost()
    b = cls(_ctx(tmp_path, host=host))
    x = _x(6)
    out = b.npu_output(x)
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    levels, logits = b.predict(x)
    assert len(host.calls) == 1 and host.calls[0].shape == (6, D)
    np.testing.assert_array_equal(levels, np.round(out))
    np.testing.assert_allclose(logits, np.round(out) @ host.W)
    with pytest.raises(ValueError, match=r"NCHW \(N, 3, 2, 5\)"):
        b.npu_output(np.transpose(x, (0, 2, 3, 1)))


def test_stage05_input_transform_reaches_only_the_deployed_graph_backends(tmp_path):
    from workbench.quant.transform import InputTransform

    _mean_onnx(tmp_path / "npu_dynamic.onnx", "N")
    _mean_onnx(tmp_path / "npu_int8.onnx", "N")
    scale = [0.5, 1.0, 4.0]
    t = InputTransform(scale=scale, clip=[-1.0, 1.0])
    ctx = _ctx(tmp_path, input_transform=t)
    x = _x(7, seed=3)
    np.testing.assert_allclose(OrtInt8Emulated(ctx).npu_output(x), t.apply(x).mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(OrtFP32(ctx).npu_output(x), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    assert Hailo8Device.deployed_graph and not HailoEmulator.deployed_graph  # the emulator replays stage 06's
    #                                                                         # outputs, computed on transformed input


@pytest.mark.torch
def test_torch_backend_takes_the_cut_tensor(tmp_path):
    import torch

    from workbench.model.checkpoint import save_checkpoint
    from workbench.model.network import FSQClassifier, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(
        in_channels=C,
        sites=S,
        window=T,
        num_classes=K,
        encoder_channels=[4],
        kernel_time=3,
        fsq_levels=[5, 5, 4],
        head_hidden=0,
        dropout=0.0,
    )
    model = FSQClassifier(cfg).eval()
    save_checkpoint(
        tmp_path / "checkpoint.pt",
        model,
        cfg,
        {"mean": [0.0], "std": [1.0]},
        [f"c{i}" for i in range(K)],
        {"kind": "synthetic"},
        {},
    )
    x = _x(5, seed=1)
    with torch.no_grad():
        parts = model.forward_parts(torch.from_numpy(x))
    b = TorchFP32(_ctx(tmp_path))
    np.testing.assert_allclose(b.npu_output(x), parts["bound"].numpy(), rtol=1e-6, atol=1e-6)
    ctx = _ctx(tmp_path)
    ctx.split["cut"] = "after_projection"
    np.testing.assert_allclose(TorchFP32(ctx).npu_output(x), parts["projection"].numpy(), rtol=1e-6, atol=1e-6)


# ---- hailo-emulator (replay of stage 06's stored outputs) -----------------------------------------
def _emulator_files(ctx, index, outputs):
    np.save(ctx.compile_dir / EMULATOR_QUANTIZED_FILE, outputs.astype(np.float32))
    np.save(ctx.compile_dir / EMULATOR_FP_FILE, outputs.astype(np.float32) + 0.01)
    np.save(ctx.compile_dir / EMULATOR_INDEX_FILE, np.asarray(index))


def test_emulator_replays_by_window_index_on_the_windows_it_covers(tmp_path):
    host = RecordingHost()
    ctx = _ctx(tmp_path, host=host)
    stored_index = np.array([40, 12, 33])
    stored = np.array([[0.2, 1.6, -2.4], [2.0, -0.4, 0.6], [-1.2, 0.4, 1.5]])
    _emulator_files(ctx, stored_index, stored)
    b = HailoEmulator(ctx)
    assert b.available()[0]
    data = EvalData(
        X=_x(4),
        y=np.array([0, 1, 2, 3]),
        subject=np.array([1, 1, 2, 2]),
        index=np.array([12, 33, 40, 41]),
        label_names=[f"c{i}" for i in range(K)],
    )
    np.testing.assert_array_equal(b.covers(data.index), [True, True, True, False])
    res = evaluate_backend(b, data)
    np.testing.assert_array_equal(res.index, [12, 33, 40])
    np.testing.assert_array_equal(res.y, [0, 1, 2])
    np.testing.assert_allclose(host.calls[0], stored[[1, 2, 0]])
    np.testing.assert_array_equal(res.levels, np.round(stored[[1, 2, 0]]))
    assert res.info["coverage"] == "3/4 test windows"
    with pytest.raises(ValueError, match="needs the window indices"):
        b.npu_output(data.X[:2])
    with pytest.raises(KeyError, match="41"):
        b.npu_output(data.X[3:], np.array([41]))
    lat = measure_backend(b, data.X, iterations=3, warmup=0)
    assert not lat.measured and "not meaningful" in lat.note
    idx, fp = b.fp_optimized()
    np.testing.assert_array_equal(idx, stored_index)
    np.testing.assert_allclose(fp, stored + 0.01, rtol=1e-6)


def test_emulator_without_indices_is_unavailable(tmp_path):
    ctx = _ctx(tmp_path)
    np.save(ctx.compile_dir / EMULATOR_QUANTIZED_FILE, np.zeros((2, D), np.float32))
    ok, reason = HailoEmulator(ctx).available()
    assert not ok and EMULATOR_INDEX_FILE in reason


# ---- hailo8-device --------------------------------------------------------------------------------
class RecordingRunner:
    """Minimal stand-in for workbench.hailo.runtime.HailoRTRunner (the full fake HailoRT is below)."""

    instances: list = []

    def __init__(self, hef_path, api="auto", multi_process_service=False):
        self.hef_path, self.api, self.multi_process_service = hef_path, api, multi_process_service
        self.inputs, self.entered, self.exited = [], False, False
        self.output_quant = {"bits": 16, "scale": 0.001, "zero_point": 0, "format": "UINT16"}
        RecordingRunner.instances.append(self)

    def __enter__(self):
        self.entered = True
        return self

    def __exit__(self, *exc):
        self.exited = True

    def infer(self, x_nhwc):
        self.inputs.append(np.array(x_nhwc, copy=True))
        return x_nhwc.mean(axis=(1, 2)) + 0.25  # NHWC: mean over (S, T) -> (N, C)


def test_device_backend_feeds_nhwc_and_goes_through_host(tmp_path):
    (tmp_path / "my.hef").write_bytes(b"HEF")
    host = RecordingHost()
    ctx = _ctx(tmp_path, host=host, hef_path=tmp_path / "my.hef", runner_factory=RecordingRunner)
    x = _x(3, seed=2)
    with Hailo8Device(ctx) as b:
        levels, logits = b.predict(x)
        runner = b.runner
        assert b.info()["output_bits"] == 16
    assert runner.entered and runner.exited and runner.hef_path.endswith("my.hef")
    assert runner.inputs[0].shape == (3, S, T, C)
    np.testing.assert_array_equal(runner.inputs[0], np.transpose(x, (0, 2, 3, 1)))
    expected = x.mean(axis=(2, 3)) + 0.25
    np.testing.assert_allclose(host.calls[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(levels, np.round(host.calls[0]))
    np.testing.assert_allclose(logits, np.round(host.calls[0]) @ host.W, rtol=1e-6)


def _fake_hef(tmp_path, core, bits):
    """A fake HEF (tests/fakes format) over the hailo helper's tiny NPU graph, with an affine output grid."""
    from support import hailo as hailo_fakes

    split = hailo_fakes.make_tiny_npu_onnx(tmp_path / "npu.onnx")
    t = hailo_fakes.TINY
    calib = np.random.default_rng(5).normal(size=(64, t["C"], t["S"], t["T"])).astype(np.float32)
    scale, zp = core.grid_from(hailo_fakes.ort_reference(tmp_path / "npu.onnx", calib), bits)
    meta = {
        "fake": True,
        "net_name": "net",
        "hw_arch": "hailo8",
        "onnx_b64": core.onnx_b64((tmp_path / "npu.onnx").read_bytes()),
        "input_name": "net/input_layer1",
        "input_shape": [t["S"], t["T"], t["C"]],
        "output_name": "net/output_layer1",
        "output_shape": [t["D"]],
        "bits": bits,
        "qp_scale": scale,
        "qp_zp": zp,
        "norm": None,
    }
    (tmp_path / "model.hef").write_bytes(core.encode_hef(meta))
    return split, scale, zp


@pytest.mark.parametrize("bits,legacy", [(8, False), (16, False), (8, True)])
def test_device_backend_with_fake_hailort(tmp_path, monkeypatch, bits, legacy):
    """The real HailoRTRunner over the fake ``hailo_platform``: NHWC frames without batch dimension go
    in, the dequantized pre-Round tensor comes out, and predictions go through the host post-processor."""
    from support import hailo as hailo_fakes

    with hailo_fakes.installed_fakes() as core:
        import hailo_platform

        if legacy:  # HailoRT < 4.18: no InferModel API, the runner must use InferVStreams
            monkeypatch.delattr(hailo_platform.VDevice, "create_infer_model")
        split, scale, zp = _fake_hef(tmp_path, core, bits)
        t = hailo_fakes.TINY
        host = RecordingHost.__new__(RecordingHost)
        host.W, host.calls = np.linspace(-1, 1, t["D"] * K, dtype=np.float32).reshape(t["D"], K), []
        ctx = _ctx(tmp_path, host=host, split=split)  # compile_dir/model.hef is not there:
        ctx.hef_path = tmp_path / "model.hef"  # the HEF comes from params.hef_path
        b = Hailo8Device(ctx)
        ok, reason = b.available()
        assert ok, reason
        x = np.random.default_rng(9).normal(size=(5, t["C"], t["S"], t["T"])).astype(np.float32)
        with b:
            levels, logits = b.predict(x)
            info = b.info()
        assert info["output_bits"] == bits and info["api"] == ("vstreams" if legacy else "infer_model")
        expected = (core.quantize(hailo_fakes.ort_reference(tmp_path / "npu.onnx", x), scale, zp, bits) - zp) * scale
        np.testing.assert_allclose(host.calls[0], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(levels, np.round(host.calls[0]))
        np.testing.assert_allclose(logits, np.round(host.calls[0]) @ host.W, rtol=1e-5, atol=1e-6)
        if not legacy:
            frames = [c for c in core.calls("set_buffer") if c["stream"] == "net/input_layer1"]
            assert frames and {c["shape"] for c in frames} == {(t["S"], t["T"], t["C"])}
            assert {c["dtype"] for c in frames} == {"float32"}


def test_device_backend_unavailable_without_a_device(tmp_path, monkeypatch):
    from support import hailo as hailo_fakes

    with hailo_fakes.installed_fakes() as core:
        from hailo_platform.pyhailort import pyhailort

        monkeypatch.setattr(pyhailort, "SCAN_RESULT", [])
        split, _, _ = _fake_hef(tmp_path, core, 8)
        ctx = _ctx(tmp_path, split=split, hef_path=tmp_path / "model.hef")
        ok, reason = Hailo8Device(ctx).available()
        assert not ok and "no Hailo device" in reason
        with pytest.raises(BackendUnavailable, match="hailo8-device: .*no Hailo device"):
            select_backends(ctx, ["hailo8-device"])


# ---- data -----------------------------------------------------------------------------------------
class _Norm:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def apply(self, X):
        return (X - self.mean) / self.std


def test_load_test_data_takes_the_test_split_and_normalises(tmp_path):
    from workbench.data.windowset import WindowSet

    rng = np.random.default_rng(0)
    n = 10
    ws = WindowSet(
        X=rng.normal(size=(n, C, S, T)).astype(np.float32),
        y=np.arange(n) % K,
        subject=np.arange(n) // 2,
        label_names=[f"c{i}" for i in range(K)],
        channel_names=[f"ch{i}" for i in range(C)],
        site_names=[f"s{i}" for i in range(S)],
        sample_rate_hz=50.0,
        source="synthetic",
        provenance={"kind": "synthetic"},
    )
    split = np.array(["train"] * 4 + ["val", "test", "test", "conformal", "test", "train"])
    ws.save(tmp_path / "windows.npz", split=split)
    norm = _Norm(mean=np.full((C, S, 1), 0.5, np.float32), std=np.full((C, S, 1), 2.0, np.float32))
    data = load_test_data(tmp_path / "windows.npz", norm)
    np.testing.assert_array_equal(data.index, [5, 6, 8])
    np.testing.assert_array_equal(data.y, ws.y[[5, 6, 8]])
    np.testing.assert_array_equal(data.subject, [2, 3, 4])
    np.testing.assert_allclose(data.X, (ws.X[[5, 6, 8]] - 0.5) / 2.0, rtol=1e-6)
    assert data.X.dtype == np.float32 and data.num_classes == K
    with pytest.raises(ValueError, match="no 'holdout' windows"):
        load_test_data(tmp_path / "windows.npz", norm, split_name="holdout")


def test_emulator_refuses_indices_that_are_not_test_windows(tmp_path):
    ctx = _ctx(tmp_path)
    _emulator_files(ctx, np.array([0, 1, 2]), np.zeros((3, D)))  # positions, not windows.npz indices
    b = HailoEmulator(ctx)
    with pytest.raises(RuntimeError, match=r"not test windows of windows\.npz \(e\.g\. \[0, 1\]\)"):
        b.verify_windows(np.array([2, 7, 9]))


def test_emulator_on_other_splits_covers_nothing_without_raising(tmp_path):
    # stage 08 asks about validation / conformal windows: the answer is "none", not an error
    ctx = _ctx(tmp_path)
    _emulator_files(ctx, np.array([5, 6]), np.zeros((2, D)))
    b = HailoEmulator(ctx)
    assert b.replays_stored_outputs and not TorchFP32.replays_stored_outputs
    np.testing.assert_array_equal(b.covers(np.array([0, 1, 2])), [False, False, False])
    b.verify_windows(np.array([5, 6, 8]))  # stored indices are test windows: fine


def test_emulator_sanity_check_against_fp32(tmp_path):
    _mean_onnx(tmp_path / "npu_dynamic.onnx", "N")
    ctx = _ctx(tmp_path)
    x = _x(4, seed=3)
    index = np.array([3, 8, 9, 20])
    ref = x.mean(axis=(2, 3))
    quant = np.round(ref * 4) / 4  # a coarse grid: the "quantized" outputs
    order = np.array([2, 0, 1])  # stored rows for windows 9, 3, 8 (not 20)
    np.save(ctx.compile_dir / EMULATOR_QUANTIZED_FILE, quant[order].astype(np.float32))
    np.save(ctx.compile_dir / EMULATOR_FP_FILE, ref[order].astype(np.float32))
    np.save(ctx.compile_dir / EMULATOR_INDEX_FILE, index[order])
    data = EvalData(X=x, y=np.zeros(4, int), subject=np.zeros(4, int), index=index, label_names=["a", "b"])
    table = HailoEmulator(ctx).sanity_check(data, OrtFP32(ctx)).set_index("dfc_context")
    assert table.loc["SDK_FP_OPTIMIZED", "max_abs_diff"] < 1e-6
    assert table.loc["SDK_FP_OPTIMIZED", "n_windows"] == 3
    assert table.loc["SDK_QUANTIZED", "max_abs_diff"] == pytest.approx(np.abs(ref[:3] - quant[:3]).max(), abs=1e-6)
    assert table.loc["SDK_QUANTIZED", "cosine"] < 1.0

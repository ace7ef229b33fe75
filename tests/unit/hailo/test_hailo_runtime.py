"""HailoRT runner against the fake hailo_platform: both APIs, FLOAT32 formats, buffers, dequantization."""

from __future__ import annotations

import numpy as np
import pytest

from support.hailo import TINY, make_tiny_npu_onnx, ort_reference
from workbench.data.layout import nchw_to_nhwc
from workbench.hailo.alls import make_model_script
from workbench.hailo.compile import compile_with_dfc
from workbench.hailo.runtime import HailoRTRunner, dequantize, hailort_available

C, S, T, D = TINY["C"], TINY["S"], TINY["T"], TINY["D"]


def _hef(tmp_path, bits16: bool):
    onnx_path = tmp_path / "npu.onnx"
    split = make_tiny_npu_onnx(onnx_path)
    rng = np.random.default_rng(3)
    calib_nchw = rng.normal(0, 1, (32, C, S, T)).astype(np.float32)
    script = make_model_script(
        calibset_size=32,
        calib_batch_size=8,
        optimization_level=0,
        compression_level=0,
        output_layer="output_layer1" if bits16 else None,
        input_is_normalized=True,
    )
    res = compile_with_dfc(onnx_path, split, nchw_to_nhwc(calib_nchw), script, tmp_path / "06", "hailo8", "fsq")
    ycal = ort_reference(onnx_path, calib_nchw)
    return res.hef_path, onnx_path, ycal


def _grid(ycal, bits):
    lo, hi = min(ycal.min(), 0.0), max(ycal.max(), 0.0)
    return (hi - lo) / (2**bits - 1), lo, hi


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("hailo_platform") is not None, reason="HailoRT is installed on this machine"
)
def test_not_available_here():
    ok, why = hailort_available()
    assert ok is False and "not installed" in why


def test_available_with_fake_and_no_device(hailo_fakes):
    import hailo_platform

    ok, why = hailort_available()
    assert ok and "0000:01:00.0" in why
    hailo_platform.pyhailort.pyhailort.SCAN_RESULT[:] = []
    try:
        ok, why = hailort_available()
        assert ok is False and "no Hailo device found" in why
    finally:
        hailo_platform.pyhailort.pyhailort.SCAN_RESULT[:] = ["0000:01:00.0"]


@pytest.mark.parametrize("api", ["infer_model", "vstreams"])
@pytest.mark.parametrize("bits16", [False, True])
def test_infer_matches_onnx_on_nchw(hailo_fakes, tmp_path, api, bits16):
    hef, onnx_path, ycal = _hef(tmp_path, bits16)
    rng = np.random.default_rng(4)
    x_nchw = (rng.normal(0, 0.8, (7, C, S, T))).astype(np.float32)
    ref = ort_reference(onnx_path, x_nchw)
    bits = 16 if bits16 else 8
    scale, lo, hi = _grid(ycal, bits)
    with HailoRTRunner(hef, api=api) as r:
        assert r.api == api
        assert r.input_shape == (S, T, C) and r.output_shape == (D,)
        assert r.output_quant["bits"] == bits and r.output_quant["format"] == ("UINT16" if bits16 else "UINT8")
        assert r.output_quant["scale"] == pytest.approx(scale)
        y = r.infer(nchw_to_nhwc(x_nchw))
        assert y.shape == (7, D) and y.dtype == np.float32
        inside = (ref >= lo) & (ref <= hi)
        assert np.abs(y - ref)[inside].max() <= scale / 2 + 1e-6
        # quantized output: integers of the right width, dequantized as (q - zp) * scale
        q = r.infer_raw(nchw_to_nhwc(x_nchw))
        assert q.dtype == (np.uint16 if bits16 else np.uint8)
        zp = r.output_quant["zero_point"]
        expect = (q.astype(np.float64) - zp) * scale
        yq = r.infer_quantized(nchw_to_nhwc(x_nchw))
        np.testing.assert_allclose(yq, expect, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(yq, y, rtol=1e-6, atol=1e-7)  # host-side FLOAT32 path agrees
        # switching back to the float pipeline still works (vstreams reopens it)
        np.testing.assert_allclose(r.infer(nchw_to_nhwc(x_nchw[:2])), y[:2])


def test_infer_model_calls(hailo_fakes, tmp_path):
    hef, _, _ = _hef(tmp_path, False)
    core = hailo_fakes
    core.reset()
    x = np.random.default_rng(0).normal(size=(3, S, T, C)).astype(np.float32)
    x_f = np.asfortranarray(x)  # the runner must make buffers C-contiguous
    with HailoRTRunner(hef, timeout_ms=1234) as r:
        r.infer(x_f)
    fmts = core.calls("set_format_type")
    assert [f["type"].name for f in fmts[:2]] == ["FLOAT32", "FLOAT32"]
    assert core.calls("set_batch_size") == [{"batch_size": 1}]
    conf = core.calls("InferModel.configure")[0]
    assert conf["input_format"].name == "FLOAT32" and conf["output_format"].name == "FLOAT32"
    bufs = core.calls("set_buffer")
    ins = [b for b in bufs if b["stream"].endswith("input_layer1")]
    assert len(ins) == 3 and all(b["shape"] == (S, T, C) and b["c_contiguous"] for b in ins)
    assert all(b["dtype"] == "float32" for b in bufs)
    runs = core.calls("run")
    assert len(runs) == 3 and all(rn == {"n_bindings": 1, "timeout": 1234} for rn in runs)
    assert core.calls("VDevice.release")


def test_auto_picks_legacy_without_create_infer_model(hailo_fakes, tmp_path, monkeypatch):
    hef, onnx_path, _ = _hef(tmp_path, False)
    import hailo_platform

    monkeypatch.delattr(hailo_platform.VDevice, "create_infer_model")
    with HailoRTRunner(hef) as r:
        assert r.api == "vstreams"
        r.infer(np.zeros((2, S, T, C), np.float32))
    core = hailo_fakes
    assert core.calls("ConfigureParams.create_from_hef")[0]["interface"].name == "PCIe"
    assert core.calls("InputVStreamParams.make")[0]["format_type"].name == "FLOAT32"
    assert core.calls("OutputVStreamParams.make")[0]["format_type"].name == "FLOAT32"
    assert [c["shape"] for c in core.calls("InferVStreams.infer")] == [(1, S, T, C), (1, S, T, C)]
    assert core.calls("activate")


def test_nchw_input_rejected_with_hint(hailo_fakes, tmp_path):
    hef, _, _ = _hef(tmp_path, False)
    with HailoRTRunner(hef) as r:
        with pytest.raises(ValueError, match="looks NCHW"):
            r.infer(np.zeros((2, C, S, T), np.float32))
    with pytest.raises(RuntimeError, match="not open"):
        r.infer(np.zeros((1, S, T, C), np.float32))


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="import-hef"):
        HailoRTRunner(tmp_path / "missing.hef")
    (tmp_path / "m.hef").write_bytes(b"\x01HEF")
    with pytest.raises(ValueError, match="api must be"):
        HailoRTRunner(tmp_path / "m.hef", api="grpc")


def test_dequantize_formula():
    q = np.array([[0, 1, 255]], np.uint8)
    np.testing.assert_allclose(dequantize(q, 0.5, 3.0), [[-1.5, -1.0, 126.0]])

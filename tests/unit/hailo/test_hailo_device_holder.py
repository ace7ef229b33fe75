"""One holder of a Hailo-8 at a time, stage 07's release around hailortcli, the multi-process service,
and the fakes' fidelity to the real hailo_platform (names, activate with the scheduler on)."""

from __future__ import annotations

import logging
import shutil
import subprocess

import numpy as np
import pytest

from support.hailo import TINY, make_tiny_hef
from workbench.hailo.runtime import HailoRTRunner

C, S, T, D = TINY["C"], TINY["S"], TINY["T"], TINY["D"]

# hailo_platform.__all__ of HailoRT 4.23.0 (hailo-ai/hailort, branch hailo8,
# hailort/libhailort/bindings/python/platform/hailo_platform/__init__.py)
REAL_ALL_4_23 = {
    "EthernetDevice",
    "DvmTypes",
    "PowerMeasurementTypes",
    "SamplingPeriod",
    "AveragingFactor",
    "MeasurementBufferIndex",
    "UDPRateLimiter",
    "PcieDevice",
    "HEF",
    "ConfigureParams",
    "FormatType",
    "FormatOrder",
    "MipiDataTypeRx",
    "MipiPixelsPerClock",
    "MipiClockSelection",
    "MipiIspImageInOrder",
    "MipiIspImageOutDataType",
    "join_drivers_path",
    "IspLightFrequency",
    "HailoPowerMode",
    "Endianness",
    "HailoStreamInterface",
    "InputVStreamParams",
    "OutputVStreamParams",
    "InputVStreams",
    "OutputVStreams",
    "InferVStreams",
    "HailoStreamDirection",
    "HailoFormatFlags",
    "HailoCpuId",
    "Device",
    "VDevice",
    "HailoRTException",
    "HailoSchedulingAlgorithm",
    "HailoRTStreamAbortedByUser",
    "AsyncInferJob",
    "HailoCommunicationClosedException",
}


_hef = make_tiny_hef


def test_fake_exports_only_real_top_level_names(hailo_fakes):
    import hailo_platform

    public = {n for n in dir(hailo_platform) if not n.startswith("_")} - {"pyhailort"}
    assert public <= REAL_ALL_4_23, public - REAL_ALL_4_23
    assert set(hailo_platform.__all__) <= REAL_ALL_4_23
    for name in ("InferModel", "ConfiguredInferModel", "QuantInfo", "VDeviceParams", "ConfiguredNetwork"):
        assert not hasattr(hailo_platform, name), name
    from hailo_platform.pyhailort import _pyhailort, pyhailort

    assert hasattr(pyhailort, "InferModel") and hasattr(pyhailort, "ConfiguredNetwork")
    assert hasattr(_pyhailort, "QuantInfo") and hasattr(_pyhailort, "VDeviceParams")


def test_create_params_defaults_to_no_scheduler_like_the_binding(hailo_fakes):
    import hailo_platform as hp

    assert hp.VDevice.create_params().scheduling_algorithm == hp.HailoSchedulingAlgorithm.NONE


def test_activate_with_scheduler_warns_and_does_not_raise(hailo_fakes, tmp_path, caplog):
    import hailo_platform as hp

    hef_path = _hef(tmp_path)
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vdev:
        hef = hp.HEF(str(hef_path))
        ng = vdev.configure(hef, hp.ConfigureParams.create_from_hef(hef, interface=hp.HailoStreamInterface.PCIe))[0]
        in_p = hp.InputVStreamParams.make(ng, format_type=hp.FormatType.FLOAT32)
        out_p = hp.OutputVStreamParams.make(ng, format_type=hp.FormatType.FLOAT32)
        with caplog.at_level(logging.WARNING):
            with hp.InferVStreams(ng, in_p, out_p) as pipe, ng.activate(ng.create_params()) as activated:
                assert activated is None  # the real one returns an empty context manager
                name = hef.get_input_vstream_infos()[0].name
                y = pipe.infer({name: np.zeros((1, S, T, C), np.float32)})
        assert next(iter(y.values())).shape == (1, D)
    assert any("activate()" in r.getMessage() and "deprecated" in r.getMessage() for r in caplog.records)


def test_infer_model_without_scheduler_needs_activation(hailo_fakes, tmp_path):
    """With VDevice.create_params() as it comes (scheduler NONE) nothing activates an InferModel; the
    runner therefore turns the scheduler on, as HailoRT's InferModel tutorials do."""
    import hailo_platform as hp

    hef_path = _hef(tmp_path)
    with hp.VDevice(hp.VDevice.create_params()) as vdev:
        model = vdev.create_infer_model(str(hef_path))
        model.input().set_format_type(hp.FormatType.FLOAT32)
        model.output().set_format_type(hp.FormatType.FLOAT32)
        with model.configure() as configured:
            b = configured.create_bindings()
            b.input().set_buffer(np.zeros((S, T, C), np.float32))
            b.output().set_buffer(np.empty((D,), np.float32))
            with pytest.raises(hp.HailoRTException, match="NOT_ACTIVATED"):
                configured.run([b], 1000)
            configured.activate()
            configured.run([b], 1000)
    with HailoRTRunner(hef_path, api="infer_model") as r:
        assert r.infer(np.zeros((1, S, T, C), np.float32)).shape == (1, D)
    sched = [c["params"].scheduling_algorithm for c in hailo_fakes.calls("VDevice") if c["params"] is not None]
    assert sched[-1] == hp.HailoSchedulingAlgorithm.ROUND_ROBIN


def test_second_holder_in_another_process_is_refused(hailo_fakes, tmp_path):
    hef = _hef(tmp_path)
    cli = shutil.which("hailortcli")
    assert cli and cli.endswith("fakes/bin/hailortcli")
    with HailoRTRunner(hef):
        proc = subprocess.run([cli, "run", str(hef), "-t", "1"], capture_output=True, text=True)
        assert proc.returncode != 0 and "HAILO_OUT_OF_PHYSICAL_DEVICES" in proc.stderr
        import hailo_platform as hp

        with pytest.raises(hp.HailoRTException, match="OUT_OF_PHYSICAL_DEVICES"):
            hp.VDevice()  # a second VDevice here too
    proc = subprocess.run([cli, "run", str(hef), "-t", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _device_backend(tmp_path, hef, multi_process_service=False):
    from workbench.evaluate.backends import EvalContext, Hailo8Device

    split = {"npu_input_shape": [1, C, S, T], "npu_output_shape": [1, D], "cut": "after_bound"}
    ctx = EvalContext(
        run_dir=tmp_path,
        split=split,
        host=lambda y: (np.round(y), y),
        checkpoint=tmp_path / "x",
        npu_dynamic_onnx=tmp_path / "x",
        npu_int8_onnx=tmp_path / "x",
        compile_dir=tmp_path,
        hef_path=hef,
        multi_process_service=multi_process_service,
    )
    return Hailo8Device(ctx)


def test_stage07_releases_the_device_for_hailortcli(hailo_fakes, tmp_path):
    from workbench.evaluate.latency import device_cli_measurements

    hef = _hef(tmp_path)
    x = np.random.default_rng(1).normal(size=(2, C, S, T)).astype(np.float32)
    dev = _device_backend(tmp_path, hef)
    y0 = dev.npu_output(x)  # opens and holds the device
    held = device_cli_measurements(hef, 1)  # what stage 07 did before: still holding it
    assert held["measure_latency"] is None and held["benchmark"] is None
    assert "HAILO_OUT_OF_PHYSICAL_DEVICES" in held["errors"]["measure_latency"]
    with dev.released() as released:
        assert released and hailo_fakes.device_holder() is None
        cli = device_cli_measurements(hef, 1)
    assert cli["errors"] == {} and cli["measure_latency"]["hw_latency_ms"] is not None
    assert hailo_fakes.device_holder() is not None  # reopened after the block
    np.testing.assert_array_equal(dev.npu_output(x), y0)
    dev.close()
    assert hailo_fakes.device_holder() is None


def test_multi_process_service_shares_the_device(hailo_fakes, tmp_path):
    from workbench.evaluate.latency import device_cli_measurements

    hef = _hef(tmp_path)
    dev = _device_backend(tmp_path, hef, multi_process_service=True)
    dev.npu_output(np.zeros((1, C, S, T), np.float32))
    with dev.released() as released:
        assert released is False  # nothing to release: the service holds it
        cli = device_cli_measurements(hef, 1, multi_process_service=True)
    assert cli["errors"] == {} and cli["measure_latency"]["power_avg_w"] is None
    assert "--multi-process-service" in cli["measure_latency"]["command"]
    assert "excludes --measure-power" in cli["measure_latency"]["power_error"]
    vparams = [c["params"] for c in hailo_fakes.calls("VDevice") if c["params"] is not None][-1]
    assert vparams.multi_process_service is True and vparams.scheduling_algorithm.name == "ROUND_ROBIN"
    dev.close()


def test_service_needs_the_scheduler(hailo_fakes):
    import hailo_platform as hp

    params = hp.VDevice.create_params()
    params.multi_process_service = True
    with pytest.raises(hp.HailoRTException, match="scheduler"):
        hp.VDevice(params)

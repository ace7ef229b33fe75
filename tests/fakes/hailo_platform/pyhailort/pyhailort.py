"""FAKE hailo_platform.pyhailort.pyhailort for tests (the real one is HailoRT's Python binding).

Mirrors the names and signatures of the hailo8-branch pyhailort.py that REFERENCE.md §3 lists:
VDevice (create_params, create_infer_model, configure), InferModel / InferStream (shape, format,
set_format_type, quant_infos), ConfiguredInferModel (create_bindings, run), HEF (vstream infos),
ConfigureParams, Input/OutputVStreamParams.make, InferVStreams, ConfiguredNetwork.activate,
Device.scan. It records calls and checks what HailoRT would reject: buffers whose shape is not the
stream shape (a batch dimension), non C-contiguous buffers, dtypes that do not match the stream
format, inference on a non-activated network group, two vstream pipelines at once, and a second holder of
the device (one process at a time unless the multi-process service is used; see
``_hailo_fake_core.acquire_device``). With the scheduler on, ``ConfiguredNetwork.activate`` logs
HailoRT's deprecation warning and returns an empty context manager, as the real one does.
The "device" runs the HEF's ONNX on NCHW-transposed input and quantizes the output to the HEF grid.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

import _hailo_fake_core as core
from hailo_platform.pyhailort._pyhailort import QuantInfo, SchedulingAlgorithm, VDeviceParams

SCAN_RESULT: list[str] = ["0000:01:00.0"]   # tests set [] for "no device"


class FormatType(enum.Enum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(enum.Enum):
    AUTO = 0
    NHWC = 1
    NC = 2


class HailoStreamInterface(enum.Enum):
    PCIe = 0
    ETH = 1


HailoSchedulingAlgorithm = SchedulingAlgorithm   # real: a subclass of _pyhailort.SchedulingAlgorithm
_log = logging.getLogger("HailoRT")             # stands in for hailo_platform's default_logger()


@dataclass
class Format:
    type: FormatType
    order: FormatOrder = FormatOrder.NHWC


_NP = {FormatType.UINT8: np.uint8, FormatType.UINT16: np.uint16, FormatType.FLOAT32: np.float32}


class HailoRTException(Exception):
    pass


class _Model:
    """What the fake device computes for one HEF."""

    def __init__(self, hef_path: str):
        self.meta = core.decode_hef(Path(hef_path).read_bytes())
        self.net = core.OnnxNet(core.onnx_from_b64(self.meta["onnx_b64"]))
        self.bits = int(self.meta["bits"])
        self.native = FormatType.UINT16 if self.bits == 16 else FormatType.UINT8
        self.quant = QuantInfo(qp_zp=float(self.meta["qp_zp"]), qp_scale=float(self.meta["qp_scale"]),
                               limvals_min=0.0, limvals_max=0.0)

    def run(self, x_hwc_batch: np.ndarray, out_type: FormatType) -> np.ndarray:
        x = x_hwc_batch.astype(np.float32)
        if self.meta.get("norm"):
            m, s = (np.asarray(v, np.float32) for v in self.meta["norm"])
            x = (x - m) / s
        y = self.net.run_nhwc(x)
        q = core.quantize(y, self.quant.qp_scale, self.quant.qp_zp, self.bits)
        if out_type == FormatType.FLOAT32:
            return ((q - self.quant.qp_zp) * self.quant.qp_scale).astype(np.float32)
        if out_type in (FormatType.AUTO, self.native):
            return q.astype(_NP[self.native])
        raise HailoRTException(f"fake HailoRT: cannot deliver output as {out_type.name} (native {self.native.name})")


class Device:
    @classmethod
    def scan(cls) -> list[str]:
        core.record("Device.scan")
        return list(SCAN_RESULT)


class VDevice:
    def __init__(self, params: Optional[VDeviceParams] = None, *, device_ids: Any = None):
        core.record("VDevice", params=params, device_ids=device_ids)
        self.released = True
        if not SCAN_RESULT:
            raise HailoRTException("fake HailoRT: no device")
        self._params = params if params is not None else VDevice.create_params()
        if self._params.multi_process_service:
            if self._params.scheduling_algorithm == SchedulingAlgorithm.NONE:
                raise HailoRTException("fake HailoRT: HAILO_INVALID_ARGUMENT: Multi-process service is supported "
                                       "only with HailoRT scheduler, please choose scheduling algorithm")
            try:
                core.check_device_free("a VDevice client")
            except RuntimeError as exc:
                raise HailoRTException(f"fake HailoRT: {exc}") from None
        else:
            try:
                core.acquire_device("VDevice")
            except RuntimeError as exc:
                raise HailoRTException(f"fake HailoRT: {exc}") from None
        self.released = False

    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams.default()

    def __enter__(self) -> "VDevice":
        return self

    def __exit__(self, *args: Any) -> bool:
        self.release()
        return False

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        if self.released:
            return
        core.record("VDevice.release")
        if not self._params.multi_process_service:
            core.release_device()
        self.released = True

    @property
    def scheduled(self) -> bool:
        return self._params.scheduling_algorithm != SchedulingAlgorithm.NONE

    def create_infer_model(self, hef_source: Any, name: str = "") -> "InferModel":
        core.record("create_infer_model", hef_source=hef_source)
        if self.released:
            raise HailoRTException("fake HailoRT: VDevice already released")
        if not isinstance(hef_source, (str, bytes)):
            raise ValueError("fake HailoRT: hef_source must be a str path or bytes")
        return InferModel(_Model(hef_source), hef_source, self)

    def configure(self, hef: "HEF", configure_params_by_name: dict = {}) -> list["ConfiguredNetwork"]:  # noqa: B006 (real default)
        core.record("VDevice.configure", params=configure_params_by_name)
        if self.released:
            raise HailoRTException("fake HailoRT: VDevice already released")
        if not isinstance(hef, HEF):
            raise TypeError("fake HailoRT: configure needs a HEF object")
        return [ConfiguredNetwork(hef, self._params)]


# ---- InferModel API ----------------------------------------------------------------------------
class InferModel:
    class InferStream:
        def __init__(self, name: str, shape: tuple, fmt: Format, quant: QuantInfo):
            self._name, self._shape, self._format, self._quant = name, tuple(shape), fmt, quant

        @property
        def name(self) -> str:
            return self._name

        @property
        def shape(self) -> tuple:
            return self._shape

        @property
        def format(self) -> Format:
            return Format(self._format.type, self._format.order)

        def set_format_type(self, type: FormatType) -> None:
            core.record("set_format_type", stream=self._name, type=type)
            self._format = Format(type, self._format.order)

        @property
        def quant_infos(self) -> list[QuantInfo]:
            return [self._quant]

    def __init__(self, model: _Model, hef_path: Any, vdevice: "VDevice"):
        self._m = model
        self._vdevice = vdevice
        meta = model.meta
        in_q = QuantInfo(qp_zp=0.0, qp_scale=1.0, limvals_min=0.0, limvals_max=0.0)
        self._in = self.InferStream(meta["input_name"], tuple(meta["input_shape"]), Format(FormatType.UINT8), in_q)
        self._out = self.InferStream(meta["output_name"], tuple(meta["output_shape"]), Format(model.native, FormatOrder.NC),
                                     model.quant)
        self.batch_size: Optional[int] = None

    def set_batch_size(self, batch_size: int) -> None:
        core.record("set_batch_size", batch_size=batch_size)
        self.batch_size = batch_size

    @property
    def input_names(self) -> list[str]:
        return [self._in.name]

    @property
    def output_names(self) -> list[str]:
        return [self._out.name]

    def input(self, name: str = "") -> "InferModel.InferStream":
        if name not in ("", self._in.name):
            raise HailoRTException(f"fake HailoRT: no input {name!r}")
        return self._in

    def output(self, name: str = "") -> "InferModel.InferStream":
        if name not in ("", self._out.name):
            raise HailoRTException(f"fake HailoRT: no output {name!r}")
        return self._out

    def configure(self) -> "ConfiguredInferModel":
        core.record("InferModel.configure", input_format=self._in.format.type, output_format=self._out.format.type,
                    batch_size=self.batch_size)
        return ConfiguredInferModel(self)


class ConfiguredInferModel:
    class Bindings:
        class InferStream:
            def __init__(self, name: str, shape: tuple, fmt: FormatType):
                self.name, self.shape, self.fmt = name, shape, fmt
                self._buffer: Optional[np.ndarray] = None

            def set_buffer(self, buffer: np.ndarray) -> None:
                core.record("set_buffer", stream=self.name, shape=tuple(buffer.shape), dtype=str(buffer.dtype),
                            c_contiguous=bool(buffer.flags.c_contiguous))
                if tuple(buffer.shape) != tuple(self.shape):
                    raise HailoRTException(f"fake HailoRT: buffer shape {buffer.shape} != stream shape {self.shape} "
                                           f"(buffers carry one frame, no batch dimension)")
                if not buffer.flags.c_contiguous:
                    raise HailoRTException("fake HailoRT: buffer is not C-contiguous")
                want = _NP.get(self.fmt)
                if want is not None and buffer.dtype != want:
                    raise HailoRTException(f"fake HailoRT: buffer dtype {buffer.dtype} does not match format "
                                           f"{self.fmt.name}")
                self._buffer = buffer

            def get_buffer(self, tf_format: Any = False) -> Optional[np.ndarray]:
                return self._buffer

        def __init__(self, model: InferModel):
            self._in = self.InferStream(model._in.name, model._in.shape, model._in.format.type)
            self._out = self.InferStream(model._out.name, model._out.shape, model._out.format.type)

        def input(self, name: str = "") -> "ConfiguredInferModel.Bindings.InferStream":
            return self._in

        def output(self, name: str = "") -> "ConfiguredInferModel.Bindings.InferStream":
            return self._out

    def __init__(self, model: InferModel):
        self._model = model
        self._closed = False
        self._active = False

    def activate(self) -> None:
        """Invalid with the scheduler on (pyhailort.py); needed before run() with it off."""
        core.record("ConfiguredInferModel.activate")
        if self._model._vdevice.scheduled:
            raise HailoRTException("fake HailoRT: HAILO_INVALID_OPERATION: activate() is invalid while the "
                                   "scheduler is enabled")
        self._active = True

    def deactivate(self) -> None:
        core.record("ConfiguredInferModel.deactivate")
        self._active = False

    def __enter__(self) -> "ConfiguredInferModel":
        return self

    def __exit__(self, *args: Any) -> None:
        core.record("ConfiguredInferModel.exit")
        self._closed = True

    def create_bindings(self, input_buffers: Any = None, output_buffers: Any = None) -> "ConfiguredInferModel.Bindings":
        core.record("create_bindings")
        return self.Bindings(self._model)

    def run(self, bindings: list, timeout: int) -> None:
        core.record("run", n_bindings=len(bindings) if isinstance(bindings, list) else None, timeout=timeout)
        if self._closed:
            raise HailoRTException("fake HailoRT: configured model already closed")
        if not isinstance(bindings, list):
            raise TypeError("fake HailoRT: run() takes a list of bindings")
        vdev = self._model._vdevice
        if vdev.released:
            raise HailoRTException("fake HailoRT: the VDevice was released")
        if not vdev.scheduled and not self._active:
            raise HailoRTNetworkGroupNotActivatedException(
                "fake HailoRT: HAILO_NETWORK_GROUP_NOT_ACTIVATED: with scheduling_algorithm NONE, call "
                "activate() first (or create the VDevice with HailoSchedulingAlgorithm.ROUND_ROBIN)")
        for b in bindings:
            x, out = b._in.get_buffer(), b._out.get_buffer()
            if x is None or out is None:
                raise HailoRTException("fake HailoRT: set input and output buffers before run()")
            y = self._model._m.run(x[None], b._out.fmt)[0]
            np.copyto(out, y.reshape(out.shape))


# ---- legacy vstreams API -----------------------------------------------------------------------
@dataclass
class VStreamInfo:
    name: str
    shape: tuple
    format: Format
    quant_info: QuantInfo
    network_name: str = ""


class HEF:
    def __init__(self, hef_source: Any):
        core.record("HEF", hef_source=hef_source)
        self.path = str(hef_source)
        self._m = _Model(self.path)

    def get_input_vstream_infos(self, name: Optional[str] = None) -> list[VStreamInfo]:
        meta = self._m.meta
        return [VStreamInfo(meta["input_name"], tuple(meta["input_shape"]), Format(FormatType.UINT8),
                            QuantInfo(0.0, 1.0, 0.0, 0.0))]

    def get_output_vstream_infos(self, name: Optional[str] = None) -> list[VStreamInfo]:
        meta = self._m.meta
        return [VStreamInfo(meta["output_name"], tuple(meta["output_shape"]), Format(self._m.native, FormatOrder.NC),
                            self._m.quant)]

    def get_network_group_names(self) -> list[str]:
        return [self._m.meta["net_name"]]


class ConfigureParams:
    @staticmethod
    def create_from_hef(hef: HEF, interface: HailoStreamInterface) -> dict:
        core.record("ConfigureParams.create_from_hef", interface=interface)
        if not isinstance(interface, HailoStreamInterface):
            raise TypeError("fake HailoRT: interface must be a HailoStreamInterface")
        return {hef.get_network_group_names()[0]: {"interface": interface}}


class ConfiguredNetwork:
    def __init__(self, hef: HEF, vparams: VDeviceParams):
        self._hef = hef
        self._vparams = vparams
        self.active = False
        self.open_pipelines = 0

    def create_params(self) -> dict:
        return {"network_group": self._hef.get_network_group_names()[0]}

    def is_scheduled(self) -> bool:
        return self._vparams.scheduling_algorithm != SchedulingAlgorithm.NONE

    def activate(self, network_group_params: Any = None) -> Any:
        core.record("activate", params=network_group_params)
        if self.is_scheduled():   # real pyhailort: a deprecation warning and an empty context manager
            _log.warning("Calls to `activate()` when working with scheduler are deprecated! On future versions "
                         "this call will raise an error.")
            return _EmptyContextManager()
        return _Activation(self)


class _EmptyContextManager:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        return None


class _Activation:
    def __init__(self, ng: ConfiguredNetwork):
        self.ng = ng

    def __enter__(self) -> "_Activation":
        self.ng.active = True
        return self

    def __exit__(self, *args: Any) -> None:
        self.ng.active = False


def _vstream_params(kind: str, configured_network: ConfiguredNetwork, format_type: Any) -> dict:
    core.record(f"{kind}VStreamParams.make", format_type=format_type)
    infos = (configured_network._hef.get_input_vstream_infos() if kind == "Input"
             else configured_network._hef.get_output_vstream_infos())
    return {i.name: {"format_type": FormatType.AUTO if format_type is None else format_type} for i in infos}


class InputVStreamParams:
    @staticmethod
    def make(configured_network: ConfiguredNetwork, quantized: Any = None, format_type: Any = None,
             timeout_ms: Any = None, queue_size: Any = None, network_name: Any = None) -> dict:
        return _vstream_params("Input", configured_network, format_type)


class OutputVStreamParams:
    @staticmethod
    def make(configured_network: ConfiguredNetwork, quantized: Any = None, format_type: Any = None,
             timeout_ms: Any = None, queue_size: Any = None, network_name: Any = None) -> dict:
        return _vstream_params("Output", configured_network, format_type)


class InferVStreams:
    def __init__(self, configured_net_group: ConfiguredNetwork, input_vstreams_params: dict,
                 output_vstreams_params: dict, tf_nms_format: bool = False):
        self._ng = configured_net_group
        self._in_p, self._out_p = input_vstreams_params, output_vstreams_params

    def __enter__(self) -> "InferVStreams":
        core.record("InferVStreams.enter")
        if self._ng.open_pipelines:
            raise HailoRTException("fake HailoRT: the network group's vstreams are already in use")
        self._ng.open_pipelines += 1
        return self

    def __exit__(self, *args: Any) -> None:
        self._ng.open_pipelines -= 1

    def infer(self, input_data: dict) -> dict:
        if not self._ng.active and not self._ng.is_scheduled():
            raise HailoRTNetworkGroupNotActivatedException("fake HailoRT: network group is not activated")
        (name, x), = input_data.items()
        core.record("InferVStreams.infer", name=name, shape=tuple(np.shape(x)), dtype=str(np.asarray(x).dtype))
        info_in = self._ng._hef.get_input_vstream_infos()[0]
        if name != info_in.name:
            raise HailoRTException(f"fake HailoRT: unknown input vstream {name!r}")
        in_fmt = self._in_p[name]["format_type"]
        if in_fmt != FormatType.FLOAT32 or np.asarray(x).dtype != np.float32:
            raise HailoRTException(f"fake HailoRT: input format {in_fmt} / dtype {np.asarray(x).dtype}: "
                                   f"send float32 with FormatType.FLOAT32")
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != info_in.shape:
            raise HailoRTException(f"fake HailoRT: input {x.shape} != (batch, {info_in.shape})")
        out_info = self._ng._hef.get_output_vstream_infos()[0]
        out_fmt = self._out_p[out_info.name]["format_type"]
        y = self._ng._hef._m.run(x, out_fmt)
        return {out_info.name: y.reshape(len(x), *out_info.shape)}


class HailoRTNetworkGroupNotActivatedException(HailoRTException):
    pass

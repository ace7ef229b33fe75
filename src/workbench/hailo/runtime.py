"""Run a HEF on a Hailo-8 through HailoRT's Python API (``hailo_platform``), one window per call.

Two code paths, both from REFERENCE.md §3 (hailort branch ``hailo8``, pyhailort.py):

* ``infer_model`` (HailoRT >= 4.18): a VDevice with the scheduler on (``HailoSchedulingAlgorithm.ROUND_ROBIN``,
  as HailoRT's own InferModel tutorials set it: ``VDevice.create_params()`` defaults to NONE in the
  Python binding, and then nothing activates the model), ``create_infer_model(hef)``, batch size 1, FLOAT32 on
  the input and output streams so HailoRT quantizes and dequantizes on the host, ``configure()``,
  ``create_bindings()``, buffers without the batch dimension, ``run([bindings], timeout_ms)``.
* ``vstreams`` (older HailoRT): ``HEF`` + ``ConfigureParams.create_from_hef(PCIe)``,
  ``vdevice.configure``, ``Input/OutputVStreamParams.make(format_type=FLOAT32)``, ``InferVStreams``
  inside ``network_group.activate(...)``.

One process holds a Hailo-8 at a time. ``multi_process_service=True`` opens the VDevice through
HailoRT's multi-process service instead (the ``hailort_service`` daemon must run; it needs the
scheduler, so the legacy path then skips the explicit ``activate()``), which lets ``hailortcli`` share
the device; otherwise close the runner before another process uses the device.

``infer_quantized`` asks for the output in the device's own integer format (UINT8/UINT16) and
dequantizes here with float = (q - qp_zp) * qp_scale, so the integer grid can be inspected. Numbers
from this module come from the ``hailo8-device`` backend.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from workbench.config import HAILO8_DEVICE

BACKEND = HAILO8_DEVICE
_BITS = {"UINT8": 8, "UINT16": 16}
_NP = {"UINT8": np.uint8, "UINT16": np.uint16, "FLOAT32": np.float32}


def hailort_available() -> tuple[bool, str]:
    """(True, "HailoRT x, devices: [...]") when hailo_platform imports and Device.scan() finds a device."""
    try:
        import hailo_platform
    except ImportError as exc:
        return False, f"hailo_platform does not import ({exc}); HailoRT is not installed"
    except Exception as exc:
        return False, f"hailo_platform failed to import: {type(exc).__name__}: {exc}"
    version = _hailort_version(hailo_platform)
    try:
        devices = list(hailo_platform.Device.scan())
    except Exception as exc:
        return False, (
            f"HailoRT {version} imported but Device.scan() failed: {exc} (driver loaded? try `hailortcli scan`)"
        )
    if not devices:
        return False, (
            f"HailoRT {version} imported but no Hailo device found (check `hailortcli scan`, dmesg | grep hailo)"
        )
    return True, f"HailoRT {version}, devices: {devices}"


def _hailort_version(mod: Any) -> str:
    from importlib import metadata

    try:
        return metadata.version("hailort")
    except metadata.PackageNotFoundError:
        return str(getattr(mod, "__version__", "unknown"))


def _type_name(t: Any) -> str:
    name = getattr(t, "name", None)
    return str(name if name is not None else t).split(".")[-1].upper()


def _quant(quant_infos: Any, fmt_type: Any) -> dict:
    qis = list(quant_infos) if quant_infos is not None else []
    if not qis:
        raise RuntimeError("the HEF reports no quant_infos for its output; cannot dequantize")
    if len(qis) > 1:
        zps = {float(q.qp_zp) for q in qis}
        scales = {float(q.qp_scale) for q in qis}
        if len(zps) > 1 or len(scales) > 1:
            raise RuntimeError(
                f"output has {len(qis)} different quant_infos (per-feature quantization); "
                f"infer_quantized supports one scale/zero point per tensor"
            )
    fmt = _type_name(fmt_type)
    if fmt not in _BITS:
        raise RuntimeError(f"device output format is {fmt}, expected UINT8 or UINT16")
    return {"bits": _BITS[fmt], "scale": float(qis[0].qp_scale), "zero_point": float(qis[0].qp_zp), "format": fmt}


def dequantize(q: np.ndarray, scale: float, zero_point: float) -> np.ndarray:
    """float = (q - zero_point) * scale (HailoRT's dequantization, pyhailort)."""
    return ((np.asarray(q).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


class HailoRTRunner:
    """Context manager around one HEF on one device. ``infer`` takes NHWC windows and returns (N, D)."""

    input_name: str
    input_shape: tuple
    output_name: str
    output_shape: tuple
    output_quant: dict

    def __init__(
        self,
        hef_path: Union[str, Path],
        *,
        api: str = "auto",
        timeout_ms: int = 10000,
        multi_process_service: bool = False,
    ):
        self.hef_path = Path(hef_path)
        if not self.hef_path.is_file():
            raise FileNotFoundError(
                f"HEF not found: {self.hef_path} (build it in stage 06 or import one with "
                f"python -m workbench hailo import-hef)"
            )
        if api not in ("auto", "infer_model", "vstreams"):
            raise ValueError(f"api must be 'auto', 'infer_model' or 'vstreams' (got {api!r})")
        self.requested_api = api
        self.api: Optional[str] = None
        self.timeout_ms = int(timeout_ms)
        self.multi_process_service = bool(multi_process_service)
        self.backend = BACKEND
        self._stack: Optional[contextlib.ExitStack] = None
        self._hp: Any = None
        self._float: Any = None  # infer_model path: (configured, bindings, in_buf, out_buf)
        self._quant: Any = None
        self._pipe_kind: Optional[str] = None  # vstreams path: which pipeline is open
        self._pipe_stack: Optional[contextlib.ExitStack] = None

    # -------------------------------------------------------------------------------------------
    def __enter__(self) -> "HailoRTRunner":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False

    def open(self) -> None:
        import hailo_platform as hp

        self._hp = hp
        self._stack = contextlib.ExitStack()
        try:
            api = self.requested_api
            if api == "auto":
                api = "infer_model" if callable(getattr(hp.VDevice, "create_infer_model", None)) else "vstreams"
            self.api = api
            if api == "infer_model":
                self._open_infer_model()
            else:
                self._open_vstreams()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._pipe_stack is not None:
            self._pipe_stack.close()
            self._pipe_stack = None
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._float = self._quant = None

    # ---- InferModel API -----------------------------------------------------------------------
    def _vdevice_params(self, scheduler: bool) -> Any:
        hp = self._hp
        params = hp.VDevice.create_params()
        algo = (
            hp.HailoSchedulingAlgorithm.ROUND_ROBIN
            if (scheduler or self.multi_process_service)
            else hp.HailoSchedulingAlgorithm.NONE
        )
        params.scheduling_algorithm = algo
        if self.multi_process_service:
            params.multi_process_service = True
        return params

    @property
    def scheduled(self) -> bool:
        """True when HailoRT's scheduler runs this model (InferModel path, or the multi-process service)."""
        return self.api == "infer_model" or self.multi_process_service

    def _open_infer_model(self) -> None:
        hp = self._hp
        params = self._vdevice_params(scheduler=True)
        self._vdevice = self._stack.enter_context(hp.VDevice(params))
        probe = self._vdevice.create_infer_model(str(self.hef_path))
        self.input_name = probe.input().name
        self.output_name = probe.output().name
        self.input_shape = tuple(int(d) for d in probe.input().shape)
        self.output_shape = tuple(int(d) for d in probe.output().shape)
        # the device's own output format, read before FLOAT32 is requested
        self.output_quant = _quant(probe.output().quant_infos, probe.output().format.type)
        self._float = self._configure(probe, hp.FormatType.FLOAT32)

    def _configure(self, infer_model: Any, out_type: Any) -> tuple:
        hp = self._hp
        infer_model.set_batch_size(1)
        infer_model.input().set_format_type(hp.FormatType.FLOAT32)
        infer_model.output().set_format_type(out_type)
        configured = self._stack.enter_context(infer_model.configure())
        bindings = configured.create_bindings()
        in_buf = np.empty(self.input_shape, dtype=np.float32)
        out_buf = np.empty(self.output_shape, dtype=_NP[_type_name(out_type)])
        return configured, bindings, in_buf, out_buf

    def _run_infer_model(self, slot: tuple, window: np.ndarray) -> np.ndarray:
        configured, bindings, in_buf, out_buf = slot
        np.copyto(in_buf, window)
        bindings.input().set_buffer(in_buf)
        bindings.output().set_buffer(out_buf)
        configured.run([bindings], self.timeout_ms)
        return np.array(bindings.output().get_buffer(), copy=True).reshape(-1)

    # ---- legacy InferVStreams API -------------------------------------------------------------
    def _open_vstreams(self) -> None:
        hp = self._hp
        params = self._vdevice_params(scheduler=False)  # explicit activate() below needs the scheduler off
        self._vdevice = self._stack.enter_context(hp.VDevice(params))
        self._hef = hp.HEF(str(self.hef_path))
        cfg = hp.ConfigureParams.create_from_hef(self._hef, interface=hp.HailoStreamInterface.PCIe)
        self._ng = self._vdevice.configure(self._hef, cfg)[0]
        self._ng_params = self._ng.create_params()
        in_info = self._hef.get_input_vstream_infos()[0]
        out_info = self._hef.get_output_vstream_infos()[0]
        self.input_name, self.output_name = in_info.name, out_info.name
        self.input_shape = tuple(int(d) for d in in_info.shape)
        self.output_shape = tuple(int(d) for d in out_info.shape)
        self.output_quant = _quant([out_info.quant_info], out_info.format.type)

    def _pipeline(self, kind: str) -> Any:
        """Open (or switch to) the float or quantized-output pipeline; only one is open at a time."""
        if self._pipe_kind == kind:
            return self._pipe
        if self._pipe_stack is not None:
            self._pipe_stack.close()
        hp = self._hp
        out_type = hp.FormatType.FLOAT32 if kind == "float" else getattr(hp.FormatType, self.output_quant["format"])
        in_p = hp.InputVStreamParams.make(self._ng, format_type=hp.FormatType.FLOAT32)
        out_p = hp.OutputVStreamParams.make(self._ng, format_type=out_type)
        self._pipe_stack = contextlib.ExitStack()
        self._pipe = self._pipe_stack.enter_context(hp.InferVStreams(self._ng, in_p, out_p))
        if not self.multi_process_service:  # with the scheduler (the service needs it) activate() is deprecated
            self._pipe_stack.enter_context(self._ng.activate(self._ng_params))
        self._pipe_kind = kind
        return self._pipe

    def _run_vstreams(self, kind: str, window: np.ndarray) -> np.ndarray:
        pipe = self._pipeline(kind)
        res = pipe.infer({self.input_name: np.ascontiguousarray(window[None], dtype=np.float32)})
        return np.asarray(res[self.output_name])[0].reshape(-1)

    # ---- public -------------------------------------------------------------------------------
    def _check(self, x_nhwc: np.ndarray) -> np.ndarray:
        if self._stack is None:
            raise RuntimeError("HailoRTRunner is not open: use `with HailoRTRunner(hef) as r:` or call open()")
        x = np.asarray(x_nhwc)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            hint = ""
            if x.ndim == 4 and tuple(x.shape[1:]) == (self.input_shape[-1], *self.input_shape[:-1]):
                hint = " It looks NCHW: convert with workbench.layout.nchw_to_nhwc."
            raise ValueError(
                f"input has shape {x.shape}; the HEF expects (N, {', '.join(map(str, self.input_shape))}) "
                f"NHWC (normalised windows).{hint}"
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    def infer(self, x_nhwc: np.ndarray) -> np.ndarray:
        """(N, S, T, C) float32 -> (N, D) float32, HailoRT (de)quantizing on the host; one window per run."""
        x = self._check(x_nhwc)
        if self.api == "infer_model":
            rows = [self._run_infer_model(self._float, w) for w in x]
        else:
            rows = [self._run_vstreams("float", w) for w in x]
        return np.stack(rows).astype(np.float32, copy=False)

    def infer_quantized(self, x_nhwc: np.ndarray) -> np.ndarray:
        """Like ``infer`` but the device's UINT8/UINT16 output is dequantized here: (q - zp) * scale."""
        return dequantize(self.infer_raw(x_nhwc), self.output_quant["scale"], self.output_quant["zero_point"])

    def infer_raw(self, x_nhwc: np.ndarray) -> np.ndarray:
        """The device's integer output (N, D) as UINT8/UINT16, before dequantization."""
        x = self._check(x_nhwc)
        fmt = self.output_quant["format"]
        if self.api == "infer_model":
            if self._quant is None:
                probe = self._vdevice.create_infer_model(str(self.hef_path))
                self._quant = self._configure(probe, getattr(self._hp.FormatType, fmt))
            rows = [self._run_infer_model(self._quant, w) for w in x]
        else:
            rows = [self._run_vstreams("quant", w) for w in x]
        q = np.stack(rows)
        if q.dtype != _NP[fmt]:
            raise RuntimeError(f"requested {fmt} output but HailoRT returned {q.dtype}")
        return q

    def describe(self) -> dict:
        """Input/output names, shapes and output quantization, for tables."""
        return {
            "backend": self.backend,
            "api": self.api,
            "hef": str(self.hef_path),
            "input_name": self.input_name,
            "input_shape": list(self.input_shape),
            "output_name": self.output_name,
            "output_shape": list(self.output_shape),
            **{f"output_{k}": v for k, v in self.output_quant.items()},
        }

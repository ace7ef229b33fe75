"""FAKE hailo_sdk_client for tests (the real one is the Hailo Dataflow Compiler, not on PyPI).

Mirrors the calls in REFERENCE.md §2 (ClientRunner, translate_onnx_model, load_model_script,
optimize, infer_context/infer, compile, save_har, get_hn_dict), records them in
``_hailo_fake_core.CALLS`` and checks their arguments the way the DFC would fail on them:
unknown end nodes, non-static or wrong NCHW net_input_shapes, calibration data that is not NHWC of
the HN input, unknown layers in the model script. It logs DFC-style messages through the
``hailo_sdk_client`` logger (calibration entries used, optimization level lowered, 4-bit ratio, output
SNR), appends the same lines to ``hailo_sdk.client.log`` in the working directory as the DFC does
(REFERENCE.md §7), and prints one progress line to stdout.

The optimization level drops to 0 when there is no GPU (``HAS_GPU``, False here) and also when fewer
than 1024 calibration entries are used; the warning names every reason that applies, worded as the
DFC's ("... because there's less data than the recommended amount (1024), and there's no available
GPU"). ``LOG_RECORDS = False`` makes the logger silent, so only the log file has the facts (tests use it
for the DFC builds whose logging never reaches Python's root logger).
"""
from __future__ import annotations

import contextlib
import enum
import json
import logging
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

import _hailo_fake_core as core

__version__ = "0.0.0+fake"
_log = logging.getLogger("hailo_sdk_client.runner")
_log.setLevel(logging.INFO)   # the DFC logs at INFO by default
INFER_OUTPUT_4D = True   # the fake emulator returns dense outputs as (N, 1, 1, D); tests may flip it
HAS_GPU = False          # the fake never has one; tests may flip it
LOG_RECORDS = True       # False: nothing reaches Python logging, only hailo_sdk.client.log
RECOMMENDED_CALIB_ENTRIES = 1024
SDK_LOG_FILE = "hailo_sdk.client.log"


def _emit(level: int, message: str) -> None:
    """A DFC log line: to the logger (unless LOG_RECORDS is off) and to hailo_sdk.client.log in the cwd."""
    if LOG_RECORDS:
        _log.log(level, message)
    tag = {logging.WARNING: "warning", logging.ERROR: "error"}.get(level, "info")
    with open(Path.cwd() / SDK_LOG_FILE, "a") as fh:
        fh.write(f"[{tag}] {message}\n")


class InferenceContext(enum.Enum):
    SDK_NATIVE = "sdk_native"
    SDK_FP_OPTIMIZED = "sdk_fp_optimized"
    SDK_QUANTIZED = "sdk_quantized"
    SDK_BIT_EXACT = "sdk_bit_exact"


_KNOWN_COMMANDS = {"model_optimization_config", "model_optimization_flavor", "quantization_param",
                   "performance_param", "normalization"}


class ClientRunner:
    def __init__(self, hn: Any = None, hw_arch: Optional[str] = None, har: Optional[str] = None):
        core.record("ClientRunner", hw_arch=hw_arch, har=har)
        if hw_arch not in ("hailo8", "hailo8l", "hailo8r", "hailo15h", "hailo10h"):
            raise ValueError(f"fake DFC: unsupported hw_arch {hw_arch!r}")
        self.hw_arch = hw_arch
        self._hn: Optional[dict] = None
        self._net: Optional[core.OnnxNet] = None
        self._script: list[str] = []
        self._state = "empty"
        self._quant: Optional[dict] = None
        self._norm: Optional[tuple[np.ndarray, np.ndarray]] = None
        if har is not None:  # like the real runner: continue from a saved HAR (here the fake's JSON HAR)
            saved = json.loads(Path(har).read_text())
            if not saved.get("fake_har"):
                raise ValueError(f"fake DFC: {har} is not a HAR written by this fake")
            self._hn, self._state = saved["hn"], saved["state"]

    # ---- parse ---------------------------------------------------------------------------------
    def translate_onnx_model(self, model: str, net_name: Optional[str] = None, start_node_names: Any = None,
                             end_node_names: Any = None, net_input_shapes: Any = None, augmented_path: Any = None,
                             disable_shape_inference: bool = False, disable_rt_metadata_extraction: bool = False,
                             net_input_format: Any = None) -> tuple[dict, dict]:
        import onnx
        core.record("translate_onnx_model", model=model, net_name=net_name, start_node_names=start_node_names,
                    end_node_names=end_node_names, net_input_shapes=net_input_shapes)
        data = Path(model).read_bytes()
        graph = onnx.load_from_string(data).graph
        node_names = [n.name for n in graph.node]
        missing = [e for e in (end_node_names or []) if e not in node_names]
        if missing:
            raise ValueError(f"fake DFC: Unable to find end node names: {missing} (nodes: {node_names})")
        net = core.OnnxNet(data)
        if net_input_shapes is not None:
            if set(net_input_shapes) != {net.input_name}:
                raise ValueError(f"fake DFC: net_input_shapes keys {list(net_input_shapes)} != ONNX input "
                                 f"{net.input_name!r}")
            shape = list(net_input_shapes[net.input_name])
            if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape) or shape[0] != 1:
                raise ValueError(f"fake DFC: net_input_shapes must be a static [1, C, H, W]; got {shape}")
            onnx_shape = net.input_nchw
            if any(o > 0 and o != s for o, s in zip(onnx_shape[1:], shape[1:])):
                raise ValueError(f"fake DFC: net_input_shapes {shape} does not match the ONNX input {onnx_shape}")
        else:
            shape = net.input_nchw
            if any(d <= 0 for d in shape):
                raise ValueError("fake DFC: dynamic ONNX input and no net_input_shapes")
        _, c, h, w = shape
        d = int(np.prod([int(x.dim_value) for x in graph.output[0].type.tensor_type.shape.dim][1:]))
        name = net_name or "net"
        layers = {f"{name}/input_layer1": {"type": "input_layer", "input_shapes": [[-1, h, w, c]],
                                           "output_shapes": [[-1, h, w, c]], "original_names": [net.input_name]}}
        for i, node in enumerate(graph.node, 1):
            layers[f"{name}/{node.op_type.lower()}{i}"] = {"type": node.op_type.lower(), "original_names": [node.name]}
        layers[f"{name}/output_layer1"] = {"type": "output_layer", "input_shapes": [[-1, d]],
                                           "output_shapes": [[-1, d]], "original_names": list(end_node_names or [])}
        self._hn = {"name": name, "net_params": {}, "layers": layers}
        self._net, self._d, self._name = net, d, name
        self._state = "parsed"
        return json.dumps(self._hn), {}

    def get_hn_dict(self) -> dict:
        core.record("get_hn_dict")
        if self._hn is None:
            raise RuntimeError("fake DFC: no model loaded")
        return json.loads(json.dumps(self._hn))

    # ---- model script --------------------------------------------------------------------------
    def load_model_script(self, model_script: Optional[str] = None, append: bool = False) -> None:
        core.record("load_model_script", model_script=model_script, append=append)
        if self._hn is None:
            raise RuntimeError("fake DFC: load_model_script before translate_onnx_model")
        lines = [ln.split("#", 1)[0].strip() for ln in (model_script or "").splitlines()]
        lines = [ln for ln in lines if ln]
        short = {n.split("/", 1)[1] for n in self._hn["layers"]}
        for ln in lines:
            m = re.match(r"^(?:\w+\s*=\s*)?(\w+)\((.*)\)$", ln)
            if not m or m.group(1) not in _KNOWN_COMMANDS:
                raise ValueError(f"fake DFC: cannot parse model script line {ln!r}")
            if m.group(1) == "quantization_param":
                layer = m.group(2).split(",", 1)[0].strip().strip("[]")
                if layer not in short:
                    raise ValueError(f"fake DFC: quantization_param: no layer {layer!r} in the model")
            if m.group(1) == "normalization":
                means, stds = re.findall(r"\[([^\]]*)\]", m.group(2))
                self._norm = (np.array([float(v) for v in means.split(",")], np.float32),
                              np.array([float(v) for v in stds.split(",")], np.float32))
        self._script = (self._script if append else []) + lines

    def _script_value(self, command: str, key: str, default: Any) -> Any:
        for ln in self._script:
            if ln.startswith(command + "("):
                m = re.search(rf"\b{key}\s*=\s*(\w+)", ln)
                if m:
                    return m.group(1)
        return default

    def _output_bits(self) -> int:
        for ln in self._script:
            if ln.startswith("quantization_param(") and "output_layer1" in ln and "a16_w16" in ln:
                return 16
        return 8

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self._norm is not None:   # the normalization layer the model script adds on the NPU
            x = (x - self._norm[0]) / self._norm[1]
        return self._net.run_nhwc(x)

    # ---- optimize ------------------------------------------------------------------------------
    def optimize_full_precision(self, calib_data: Any = None) -> None:
        core.record("optimize_full_precision")
        self._state = "fp_optimized"

    def optimize(self, calib_data: Any, data_type: Any = None, work_dir: Any = None) -> None:
        if self._hn is None:
            raise RuntimeError("fake DFC: optimize before translate_onnx_model")
        in_name = f"{self._name}/input_layer1"
        if isinstance(calib_data, dict):
            if set(calib_data) != {in_name}:
                raise ValueError(f"fake DFC: calibration dict keys {list(calib_data)} != HN input layers [{in_name!r}]")
            calib = calib_data[in_name]
        else:
            calib = calib_data
        calib = np.asarray(calib)
        core.record("optimize", calib_shape=tuple(calib.shape), calib_dtype=str(calib.dtype),
                    calib_keys=list(calib_data) if isinstance(calib_data, dict) else None,
                    script=list(self._script))
        want = tuple(self._hn["layers"][in_name]["input_shapes"][0][1:])
        if calib.ndim != 4 or tuple(calib.shape[1:]) != want:
            raise ValueError(f"fake DFC: calibration data shape {calib.shape} does not match the HN input "
                             f"(N, {want}) (NHWC)")
        if calib.dtype != np.float32:
            raise ValueError(f"fake DFC: calibration data must be float32, got {calib.dtype}")
        size = int(self._script_value("model_optimization_config", "calibset_size", 64))
        used = min(size, len(calib))
        level = int(self._script_value("model_optimization_flavor", "optimization_level", 2))
        compression = int(self._script_value("model_optimization_flavor", "compression_level", 1))
        reasons = []
        if used < RECOMMENDED_CALIB_ENTRIES:
            reasons.append(f"there's less data than the recommended amount ({RECOMMENDED_CALIB_ENTRIES})")
        if not HAS_GPU:
            reasons.append("there's no available GPU")
        if level > 0 and reasons:
            _emit(logging.WARNING, "Reducing optimization level to 0 (the accuracy won't be optimized and "
                                   "compression won't be used) because " + ", and ".join(reasons))
            level = 0
        _emit(logging.INFO, f"Using dataset with {used} entries for calibration")
        print(f"Calibration: 100%|##########| {used}/{used} entries")
        y = self._forward(calib[:used])
        bits = self._output_bits()
        scale, zp = core.grid_from(y, bits)
        self._quant = {"bits": bits, "scale": scale, "zp": zp}
        if compression > 0 and level > 0:
            _emit(logging.INFO, "Ratio of weights in 4bit is 0.20")
        deq = (core.quantize(y, scale, zp, bits) - zp) * scale
        noise = float(np.linalg.norm(y - deq))
        snr = float("inf") if noise == 0 else 20 * np.log10(float(np.linalg.norm(y)) / noise)
        _emit(logging.INFO, "Output layers signal-to-noise ratio (SNR): measures the quantization noise "
                            "(higher is better)")
        _emit(logging.INFO, f"\t{self._name}/output_layer1 SNR:\t{snr:.2f} dB")
        self._state = "quantized"

    # ---- emulator ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def infer_context(self, target: InferenceContext, device_ids: Any = None, nms_config: Any = None):
        core.record("infer_context", target=target)
        if not isinstance(target, InferenceContext):
            raise TypeError(f"fake DFC: infer_context needs an InferenceContext, got {target!r}")
        if target in (InferenceContext.SDK_FP_OPTIMIZED, InferenceContext.SDK_QUANTIZED) and self._state != "quantized":
            raise RuntimeError(f"fake DFC: {target.name} needs an optimized model")
        yield {"target": target}

    def infer(self, context: Any, dataset: Any, data_type: Any = "auto", data_count: Any = None, batch_size: int = 8):
        x = np.asarray(dataset)
        core.record("infer", target=context["target"], shape=tuple(x.shape), batch_size=batch_size)
        want = tuple(self._hn["layers"][f"{self._name}/input_layer1"]["input_shapes"][0][1:])
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"fake DFC: emulator input {x.shape} does not match the HN input (N, {want})")
        if len(x) % batch_size:
            raise ValueError(f"fake DFC: {len(x)} entries do not split into batches of {batch_size}")
        y = self._forward(x.astype(np.float32))
        if context["target"] == InferenceContext.SDK_QUANTIZED:
            q = self._quant
            y = ((core.quantize(y, q["scale"], q["zp"], q["bits"]) - q["zp"]) * q["scale"]).astype(np.float32)
        return y.reshape(len(x), 1, 1, -1) if INFER_OUTPUT_4D else y

    # ---- compile -------------------------------------------------------------------------------
    def compile(self) -> bytes:
        core.record("compile")
        if self._state != "quantized":
            raise RuntimeError("fake DFC: compile() needs an optimized (quantized) model")
        in_shape = self._hn["layers"][f"{self._name}/input_layer1"]["input_shapes"][0][1:]
        meta = {"fake": True, "net_name": self._name, "hw_arch": self.hw_arch,
                "onnx_b64": core.onnx_b64(self._net.bytes), "input_name": f"{self._name}/input_layer1",
                "input_shape": in_shape, "output_name": f"{self._name}/output_layer1", "output_shape": [self._d],
                "bits": self._quant["bits"], "qp_scale": self._quant["scale"], "qp_zp": self._quant["zp"],
                "norm": None if self._norm is None else [self._norm[0].tolist(), self._norm[1].tolist()]}
        self._state = "compiled"
        self._hef = core.encode_hef(meta)
        return self._hef

    def save_har(self, har_path: str, compressed_params: bool = True) -> None:
        core.record("save_har", har_path=har_path)
        Path(har_path).write_text(json.dumps({"fake_har": True, "state": self._state, "hn": self._hn,
                                              "script": self._script}))

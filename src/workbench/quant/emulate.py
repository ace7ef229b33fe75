"""INT8 emulation of the NPU part on CPU with ONNX Runtime static quantization (QDQ format).

This is a stand-in for the Hailo quantizer, not a bit-exact copy of it (REFERENCE.md §4): every number
computed from a model written here is tagged ``ort-int8-emulated``; the FP32 reference is ``ort-fp32``.

Settings mirror what the Hailo DFC does by default: per-channel symmetric int8 weights, per-tensor
asymmetric uint8 activations, and *every* float activation quantized (ORT by default leaves ops such as
Tanh or Sub in float; the NPU does not, and the NPU output tensor's quantization step is exactly what
moves FSQ values across a rounding boundary). ``output_16bit`` keeps the NPU output tensor in uint16,
the CPU analogue of ``quantization_param(output_layer1, precision_mode=a16_w16)``; ORT then raises the
graph to opset 21, where QuantizeLinear/DequantizeLinear accept uint16.

``quant_pre_process`` is deliberately not run: the stage-02 export already folds BatchNorm and stores
inferred shapes, and ORT's graph optimizer would rename or fuse nodes that the per-layer sensitivity
pass and the ONNX-to-HN name mapping rely on. ``quantize_static`` runs its own shape inference.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from workbench.config import ORT_FP32, ORT_INT8
from workbench.errors import QuantError
from workbench.graph.export import load_onnx

BACKEND_FP32 = ORT_FP32
BACKEND_INT8 = ORT_INT8
CALIBRATE_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")

# Ops that carry no float activation worth quantizing (shape plumbing) or that ORT cannot quantize.
_NOT_QUANTIZED_OPS = {
    "Shape",
    "Constant",
    "ConstantOfShape",
    "Cast",
    "Gather",
    "Range",
    "NonZero",
    "Round",
    "Floor",
    "Ceil",
    "ArgMax",
}


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds a quantization calibration set (NCHW float32) to ``quantize_static`` in batches."""

    def __init__(self, x_nchw: np.ndarray, input_name: str, batch_size: int = 64):
        x = np.asarray(x_nchw)
        if x.ndim != 4:
            raise QuantError(
                f"quantization calibration data must be 4-D NCHW (N, C, S, T), got {x.shape}; "
                f"convert a saved NHWC set with workbench.layout.nhwc_to_nchw"
            )
        if x.shape[0] == 0:
            raise QuantError("quantization calibration set is empty")
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self._pos = 0

    def __len__(self) -> int:
        return int(np.ceil(self.x.shape[0] / self.batch_size))

    def get_next(self) -> Optional[dict]:
        if self._pos >= self.x.shape[0]:
            return None
        batch = self.x[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._pos = 0


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise QuantError(f"ONNX model not found: {path}")
    return load_onnx(path)


def io_names(model: str | Path | onnx.ModelProto) -> tuple[str, str]:
    """(input name, output name) of a single-input single-output graph such as npu.onnx."""
    m = _load(model)
    inits = {i.name for i in m.graph.initializer}
    inputs = [i.name for i in m.graph.input if i.name not in inits]
    outputs = [o.name for o in m.graph.output]
    if len(inputs) != 1 or len(outputs) != 1:
        raise QuantError(
            f"expected one input and one output (the NPU part), got inputs {inputs} and "
            f"outputs {outputs}; pass npu.onnx / npu_dynamic.onnx from stage 04"
        )
    return inputs[0], outputs[0]


def make_batch_dynamic(src: str | Path | onnx.ModelProto, dst: str | Path, dim_name: str = "N") -> Path:
    """Copy a graph with its batch dimension made symbolic, so batched evaluation works.

    Only the leading dimension of graph inputs and outputs is touched; intermediate value_info is dropped
    and re-inferred, because stale static shapes would contradict the new symbolic batch.
    """
    m = onnx.ModelProto()
    m.CopyFrom(_load(src))
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 0:
            raise QuantError(f"tensor {vi.name} has no shape; cannot make its batch dimension dynamic")
        dims[0].ClearField("dim_value")
        dims[0].dim_param = dim_name
    del m.graph.value_info[:]
    # A Reshape with a hard-coded batch of 1 would break batched runs: flag it instead of guessing.
    for node in m.graph.node:
        if node.op_type == "Reshape":
            for init in m.graph.initializer:
                if init.name == node.input[1]:
                    shape = onnx.numpy_helper.to_array(init)
                    if shape.size and shape[0] == 1:
                        raise QuantError(
                            f"Reshape {node.name} hard-codes batch 1 ({shape.tolist()}); export "
                            f"with a dynamic batch instead (stage 02 writes model_dynamic.onnx)"
                        )
    m = onnx.shape_inference.infer_shapes(m)
    dst = Path(dst)
    onnx.save(m, str(dst))
    return dst


def quantizable_op_types(model: str | Path | onnx.ModelProto) -> list[str]:
    """Op types in the graph whose float activations the NPU would quantize (all but shape plumbing)."""
    m = _load(model)
    return sorted({n.op_type for n in m.graph.node if n.op_type not in _NOT_QUANTIZED_OPS})


def compute_nodes(model: str | Path | onnx.ModelProto) -> list[str]:
    """Names of the nodes a per-layer pass iterates over, in graph order (unnamed nodes are an error)."""
    m = _load(model)
    names = [n.name for n in m.graph.node if n.op_type not in _NOT_QUANTIZED_OPS]
    if any(not n for n in names):
        raise QuantError(
            "the graph has unnamed nodes; per-node quantization needs node names "
            "(torch.onnx.export names them; for hand-built graphs pass name=...)"
        )
    return names


def quantize_npu(
    fp32_model: str | Path,
    out_path: str | Path,
    calib_nchw: np.ndarray,
    *,
    calibrate_method: str = "MinMax",
    output_16bit: bool = False,
    nodes_to_quantize: Optional[Sequence[str]] = None,
    nodes_to_exclude: Optional[Sequence[str]] = None,
    per_channel: bool = True,
    batch_size: int = 64,
    calibration_cache: Optional[str | Path] = None,
    extra_overrides: Optional[dict] = None,
) -> dict:
    """Static QDQ quantization of the NPU graph with a real quantization calibration set.

    ``calib_nchw`` is the set in model-input layout (N, C, S, T), already normalised. Note: through
    ``quantize_static`` ORT's Entropy calibrator runs with num_bins = num_quantized_bins = 128 (the
    options are not passed through), so its KL search has one candidate, the full range: Entropy then
    gives the same ranges as MinMax; Percentile and Distribution do differ. Returns a dict
    describing what was done (backend ``ort-int8-emulated``). ``calibration_cache`` (a JSON path) lets
    repeated calls with the same model and data skip range collection (the sensitivity pass uses it).
    """
    if calibrate_method not in CALIBRATE_METHODS:
        raise QuantError(f"calibrate_method {calibrate_method!r} unknown; use one of {CALIBRATE_METHODS}")
    fp32_model = Path(fp32_model)
    in_name, out_name = io_names(fp32_model)
    op_types = quantizable_op_types(fp32_model)
    overrides: dict = dict(extra_overrides or {})
    if output_16bit:
        overrides[out_name] = [{"quant_type": QuantType.QUInt16}]
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    reader = ArrayCalibrationReader(calib_nchw, in_name, batch_size)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # ORT's quantizer logs through the root logger (pre-processing hints, opset bumps) on every call:
    # collect those records instead of printing them, and return them, so nothing is lost.
    root = logging.getLogger()
    old_level, old_handlers = root.level, root.handlers[:]
    collected: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: collected.append(record.getMessage())  # type: ignore[method-assign]
    root.handlers, root.level = [handler], logging.WARNING
    try:
        quantize_static(
            str(fp32_model),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=per_channel,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
            nodes_to_exclude=list(nodes_to_exclude) if nodes_to_exclude else None,
            calibrate_method=getattr(CalibrationMethod, calibrate_method),
            extra_options=extra,
            calibration_cache_path=str(calibration_cache) if calibration_cache else None,
        )
    finally:
        root.handlers, root.level = old_handlers, old_level
    return {
        "backend": BACKEND_INT8,
        "source_model": str(fp32_model),
        "model": str(out_path),
        "ort_warnings": sorted(set(collected)),
        "quant_format": "QDQ",
        "weights": "int8 symmetric, per-channel" if per_channel else "int8 symmetric",
        "activations": "uint8 asymmetric, per-tensor",
        "calibrate_method": calibrate_method,
        "output_tensor": out_name,
        "output_bits": 16 if output_16bit else 8,
        "calibration_windows": int(np.asarray(calib_nchw).shape[0]),
        "nodes_to_quantize": list(nodes_to_quantize or []),
        "nodes_to_exclude": list(nodes_to_exclude or []),
        "note": (
            "ORT Entropy via quantize_static uses 128 = 128 bins: same ranges as MinMax"
            if calibrate_method == "Entropy"
            else ""
        ),
    }


def output_quantization(model: str | Path | onnx.ModelProto) -> dict:
    """How the graph output tensor is quantized in a QDQ model: dtype, scale and zero point.

    Finds the QuantizeLinear that consumes the float output tensor (ORT renames the graph output's
    producer and inserts Q -> DQ in front of it). Raises when the output is not quantized at all.
    """
    m = _load(model)
    out_name = m.graph.output[0].name
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    node = producer.get(out_name)
    if node is None or node.op_type != "DequantizeLinear":
        raise QuantError(
            f"graph output {out_name} is not produced by DequantizeLinear: the output tensor is "
            f"not quantized (was the producing op type excluded from quantization?)"
        )
    q = producer.get(node.input[0])
    zp = inits.get(node.input[2]) if len(node.input) > 2 else None
    scale = inits.get(node.input[1])
    dtype = str(zp.dtype) if zp is not None else "unknown"
    return {
        "tensor": out_name,
        "dtype": dtype,
        "bits": int(np.dtype(zp.dtype).itemsize * 8) if zp is not None else None,
        "scale": float(np.ravel(scale)[0]) if scale is not None else None,
        "zero_point": int(np.ravel(zp)[0]) if zp is not None else None,
        "quantize_node": q.name if q is not None else None,
    }


def count_qdq(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Number of QuantizeLinear / DequantizeLinear nodes: a quick proof a graph was quantized."""
    m = _load(model)
    ops = [n.op_type for n in m.graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}


def session(model: str | Path) -> ort.InferenceSession:
    """A CPU session from the project's one factory (``workbench.graph.session``)."""
    from workbench.graph.session import ort_session

    return ort_session(model)


def run_onnx(model: str | Path | ort.InferenceSession, x_nchw: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run a single-input graph over ``x_nchw`` in batches; returns its first output, float32.

    The caller tags the result with the backend (``ort-fp32`` for npu_dynamic.onnx,
    ``ort-int8-emulated`` for npu_int8.onnx).
    """
    sess = model if isinstance(model, ort.InferenceSession) else session(model)
    inp = sess.get_inputs()[0]
    batch_dim = inp.shape[0] if inp.shape else None
    if isinstance(batch_dim, int) and batch_dim != batch_size:
        if batch_dim != 1:
            raise QuantError(f"model has a static batch of {batch_dim}; use the batch-dynamic copy")
        batch_size = 1
    x = np.ascontiguousarray(x_nchw, dtype=np.float32)
    outs = [sess.run(None, {inp.name: x[i : i + batch_size]})[0] for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(outs, axis=0).astype(np.float32)

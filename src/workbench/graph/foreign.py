"""ONNX handling for graphs the workbench did not write: their input layout mapped explicitly to the
workbench's (N, C, S, T) windows, batch-1 and batch-dynamic forms (including static exports that hard-code
the batch in Reshape targets), output discovery and batched ONNX Runtime runs.

Model channel ``k`` of the 1-D layouts (N, C, T) and (N, T, C) is workbench channel ``c = k // S`` at
site ``s = k % S`` (channel-major, the order of ``X.reshape(N, C * S, T)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import onnx

from workbench.errors import ModelImportError

LAYOUTS = ("NCST", "NCT", "NTC")
WINDOW_INPUT = "imu"  # the name of the (N, C, S, T) input put in front of 1-D layouts


def tensor_dims(vi: onnx.ValueInfoProto) -> list[Any]:
    """Dims of a value info: ints, names for symbolic axes, None where unknown."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim]


def adapt_input_layout(proto: onnx.ModelProto, layout: str, channels: int, sites: int, window: int) -> onnx.ModelProto:
    """A copy of ``proto`` whose (first) input takes (N, C, S, T) windows, mapped explicitly to ``layout``."""
    if layout not in LAYOUTS:
        raise ModelImportError(f"model_input_layout {layout!r} is not one of {list(LAYOUTS)}")
    if len(proto.graph.input) != 1:
        names = [i.name for i in proto.graph.input]
        raise ModelImportError(f"the model has {len(names)} inputs {names}; the workbench feeds one window tensor")
    inp = proto.graph.input[0]
    dims = tensor_dims(inp)
    want = {"NCST": [channels, sites, window], "NCT": [channels * sites, window], "NTC": [window, channels * sites]}[
        layout
    ]
    if len(dims) != len(want) + 1 or any(isinstance(d, int) and d > 0 and d != w for d, w in zip(dims[1:], want)):
        raise ModelImportError(
            f"the model's input {inp.name!r} has shape {dims}, but model_input_layout {layout!r} on "
            f"this data (C={channels}, S={sites}, T={window}) means (N, {', '.join(map(str, want))}); "
            f"set model_input_layout to the model's layout (one of {list(LAYOUTS)}) or window to "
            f"its window length"
        )
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    if layout == "NCST":
        return out
    if WINDOW_INPUT in {t for n in out.graph.node for t in list(n.input) + list(n.output)}:
        raise ModelImportError(f"the model already uses a tensor named {WINDOW_INPUT!r}; rename it before importing")
    old = out.graph.input[0].name
    elem = out.graph.input[0].type.tensor_type.elem_type
    shape_name = "workbench_layout_shape"
    out.graph.initializer.append(
        onnx.numpy_helper.from_array(np.asarray([0, channels * sites, window], np.int64), shape_name)
    )
    pre = [
        onnx.helper.make_node(
            "Reshape",
            [WINDOW_INPUT, shape_name],
            [old if layout == "NCT" else "workbench_layout_nct"],
            name="workbench_layout/Reshape",
        )
    ]
    if layout == "NTC":
        pre.append(
            onnx.helper.make_node(
                "Transpose", ["workbench_layout_nct"], [old], perm=[0, 2, 1], name="workbench_layout/Transpose"
            )
        )
    nodes = pre + list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.input[:]
    out.graph.input.append(onnx.helper.make_tensor_value_info(WINDOW_INPUT, elem, [dims[0], channels, sites, window]))
    return out


def _unbake_batch_reshapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A static batch-1 export hard-codes the batch in Reshape targets (``[1, 1, 1, 4]``). Where a Reshape's
    input has batch 1 and its target starts with 1, the target's first entry becomes 0 ("copy the input's
    axis 0"), which is the same shape at batch 1 and follows the batch otherwise."""
    from onnx import numpy_helper

    static = with_batch(proto, 1, unbake=False)
    shapes = {vi.name: tensor_dims(vi) for vi in list(static.graph.value_info) + list(static.graph.input)}
    inits = {i.name: i for i in proto.graph.initializer}
    consts = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant"}
    for n in proto.graph.node:
        if n.op_type != "Reshape" or len(n.input) < 2:
            continue
        in_shape = shapes.get(n.input[0])
        if not in_shape or in_shape[0] != 1:
            continue
        allowzero = next((a.i for a in n.attribute if a.name == "allowzero"), 0)
        if allowzero:
            continue
        holder = inits.get(n.input[1])
        if holder is not None:
            target = numpy_helper.to_array(holder)
        elif n.input[1] in consts:
            target = numpy_helper.to_array(consts[n.input[1]].attribute[0].t)
        else:
            continue
        if target.ndim != 1 or target.size == 0 or int(target[0]) != 1:
            continue
        fixed = target.copy()
        fixed[0] = 0
        name = f"{n.input[1]}_batch_follows"
        proto.graph.initializer.append(numpy_helper.from_array(fixed.astype(target.dtype), name))
        n.input[1] = name
    return proto


def with_batch(proto: onnx.ModelProto, batch: Any, unbake: bool = True) -> onnx.ModelProto:
    """A copy whose input and outputs have batch axis ``batch`` (1 = static, a name = dynamic); shapes
    re-inferred. Making a static batch-1 export dynamic also frees Reshapes that hard-code the batch."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    in_dims = tensor_dims(out.graph.input[0]) if out.graph.input else []
    if unbake and not isinstance(batch, int) and in_dims and in_dims[0] == 1:
        out = _unbake_batch_reshapes(out)
    del out.graph.value_info[:]
    for vi in list(out.graph.input) + list(out.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            if isinstance(batch, int):
                dims[0].dim_value = batch
            else:
                dims[0].dim_param = str(batch)
    try:
        return onnx.shape_inference.infer_shapes(out, data_prop=True)
    except Exception:  # shapes help the split; a graph onnx cannot infer still runs
        return out


def opset_of(proto: onnx.ModelProto) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ModelImportError("the model has no default-domain opset import; it is not a standard ONNX graph")


def output_table(proto: onnx.ModelProto) -> list[dict]:
    return [
        {"name": o.name, "shape": tensor_dims(o), "dtype": onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type)}
        for o in proto.graph.output
    ]


def choose_logits_output(proto: onnx.ModelProto, num_classes: int, requested: Optional[str]) -> Optional[str]:
    """``requested`` when given (must be an output; "none" = no class output), else the first float
    output whose last dimension equals ``num_classes``; None when no output fits."""
    names = [o.name for o in proto.graph.output]
    if requested:
        if requested.lower() == "none":
            return None
        if requested not in names:
            raise ModelImportError(
                f"logits_output {requested!r} is not an output of the model; outputs: {output_table(proto)}"
            )
        return requested
    for o in proto.graph.output:
        d = tensor_dims(o)
        if d and d[-1] == num_classes and len(d) == 2 and o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            return o.name
    return None


def to_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """(N, C, S, T) windows in the model's own layout (channel k = c * S + s), as the adapter maps them."""
    n, c, s, t = x.shape
    if layout == "NCST":
        return x
    flat = x.reshape(n, c * s, t)
    return np.ascontiguousarray(flat if layout == "NCT" else flat.transpose(0, 2, 1))


def model_input_shape(layout: str, channels: int, sites: int, window: int, batch: int = 1) -> list[int]:
    return {
        "NCST": [batch, channels, sites, window],
        "NCT": [batch, channels * sites, window],
        "NTC": [batch, window, channels * sites],
    }[layout]


def run_outputs(
    model: str | Path | onnx.ModelProto, x: np.ndarray, names: Optional[Sequence[str]] = None, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Every (or the named) output of a batch-dynamic model on windows ``x``, in batches (ort-fp32)."""
    from workbench.graph.export import ort_session, with_extra_outputs

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    outs = [o.name for o in proto.graph.output]
    names = list(names) if names else outs
    extra = [n for n in names if n not in outs]
    sess = ort_session(with_extra_outputs(proto, extra) if extra else proto)
    inp = sess.get_inputs()[0]
    static = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = static or batch_size
    x = np.ascontiguousarray(x, dtype=np.float32)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(0, len(x), step):
        for n, r in zip(names, sess.run(names, {inp.name: x[i : i + step]})):
            parts[n].append(r)
    return {n: np.concatenate(v) for n, v in parts.items()}

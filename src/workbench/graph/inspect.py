"""Look inside an ONNX graph: nodes, shapes, parameters, MACs and Hailo compatibility.

Why: before handing a graph to the Dataflow Compiler we want to see, without guessing, which nodes
exist, how big they are, and which ones the Hailo-8 cannot run (Round), with their position.
The supported-op table is data (``hailo_ops.json``) with its sources and "documented" vs "assumed".
"""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx

from .export import load_onnx


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    proto = load_onnx(model)
    return onnx.shape_inference.infer_shapes(proto)


def _shapes(proto: onnx.ModelProto) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    for init in proto.graph.initializer:
        out[init.name] = list(init.dims)
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
            out[n.output[0]] = list(n.attribute[0].t.dims)
    return out


def node_table(model: str | Path | onnx.ModelProto) -> "Any":
    """One row per node: index, op_type, name, inputs, outputs, output_shapes (pandas DataFrame)."""
    import pandas as pd

    proto = _load(model)
    shapes = _shapes(proto)
    rows = []
    for i, n in enumerate(proto.graph.node):
        rows.append(
            {
                "index": i,
                "op_type": n.op_type,
                "name": n.name,
                "inputs": ", ".join(t for t in n.input if t),
                "outputs": ", ".join(n.output),
                "output_shapes": "; ".join(str(shapes.get(t, "?")) for t in n.output),
            }
        )
    return pd.DataFrame(rows, columns=["index", "op_type", "name", "inputs", "outputs", "output_shapes"])


def op_histogram(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Count of nodes per op type, most common first."""
    proto = load_onnx(model)
    return dict(Counter(n.op_type for n in proto.graph.node).most_common())


def parameter_count(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Numbers of values in initializers (weights, biases) and in Constant nodes (e.g. FSQ constants)."""
    proto = load_onnx(model)
    init = sum(int(np.prod(i.dims)) if i.dims else 1 for i in proto.graph.initializer)
    const = 0
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
            const += int(np.prod(n.attribute[0].t.dims)) if n.attribute[0].t.dims else 1
    return {"initializer_values": init, "constant_node_values": const, "total": init + const}


def macs_per_layer(model: str | Path | onnx.ModelProto) -> "Any":
    """Multiply-accumulates of Conv, Gemm and MatMul nodes at the model's (static) input shape.

    Conv: N * C_out * prod(out spatial) * (C_in / group) * prod(kernel). Gemm/MatMul: M * N * K
    (times any leading batch dims of MatMul). Symbolic dims count as 1 (i.e. per window).
    """
    import pandas as pd

    proto = _load(model)
    shapes = _shapes(proto)
    inits = {i.name: i for i in proto.graph.initializer}

    def dims(t: str) -> list[int]:
        return [d if isinstance(d, int) and d > 0 else 1 for d in shapes.get(t, [])]

    rows = []
    for i, n in enumerate(proto.graph.node):
        macs = None
        if n.op_type in ("Conv", "ConvTranspose"):
            w = dims(n.input[1])
            out = dims(n.output[0])
            if w and out:
                # weight (C_out, C_in/group, k...) for Conv; MACs per output element = prod(w[1:])
                macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type == "Gemm":
            a, b = dims(n.input[0]), dims(n.input[1])
            attrs = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            if len(b) == 2:  # the weight's shape is always known; the data's may not be (foreign graphs)
                k, nn = (b[1], b[0]) if attrs.get("transB", 0) else (b[0], b[1])
                m = (a[1] if attrs.get("transA", 0) else a[0]) if len(a) == 2 else 1
                macs = m * k * nn
        elif n.op_type == "MatMul":
            a, out = dims(n.input[0]), dims(n.output[0])
            if a and out:
                macs = int(np.prod(out)) * a[-1]
        if macs is not None:
            params = sum(int(np.prod(inits[t].dims)) for t in n.input if t in inits)
            rows.append(
                {
                    "index": i,
                    "name": n.name,
                    "op_type": n.op_type,
                    "output_shape": str(shapes.get(n.output[0], "?")),
                    "params": params,
                    "macs": macs,
                }
            )
    df = pd.DataFrame(rows, columns=["index", "name", "op_type", "output_shape", "params", "macs"])
    return df


@lru_cache(maxsize=1)
def load_hailo_ops() -> dict[str, Any]:
    """The supported-op table shipped with the package (hailo_ops.json), with its sources."""
    text = resources.files("workbench.graph").joinpath("hailo_ops.json").read_text()
    return json.loads(text)


def hailo_compatibility(model: str | Path | onnx.ModelProto, table: Optional[dict] = None) -> "Any":
    """Each node's op checked against the table: supported / unsupported / unknown, with evidence.

    Ops absent from the table are 'unknown' (not assumed either way).
    """
    import pandas as pd

    proto = load_onnx(model)
    ops = (table or load_hailo_ops())["ops"]
    rows = []
    for i, n in enumerate(proto.graph.node):
        entry = ops.get(n.op_type)
        rows.append(
            {
                "index": i,
                "name": n.name,
                "op_type": n.op_type,
                "status": entry["status"] if entry else "unknown",
                "evidence": entry["evidence"] if entry else "none",
                "source": entry["source"] if entry else "",
                "note": entry["note"] if entry else "not in hailo_ops.json: check with the DFC parser",
            }
        )
    return pd.DataFrame(rows, columns=["index", "name", "op_type", "status", "evidence", "source", "note"])


def compat_summary(compat: "Any") -> dict[str, Any]:
    """JSON-able summary: counts per status and the flagged (unsupported/unknown) nodes."""
    flagged = compat[compat["status"] != "supported"]
    return {
        "counts": {str(k): int(v) for k, v in compat["status"].value_counts().items()},
        "unsupported": [
            {"index": int(r.index), "name": r.name, "op_type": r.op_type}
            for r in flagged.itertuples()
            if r.status == "unsupported"
        ],
        "unknown": [
            {"index": int(r.index), "name": r.name, "op_type": r.op_type}
            for r in flagged.itertuples()
            if r.status == "unknown"
        ],
        "first_unsupported": (
            None
            if not (flagged["status"] == "unsupported").any()
            else {
                "index": int(flagged[flagged.status == "unsupported"].iloc[0]["index"]),
                "name": str(flagged[flagged.status == "unsupported"].iloc[0]["name"]),
            }
        ),
        "sources": load_hailo_ops()["sources"],
    }

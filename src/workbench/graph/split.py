"""Cut the inference graph into an NPU part and a host part at the FSQ Round.

The Hailo-8 cannot run Round (REFERENCE.md section 2), so the parsed graph must end before it and the
tail runs on the host. Two cuts:

* ``after_bound``: the NPU outputs the bounded tensor (the Round input, ``tanh(z+shift)*half_l-offset``);
  the host runs Round -> Div -> head.
* ``after_projection``: the NPU outputs the projection (the Gemm output feeding the bound chain);
  the host runs Add -> Tanh -> Mul -> Sub -> Round -> Div -> head.

A cut is only valid when one tensor separates the graph: every host node must depend on the cut
tensor and constants only (a skip connection around the cut makes that impossible, and is refused).
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.errors import SplitError

from .export import load_onnx, ort_session, with_extra_outputs

CutKind = Literal["after_bound", "after_projection"]
CUT_KINDS = ("after_bound", "after_projection")
# Elementwise ops of the FSQ bound chain walked back over for the after_projection cut.
BOUND_CHAIN_OPS = ("Add", "Sub", "Mul", "Div", "Tanh")


# ---- graph helpers --------------------------------------------------------------------------
def _constant_tensors(proto: onnx.ModelProto) -> set[str]:
    names = {i.name for i in proto.graph.initializer}
    names |= {n.output[0] for n in proto.graph.node if n.op_type == "Constant"}
    return names


def _producers(proto: onnx.ModelProto) -> dict[str, tuple[int, onnx.NodeProto]]:
    return {t: (i, n) for i, n in enumerate(proto.graph.node) for t in n.output}


def _ancestors(proto: onnx.ModelProto, tensors: Sequence[str]) -> set[int]:
    """Indices of the nodes needed to compute ``tensors`` from the graph inputs."""
    prod = _producers(proto)
    seen: set[int] = set()
    stack = [t for t in tensors]
    while stack:
        t = stack.pop()
        if t not in prod:
            continue
        i, n = prod[t]
        if i in seen:
            continue
        seen.add(i)
        stack.extend(x for x in n.input if x)
    return seen


def _tensor_shape(proto: onnx.ModelProto, name: str) -> list[Any]:
    """Shape of a tensor from value_info / inputs / outputs (ints, or names for symbolic dims)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    raise SplitError(f"no shape known for tensor {name!r} (run shape inference on the model first)")


def validate_host_ops(host_ops: Sequence[str]) -> list[str]:
    """Host op names must be ONNX operator types (case matters: 'Round', not 'round')."""
    ops = [str(o) for o in host_ops]
    if not ops:
        raise SplitError("host_ops is empty: list the op types the NPU cannot run, e.g. host_ops: [Round]")
    bad = [o for o in ops if not onnx.defs.has(o)]
    if bad:
        all_ops = sorted({s.name for s in onnx.defs.get_all_schemas()})
        hints = {o: difflib.get_close_matches(o, all_ops, n=1, cutoff=0.5) for o in bad}
        text = ", ".join(f"{o!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for o, h in hints.items())
        raise SplitError(f"host_ops contains names that are not ONNX operator types: {text}; fix the "
                         f"'host_ops' parameter (default [Round])")
    return ops


# ---- the cut --------------------------------------------------------------------------------
@dataclass
class CutPlan:
    """Where the graph is cut and what each side holds (indices into graph.node)."""

    cut: str
    tensor: str                     # the cut tensor: NPU output = host input
    end_node: str                   # ONNX node that produces it (Hailo end_node_names)
    host_op_nodes: list[dict]       # [{index, name, op_type}] of the nodes matching host_ops
    npu_nodes: list[int]
    host_nodes: list[int]


def find_cut(proto: onnx.ModelProto, cut: CutKind = "after_bound",
             host_ops: Sequence[str] = ("Round",)) -> CutPlan:
    """Locate the cut tensor for ``cut`` and check that it separates the graph."""
    if cut not in CUT_KINDS:
        raise SplitError(f"unknown cut {cut!r}; the 'cut' parameter is one of {list(CUT_KINDS)}")
    ops = validate_host_ops(host_ops)
    nodes = list(proto.graph.node)
    hits = [(i, n) for i, n in enumerate(nodes) if n.op_type in ops]
    if not hits:
        found = sorted({n.op_type for n in nodes})
        raise SplitError(f"no node of the host op types {ops} in the graph; ops found: {found}. Export the "
                         f"model in eval mode so FSQ emits Round, or set the 'host_ops' parameter to the "
                         f"op types the NPU cannot run")
    consts = _constant_tensors(proto)
    prod = _producers(proto)
    first_i, first = hits[0]
    data_inputs = [t for t in first.input if t and t not in consts]
    if len(data_inputs) != 1:
        raise SplitError(f"{first.op_type} node {first.name!r} (node {first_i}) has {len(data_inputs)} "
                         f"non-constant inputs {data_inputs}; a clean cut needs exactly one")
    tensor = data_inputs[0]
    if cut == "after_projection":
        walked = 0
        while tensor in prod and prod[tensor][1].op_type in BOUND_CHAIN_OPS:
            node = prod[tensor][1]
            ins = [t for t in node.input if t and t not in consts]
            if len(ins) != 1:
                break
            tensor = ins[0]
            walked += 1
        if walked == 0:
            raise SplitError(f"cut 'after_projection' walks back from {first.name!r} over the FSQ bound chain "
                             f"({'/'.join(BOUND_CHAIN_OPS)} with constant operands) but found none; use "
                             f"cut 'after_bound'")
    if tensor not in prod:
        raise SplitError(f"the cut tensor {tensor!r} is a graph input: nothing would run on the NPU")
    end_i, end_node = prod[tensor]
    npu = _ancestors(proto, [tensor])
    needed = _ancestors(proto, [o.name for o in proto.graph.output])
    host = sorted(needed - npu)
    host_outputs = {t for i in host for t in nodes[i].output}
    allowed = {tensor} | consts | host_outputs
    for i in host:
        n = nodes[i]
        if n.op_type == "Constant":
            continue
        leaks = [t for t in n.input if t and t not in allowed]
        if leaks:
            raise SplitError(
                f"Round-region cut at tensor {tensor!r} does not separate the graph: host node {n.name!r} "
                f"({n.op_type}, node {i}) also reads {leaks}, computed before the cut (a skip connection "
                f"around the cut). Only a single tensor path into {first.op_type} can be split; change the "
                f"model so the head depends on the quantized code only")
    stray = [h for h in hits if h[0] in npu]
    if stray:
        raise SplitError(f"host op nodes {[n.name for _, n in stray]} would stay on the NPU side of the cut at "
                         f"{tensor!r}; several host ops on parallel paths cannot be cut at one tensor")
    for o in proto.graph.output:
        if o.name not in host_outputs:
            raise SplitError(f"graph output {o.name!r} is computed before the cut; the host part would not "
                             f"produce it")
    return CutPlan(cut=cut, tensor=tensor, end_node=end_node.name or f"node_{end_i}",
                   host_op_nodes=[{"index": i, "name": n.name, "op_type": n.op_type} for i, n in hits],
                   npu_nodes=sorted(npu), host_nodes=host)


def _extract(proto: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    sub = onnx.utils.Extractor(proto).extract_model(inputs, outputs)
    sub.opset_import.clear()
    sub.opset_import.extend(proto.opset_import)
    sub.ir_version = proto.ir_version
    onnx.checker.check_model(sub, full_check=True)
    return onnx.shape_inference.infer_shapes(sub, strict_mode=True)


# ---- host program (what the numpy post-processor runs) --------------------------------------
HOST_PROGRAM_OPS = ("Add", "Sub", "Mul", "Div", "Tanh", "Round", "Relu", "Gemm", "MatMul", "Identity",
                    "Flatten")


def host_program(host: onnx.ModelProto) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Describe a linear host graph as steps plus constant arrays, in graph order.

    Each step reads the previous step's output (the first reads the host input) and at most one
    constant; the numpy post-processor replays them in the same order so results match ORT.
    """
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in host.graph.initializer}
    for n in host.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    current = host.graph.input[0].name
    steps: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    for n in host.graph.node:
        if n.op_type == "Constant":
            continue
        if n.op_type not in HOST_PROGRAM_OPS:
            raise SplitError(f"host node {n.name!r} is a {n.op_type}, which the numpy post-processor does "
                             f"not implement (it knows {list(HOST_PROGRAM_OPS)})")
        if current not in n.input:
            raise SplitError(f"host graph is not a single chain: {n.name!r} does not read {current!r}")
        pos = list(n.input).index(current)
        others = [t for t in n.input if t and t != current]
        if any(t not in consts for t in others):
            raise SplitError(f"host node {n.name!r} reads non-constant tensors {others}")
        k = len(steps)
        step: dict[str, Any] = {"op": n.op_type, "node": n.name, "input": current, "output": n.output[0]}
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Gemm":
            if pos != 0 or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise SplitError(f"Gemm {n.name!r} uses transA/alpha/beta the post-processor does not support")
            w = consts[n.input[1]].astype(np.float32)
            arrays[f"{k:02d}_W"] = np.ascontiguousarray(w.T if attrs.get("transB", 0) else w)
            if len(n.input) > 2 and n.input[2]:
                arrays[f"{k:02d}_C"] = consts[n.input[2]].astype(np.float32)
        elif n.op_type == "MatMul":
            if pos != 0:
                raise SplitError(f"MatMul {n.name!r} has the data on the right; not supported")
            arrays[f"{k:02d}_W"] = np.ascontiguousarray(consts[others[0]].astype(np.float32))
        elif n.op_type in ("Add", "Sub", "Mul", "Div"):
            arrays[f"{k:02d}_B"] = consts[others[0]].astype(np.float32)
            step["const_first"] = pos == 1            # Sub/Div are not commutative
        elif n.op_type == "Flatten" and attrs.get("axis", 1) != 1:
            raise SplitError(f"Flatten {n.name!r} with axis != 1 is not supported on the host")
        steps.append(step)
        current = n.output[0]
    if current != host.graph.output[0].name:
        raise SplitError(f"host chain ends at {current!r}, not at the graph output {host.graph.output[0].name!r}")
    if sum(s["op"] == "Round" for s in steps) != 1:
        raise SplitError("the host part must contain exactly one Round (the FSQ levels)")
    return steps, arrays


# ---- the split ------------------------------------------------------------------------------
def split_model(model_path: str | Path, dynamic_path: str | Path, out_dir: str | Path,
                cut: CutKind = "after_bound", host_ops: Sequence[str] = ("Round",),
                fsq_levels: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Write npu.onnx, npu_dynamic.onnx, host.onnx, split.json and host_weights.npz into ``out_dir``.

    ``model_path`` is the static batch-1 export (the compiler's input), ``dynamic_path`` the
    batch-dynamic one; both must hold the same node and tensor names. Returns the split.json dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    static = onnx.shape_inference.infer_shapes(load_onnx(model_path))
    dynamic = onnx.shape_inference.infer_shapes(load_onnx(dynamic_path))
    plan = find_cut(static, cut, host_ops)
    plan_d = find_cut(dynamic, cut, host_ops)
    if (plan_d.tensor, plan_d.end_node) != (plan.tensor, plan.end_node):
        raise SplitError(f"the static and batch-dynamic exports cut at different tensors ({plan.tensor!r} vs "
                         f"{plan_d.tensor!r}); export both from the same model")
    in_name = static.graph.input[0].name
    out_names = [o.name for o in static.graph.output]
    npu = _extract(static, [in_name], [plan.tensor])
    npu_dyn = _extract(dynamic, [in_name], [plan.tensor])
    host = _extract(dynamic, [plan.tensor], out_names)
    steps, arrays = host_program(host)
    round_step = next(s for s in steps if s["op"] == "Round")
    onnx.save(npu, str(out_dir / "npu.onnx"))
    onnx.save(npu_dyn, str(out_dir / "npu_dynamic.onnx"))
    onnx.save(host, str(out_dir / "host.onnx"))
    np.savez(out_dir / "host_weights.npz", **arrays)
    rounds = [h for h in plan.host_op_nodes if h["op_type"] == "Round"]
    info: dict[str, Any] = {
        "cut": plan.cut,
        "host_ops": list(host_ops),
        "round_nodes": [h["name"] for h in rounds],
        "host_op_nodes": plan.host_op_nodes,
        "npu_output_tensor": plan.tensor,
        "npu_end_nodes": [plan.end_node],
        "npu_input_name": in_name,
        "npu_input_shape": _tensor_shape(static, in_name),
        "npu_output_shape": _tensor_shape(static, plan.tensor),
        "host_input_name": plan.tensor,
        "host_output_names": out_names,
        "levels_tensor": round_step["output"],
        "fsq_levels": [int(v) for v in fsq_levels] if fsq_levels is not None else None,
        "opset": next(int(i.version) for i in static.opset_import if i.domain in ("", "ai.onnx")),
        "npu_nodes": [static.graph.node[i].name for i in plan.npu_nodes if static.graph.node[i].op_type != "Constant"],
        "host_nodes": [s["node"] for s in steps],
        "host_program": steps,
        "files": {"npu": "npu.onnx", "npu_dynamic": "npu_dynamic.onnx", "host": "host.onnx",
                  "host_weights": "host_weights.npz"},
        "source_models": {"static": str(model_path), "dynamic": str(dynamic_path)},
    }
    (out_dir / "split.json").write_text(json.dumps(info, indent=2))
    return info


# ---- proofs ---------------------------------------------------------------------------------
def _run_batched(sess: Any, feeds_name: str, x: np.ndarray, outputs: list[str], batch: int) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    for i in range(0, len(x), batch):
        res = sess.run(outputs, {feeds_name: x[i:i + batch]})
        for k, r in enumerate(res):
            parts[k].append(r)
    return [np.concatenate(p) for p in parts]


def prove_recomposition(full_path: str | Path, npu_path: str | Path, host_path: str | Path,
                        split_info: dict, x: np.ndarray, batch_size: int = 256) -> dict[str, Any]:
    """host(npu(x)) against full(x) with ONNX Runtime (fp32): levels and logits, bit for bit.

    All three models must be batch-dynamic (npu_dynamic.onnx, host.onnx, model_dynamic.onnx).
    """
    lv = split_info["levels_tensor"]
    full = load_onnx(full_path)
    host = load_onnx(host_path)
    s_full = ort_session(with_extra_outputs(full, [lv]))
    s_npu = ort_session(str(npu_path))
    s_host = ort_session(with_extra_outputs(host, [lv]))
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = split_info["host_output_names"][0]
    f_logits, f_levels = _run_batched(s_full, split_info["npu_input_name"], x, [out, lv], batch_size)
    (mid,) = _run_batched(s_npu, split_info["npu_input_name"], x, [split_info["npu_output_tensor"]], batch_size)
    h_logits, h_levels = _run_batched(s_host, split_info["host_input_name"], mid, [out, lv], batch_size)
    levels_equal = bool(np.array_equal(f_levels, h_levels))
    logits_bitwise = bool(f_logits.tobytes() == h_logits.tobytes())
    return {"n_windows": int(len(x)), "levels_bitwise_equal": levels_equal, "logits_bitwise_equal": logits_bitwise,
            "logits_max_abs_diff": float(np.abs(f_logits.astype(np.float64) - h_logits).max()),
            "passed": levels_equal and logits_bitwise, "backend": "ort-fp32", "npu_output": mid,
            "levels": h_levels, "logits": h_logits}


def host_onnx_outputs(host_path: str | Path, split_info: dict, npu_out: np.ndarray,
                      batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(levels, logits) of host.onnx under ONNX Runtime, the reference for the numpy post-processor."""
    lv = split_info["levels_tensor"]
    sess = ort_session(with_extra_outputs(load_onnx(host_path), [lv]))
    logits, levels = _run_batched(sess, split_info["host_input_name"], np.ascontiguousarray(npu_out, np.float32),
                                  [split_info["host_output_names"][0], lv], batch_size)
    return levels, logits

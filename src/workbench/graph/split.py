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
        raise SplitError(
            f"host_ops contains names that are not ONNX operator types: {text}; fix the "
            f"'host_ops' parameter (default [Round])"
        )
    return ops


# ---- the cut --------------------------------------------------------------------------------
@dataclass
class CutPlan:
    """Where the graph is cut and what each side holds (indices into graph.node)."""

    cut: str
    tensor: str  # the cut tensor: NPU output = host input
    end_node: str  # ONNX node that produces it (Hailo end_node_names)
    host_op_nodes: list[dict]  # [{index, name, op_type}] of the nodes matching host_ops
    npu_nodes: list[int]
    host_nodes: list[int]
    fsq: Optional[Any] = None  # fsq_detect.FsqQuantizer when the FSQ chain was found
    cut_source: str = "fsq"  # "fsq" (found in the graph) or "cut_tensor" (named by the user)


def _single_data_input(node: onnx.NodeProto, consts: set[str]) -> list[str]:
    return [t for t in node.input if t and t not in consts]


def find_cut(
    proto: onnx.ModelProto,
    cut: CutKind = "after_bound",
    host_ops: Sequence[str] = ("Round",),
    cut_tensor: Optional[str] = None,
    fsq_levels: Optional[Sequence[int]] = None,
) -> CutPlan:
    """Locate the cut tensor for ``cut`` and check that it separates the graph.

    The FSQ quantizer is found by its bound chain (``fsq_detect.find_fsq``), also in graphs the
    workbench did not write; ``after_bound`` cuts at the Round input, ``after_projection`` at the
    chain's input. A node of ``host_ops`` that would still run on the NPU moves the cut up to its input.
    ``cut_tensor`` names the cut by hand (graphs whose quantizer is not recognisable as FSQ).
    """
    from .fsq_detect import constant_tensors, find_fsq, find_fsq_or_none

    if cut not in CUT_KINDS:
        raise SplitError(f"unknown cut {cut!r}; the 'cut' parameter is one of {list(CUT_KINDS)}")
    ops = validate_host_ops(host_ops)
    nodes = list(proto.graph.node)
    hits = [(i, n) for i, n in enumerate(nodes) if n.op_type in ops]
    consts = _constant_tensors(proto) | constant_tensors(proto)
    prod = _producers(proto)
    if cut_tensor:
        if cut_tensor not in prod:
            known = [i.name for i in proto.graph.input]
            what = "a graph input: nothing would run on the NPU" if cut_tensor in known else "not produced by any node"
            close = difflib.get_close_matches(cut_tensor, list(prod), n=3, cutoff=0.5)
            raise SplitError(
                f"cut_tensor {cut_tensor!r} is {what}"
                + (f"; did you mean {close}?" if close else "; see stage 03's node table for names")
            )
        tensor = cut_tensor
        fsq = find_fsq_or_none(proto)
        source = "cut_tensor"
    else:
        if not hits:
            found = sorted({n.op_type for n in nodes})
            raise SplitError(
                f"no node of the host op types {ops} in the graph; ops found: {found}. Export the "
                f"model in eval mode so FSQ emits Round, set the 'host_ops' parameter to the "
                f"op types the NPU cannot run, or name the tensor to cut at with cut_tensor"
            )
        fsq = find_fsq(proto, expected_levels=fsq_levels)
        tensor = fsq.bound_tensor if cut == "after_bound" else fsq.projection_tensor
        source = "fsq"
        early = [(i, n) for i, n in hits if i in _ancestors(proto, [tensor])]
        if early:
            i, n = early[0]
            data = _single_data_input(n, consts)
            if len(data) != 1:
                raise SplitError(
                    f"{n.op_type} node {n.name!r} (node {i}) has {len(data)} non-constant inputs "
                    f"{data}; a clean cut needs exactly one"
                )
            tensor = data[0]
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
                f"around the cut). Only a single tensor path into the quantizer can be split; change the "
                f"model so the head depends on the quantized code only, or name another cut_tensor"
            )
    stray = [h for h in hits if h[0] in npu]
    if stray:
        raise SplitError(
            f"host op nodes {[n.name for _, n in stray]} would stay on the NPU side of the cut at "
            f"{tensor!r}; several host ops on parallel paths cannot be cut at one tensor"
        )
    for o in proto.graph.output:
        if o.name not in host_outputs:
            raise SplitError(f"graph output {o.name!r} is computed before the cut; the host part would not produce it")
    return CutPlan(
        cut=cut,
        tensor=tensor,
        end_node=end_node.name or f"node_{end_i}",
        host_op_nodes=[{"index": i, "name": n.name, "op_type": n.op_type} for i, n in hits],
        npu_nodes=sorted(npu),
        host_nodes=host,
        fsq=fsq,
        cut_source=source,
    )


def _shapes_by_running(static: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """Record the shapes of ``names`` that shape inference could not resolve (unfolded exports) by
    running the static batch-1 model once on zeros."""
    known = {vi.name for vi in static.graph.value_info if vi.type.tensor_type.HasField("shape")}
    missing = [n for n in names if n not in known]
    if not missing:
        return static
    inp = static.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if not dims or any(d <= 0 for d in dims):
        return static
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
    outs = ort_session(with_extra_outputs(static, missing)).run(missing, {inp.name: np.zeros(dims, dtype)})
    for name, val in zip(missing, outs):
        old = [vi for vi in static.graph.value_info if vi.name == name]
        for vi in old:
            static.graph.value_info.remove(vi)
        static.graph.value_info.append(
            onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(val.dtype), list(val.shape))
        )
    return static


def _borrow_shapes(dynamic: onnx.ModelProto, static: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """Give ``names`` a shape in the batch-dynamic model where shape inference left none (exports with
    data-dependent reshapes): the static model's shape with a symbolic batch axis."""
    have = {vi.name: vi for vi in dynamic.graph.value_info}
    static_vi = {vi.name: vi for vi in list(static.graph.value_info) + list(static.graph.output)}
    for name in names:
        vi = have.get(name)
        if vi is not None and vi.type.tensor_type.HasField("shape"):
            continue
        src = static_vi.get(name)
        if src is None or not src.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value for d in src.type.tensor_type.shape.dim]
        new = onnx.helper.make_tensor_value_info(name, src.type.tensor_type.elem_type, ["batch"] + dims[1:])
        if vi is not None:
            dynamic.graph.value_info.remove(vi)
        dynamic.graph.value_info.append(new)
    return dynamic


def _extract(proto: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    sub = onnx.utils.Extractor(proto).extract_model(inputs, outputs)
    sub.opset_import.clear()
    sub.opset_import.extend(proto.opset_import)
    sub.ir_version = proto.ir_version
    onnx.checker.check_model(sub, full_check=True)
    return onnx.shape_inference.infer_shapes(sub, strict_mode=True)


# ---- host program (what the numpy post-processor runs) --------------------------------------
HOST_PROGRAM_OPS = (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Tanh",
    "Round",
    "Relu",
    "Gemm",
    "MatMul",
    "Identity",
    "Flatten",
    "Reshape",
    "Unsqueeze",
    "Squeeze",
    "Cast",
)
# Ops that only rearrange a window's values: on the post-processor's (N, width) rows they are no-ops as
# long as the batch axis stays first (checked against inferred shapes, and by stage 04's second proof).
LAYOUT_OPS = ("Identity", "Flatten", "Reshape", "Unsqueeze", "Squeeze")
# Ops that compute shapes (vector-quantize-pytorch's pack/rearrange): skipped, they feed layout ops only.
SHAPE_OPS = (
    "Shape",
    "Size",
    "Gather",
    "Concat",
    "Cast",
    "Slice",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "ConstantOfShape",
    "Mul",
    "Div",
    "Add",
    "Sub",
    "ReduceProd",
    "Range",
    "Equal",
    "Where",
)


def _shape_only_tensors(host: onnx.ModelProto, consts: set[str]) -> set[str]:
    """Tensors derived from Shape/Size of data (plus constants) alone: shape arithmetic, not data."""
    shape: set[str] = set()
    changed = True
    while changed:
        changed = False
        for n in host.graph.node:
            if all(o in shape for o in n.output):
                continue
            if n.op_type in ("Shape", "Size") or (
                n.op_type in SHAPE_OPS
                and any(t in shape for t in n.input if t)
                and all((not t) or t in shape or t in consts for t in n.input)
            ):
                shape.update(o for o in n.output if o)
                changed = True
    return shape


def _batch_first(host: onnx.ModelProto, tensor: str, batch_dim: Any) -> bool:
    for vi in list(host.graph.value_info) + list(host.graph.output):
        if vi.name == tensor:
            dims = vi.type.tensor_type.shape.dim
            if not dims:
                return True
            d = dims[0]
            got = d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            return got is None or got == batch_dim
    return True


def host_program(host: onnx.ModelProto, target: Optional[str] = None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Describe the host graph's path from its input to ``target`` as steps plus constant arrays.

    ``target`` defaults to the first graph output; nodes that do not lead to it (a second Round that
    computes code indices, say) are left out. Each step reads the previous step's output (the first
    reads the host input) and at most one constant; the numpy post-processor replays them in the same
    order so results match ORT. Layout ops (Reshape, Unsqueeze, ...) are no-ops on (N, width) rows;
    the straight-through estimator ``x + (Round(x) - x)`` becomes one ``RoundSTE`` step computed in the
    same float32 order.
    """
    from .fsq_detect import _consumers, _straight_through, constant_tensors

    target = target or host.graph.output[0].name
    consts_v: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in host.graph.initializer}
    for n in host.graph.node:
        if n.op_type == "Constant":
            consts_v[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    consts = set(consts_v) | constant_tensors(host)
    shape_t = _shape_only_tensors(host, consts)
    needed = _ancestors(host, [target])
    current = host.graph.input[0].name
    dims = host.graph.input[0].type.tensor_type.shape.dim
    batch_dim = (dims[0].dim_value if dims[0].HasField("dim_value") else (dims[0].dim_param or None)) if dims else None
    consumers = _consumers(host)
    skip: set[str] = set()
    steps: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    for i, n in enumerate(host.graph.node):
        if i not in needed or n.op_type == "Constant" or n.output[0] in skip:
            continue
        if all(o in shape_t or o in consts for o in n.output if o):
            continue  # shape arithmetic or constant folding, not data
        if n.op_type not in HOST_PROGRAM_OPS:
            raise SplitError(
                f"host node {n.name!r} is a {n.op_type}, which the numpy post-processor does "
                f"not implement (it knows {list(HOST_PROGRAM_OPS)})"
            )
        if current not in n.input:
            raise SplitError(f"host graph is not a single chain: {n.name!r} does not read {current!r}")
        pos = list(n.input).index(current)
        others = [t for t in n.input if t and t != current]
        k = len(steps)
        step: dict[str, Any] = {"op": n.op_type, "node": n.name, "input": current, "output": n.output[0]}
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Cast":
            if attrs.get("to") != onnx.TensorProto.FLOAT:
                raise SplitError(
                    f"Cast {n.name!r} on the way to {target!r} changes the type to "
                    f"{onnx.TensorProto.DataType.Name(attrs.get('to', 0))}; the host post-processor "
                    f"computes in float32 only"
                )
            step.update(op="Identity", onnx_op="Cast")  # float32 -> float32 (exporters' dtype guards)
            steps.append(step)
            current = n.output[0]
            continue
        if n.op_type in LAYOUT_OPS:
            if pos != 0 or any(t not in consts and t not in shape_t for t in others):
                raise SplitError(f"{n.op_type} {n.name!r} reshapes with data-dependent inputs {others}")
            if not _batch_first(host, n.output[0], batch_dim):
                raise SplitError(
                    f"{n.op_type} {n.name!r} moves the batch axis; the host post-processor keeps one row per window"
                )
            step["op"] = "Identity"
            step["onnx_op"] = n.op_type
            steps.append(step)
            current = n.output[0]
            continue
        if any(t not in consts for t in others):
            raise SplitError(f"host node {n.name!r} reads non-constant tensors {others}")
        if n.op_type == "Round":
            ste = _straight_through(n, consumers)
            if ste is not None:
                sub = next(c for c in consumers[n.output[0]] if c.op_type == "Sub")
                add = next(c for c in consumers[sub.output[0]] if c.output[0] == ste)
                skip.update({sub.output[0], add.output[0]})
                step.update(op="RoundSTE", output=ste, onnx_nodes=[n.name, sub.name, add.name])
                steps.append(step)
                current = ste
                continue
        if n.op_type == "Gemm":
            if pos != 0 or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise SplitError(f"Gemm {n.name!r} uses transA/alpha/beta the post-processor does not support")
            w = consts_v[n.input[1]].astype(np.float32)
            arrays[f"{k:02d}_W"] = np.ascontiguousarray(w.T if attrs.get("transB", 0) else w)
            if len(n.input) > 2 and n.input[2]:
                arrays[f"{k:02d}_C"] = consts_v[n.input[2]].astype(np.float32)
        elif n.op_type == "MatMul":
            if pos != 0:
                raise SplitError(f"MatMul {n.name!r} has the data on the right; not supported")
            arrays[f"{k:02d}_W"] = np.ascontiguousarray(_const_value(host, consts_v, others[0]).astype(np.float32))
        elif n.op_type in ("Add", "Sub", "Mul", "Div"):
            arrays[f"{k:02d}_B"] = _const_value(host, consts_v, others[0]).astype(np.float32)
            step["const_first"] = pos == 1  # Sub/Div are not commutative
        steps.append(step)
        current = n.output[0]
    if current != target:
        raise SplitError(f"host chain ends at {current!r}, not at the output {target!r}")
    if sum(s["op"] in ("Round", "RoundSTE") for s in steps) != 1:
        raise SplitError(
            f"the host part must contain exactly one Round (the FSQ levels) on the way to the output {target!r}"
        )
    return steps, arrays


def _const_value(proto: onnx.ModelProto, known: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A constant's value: an initializer/Constant, else computed (unfolded exports)."""
    if name in known:
        return known[name]
    from .fsq_detect import _ConstantEvaluator, constant_tensors

    val = _ConstantEvaluator(proto, constant_tensors(proto)).value(name)
    if val is None:
        raise SplitError(f"cannot evaluate the constant {name!r} of the host part")
    return val


# ---- the split ------------------------------------------------------------------------------
def default_logits_output(proto: onnx.ModelProto, num_classes: Optional[int]) -> Optional[str]:
    """The first graph output whose last dimension equals ``num_classes`` (None when there is none)."""
    for o in proto.graph.output:
        dims = o.type.tensor_type.shape.dim
        if (
            num_classes is not None
            and dims
            and dims[-1].HasField("dim_value")
            and dims[-1].dim_value == num_classes
            and o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        ):
            return o.name
    return None


def split_model(
    model_path: str | Path,
    dynamic_path: str | Path,
    out_dir: str | Path,
    cut: CutKind = "after_bound",
    host_ops: Sequence[str] = ("Round",),
    fsq_levels: Optional[Sequence[int]] = None,
    cut_tensor: Optional[str] = None,
    logits_output: Optional[str] = "",
) -> dict[str, Any]:
    """Write npu.onnx, npu_dynamic.onnx, host.onnx, split.json and host_weights.npz into ``out_dir``.

    ``model_path`` is the static batch-1 export (the compiler's input), ``dynamic_path`` the
    batch-dynamic one; both must hold the same node and tensor names. ``fsq_levels``, when given, must
    equal the levels the graph's FSQ constants encode. ``logits_output`` names the graph output with the
    class logits ("" = the first output; None = the model has none, e.g. an encoder: the numpy host
    program then stops at the FSQ levels). Returns the split.json dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    static = onnx.shape_inference.infer_shapes(load_onnx(model_path))
    dynamic = onnx.shape_inference.infer_shapes(load_onnx(dynamic_path))
    plan = find_cut(static, cut, host_ops, cut_tensor=cut_tensor, fsq_levels=fsq_levels)
    plan_d = find_cut(dynamic, cut, host_ops, cut_tensor=cut_tensor, fsq_levels=fsq_levels)
    probe = [plan.tensor] + ([plan.fsq.levels_tensor] if plan.fsq else [])
    static = _shapes_by_running(static, probe)
    dynamic = _borrow_shapes(dynamic, static, probe)
    if (plan_d.tensor, plan_d.end_node) != (plan.tensor, plan.end_node):
        raise SplitError(
            f"the static and batch-dynamic exports cut at different tensors ({plan.tensor!r} vs "
            f"{plan_d.tensor!r}); export both from the same model"
        )
    in_name = static.graph.input[0].name
    out_names = [o.name for o in static.graph.output]
    if logits_output == "":
        logits_output = out_names[0]
    if logits_output is not None and logits_output not in out_names:
        raise SplitError(f"logits_output {logits_output!r} is not a graph output; outputs: {out_names}")
    npu = _extract(static, [in_name], [plan.tensor])
    npu_dyn = _extract(dynamic, [in_name], [plan.tensor])
    host = _extract(dynamic, [plan.tensor], out_names)
    fsq = plan.fsq
    levels_target = None
    if logits_output is None:
        levels_target = fsq.levels_tensor if fsq is not None else None
        if levels_target is None:
            raise SplitError(
                "a model without a logits output needs an FSQ quantizer the split can find (its "
                "levels are the host part's result); name logits_output or fix the model"
            )
        if levels_target == plan.tensor:
            raise SplitError(f"cut tensor {plan.tensor!r} is the FSQ levels tensor itself: cut before the Round")
        host_prog = _extract(dynamic, [plan.tensor], [levels_target])
    else:
        host_prog = _extract(dynamic, [plan.tensor], [logits_output]) if len(out_names) > 1 else host
    steps, arrays = host_program(host_prog, logits_output or levels_target)
    round_step = next(s for s in steps if s["op"] in ("Round", "RoundSTE"))
    graph_levels = fsq.levels if fsq is not None else None
    if fsq_levels is not None and graph_levels is not None and list(fsq_levels) != graph_levels:
        raise SplitError(f"fsq_levels {list(fsq_levels)} differ from the graph's {graph_levels}")
    onnx.save(npu, str(out_dir / "npu.onnx"))
    onnx.save(npu_dyn, str(out_dir / "npu_dynamic.onnx"))
    onnx.save(host, str(out_dir / "host.onnx"))
    np.savez(out_dir / "host_weights.npz", **arrays)
    rounds = [h for h in plan.host_op_nodes if h["op_type"] == "Round"]
    info: dict[str, Any] = {
        "cut": plan.cut,
        "cut_source": plan.cut_source,
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
        "logits_output": logits_output,
        "levels_tensor": round_step["output"],
        "fsq_levels": graph_levels
        if graph_levels is not None
        else ([int(v) for v in fsq_levels] if fsq_levels is not None else None),
        "fsq_levels_source": "graph constants"
        if graph_levels is not None
        else ("fsq_levels parameter" if fsq_levels is not None else None),
        "fsq": fsq.to_dict() if fsq is not None else None,
        "opset": next(int(i.version) for i in static.opset_import if i.domain in ("", "ai.onnx")),
        "npu_nodes": [static.graph.node[i].name for i in plan.npu_nodes if static.graph.node[i].op_type != "Constant"],
        "host_nodes": [s["node"] for s in steps],
        "host_program": steps,
        "files": {
            "npu": "npu.onnx",
            "npu_dynamic": "npu_dynamic.onnx",
            "host": "host.onnx",
            "host_weights": "host_weights.npz",
        },
        "source_models": {"static": str(model_path), "dynamic": str(dynamic_path)},
    }
    (out_dir / "split.json").write_text(json.dumps(info, indent=2))
    return info


# ---- proofs ---------------------------------------------------------------------------------
def _run_batched(sess: Any, feeds_name: str, x: np.ndarray, outputs: list[str], batch: int) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    for i in range(0, len(x), batch):
        res = sess.run(outputs, {feeds_name: x[i : i + batch]})
        for k, r in enumerate(res):
            parts[k].append(r)
    return [np.concatenate(p) for p in parts]


def prove_recomposition(
    full_path: str | Path,
    npu_path: str | Path,
    host_path: str | Path,
    split_info: dict,
    x: np.ndarray,
    batch_size: int = 256,
) -> dict[str, Any]:
    """host(npu(x)) against full(x) with ONNX Runtime (fp32): levels and every graph output, bit for bit.

    All three models must be batch-dynamic (npu_dynamic.onnx, host.onnx, model_dynamic.onnx).
    """
    lv = split_info["levels_tensor"]
    full = load_onnx(full_path)
    host = load_onnx(host_path)
    s_full = ort_session(with_extra_outputs(full, [lv]))
    s_npu = ort_session(str(npu_path))
    s_host = ort_session(with_extra_outputs(host, [lv]))
    x = np.ascontiguousarray(x, dtype=np.float32)
    outs = list(split_info["host_output_names"])
    names = outs + ([lv] if lv not in outs else [])
    f_all = _run_batched(s_full, split_info["npu_input_name"], x, names, batch_size)
    (mid,) = _run_batched(s_npu, split_info["npu_input_name"], x, [split_info["npu_output_tensor"]], batch_size)
    h_all = _run_batched(s_host, split_info["host_input_name"], mid, names, batch_size)
    equal = {n: bool(f.shape == h.shape and f.tobytes() == h.tobytes()) for n, f, h in zip(names, f_all, h_all)}
    h_levels = h_all[names.index(lv)]
    logits_name = split_info.get("logits_output", outs[0])
    res: dict[str, Any] = {
        "n_windows": int(len(x)),
        "levels_bitwise_equal": equal[lv],
        "outputs_bitwise_equal": equal,
        "passed": all(equal.values()),
        "backend": "ort-fp32",
        "npu_output": mid,
        "levels": h_levels,
    }
    if logits_name:
        f_logits, h_logits = f_all[names.index(logits_name)], h_all[names.index(logits_name)]
        res.update(
            logits_bitwise_equal=equal[logits_name],
            logits=h_logits,
            logits_max_abs_diff=float(np.abs(f_logits.astype(np.float64) - h_logits).max()),
        )
    else:
        res.update(logits_bitwise_equal=None, logits=None, logits_max_abs_diff=None)
    return res


def host_onnx_outputs(
    host_path: str | Path, split_info: dict, npu_out: np.ndarray, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """(levels, logits) of host.onnx under ONNX Runtime, the reference for the numpy post-processor."""
    lv = split_info["levels_tensor"]
    logits_name = split_info.get("logits_output", split_info["host_output_names"][0])
    sess = ort_session(with_extra_outputs(load_onnx(host_path), [lv]))
    x = np.ascontiguousarray(npu_out, np.float32)
    if not logits_name:
        (levels,) = _run_batched(sess, split_info["host_input_name"], x, [lv], batch_size)
        return levels.reshape(len(x), -1), np.empty((len(x), 0), np.float32)
    logits, levels = _run_batched(sess, split_info["host_input_name"], x, [logits_name, lv], batch_size)
    return levels.reshape(len(x), -1), logits

"""Find the FSQ quantizer in an ONNX graph the workbench did not write.

FSQ (REFERENCE.md section 1) rounds ``bound(z) = tanh(z + shift) * half_l - offset`` with
``half_l = (L - 1)(1 + eps) / 2``, ``offset = 0.5`` for even ``L`` (else 0) and
``shift = atanh(offset / half_l)``. Exporters write that chain in many shapes: constants folded into
initializers or computed by Constant/Cast/Mul nodes, operands in either order, ``- offset`` as
``+ (-offset)``, a Reshape/Unsqueeze in front (vector-quantize-pytorch packs ``(B, D)`` to
``(B, 1, 1, D)``), a second Round that turns codes into indices, and the straight-through estimator
exported as ``x + (Round(x) - x)``.

``find_fsq`` walks back from every Round over that chain, evaluates the constants (whatever computes
them), derives the levels ``L`` per dimension and checks that ``offset`` and ``shift`` are the ones FSQ
uses for those levels. A Round whose input is not such a chain (a hand-written quantizer, a rounding in
pre-processing) is not FSQ; ``FsqNotFound`` lists every Round and how to name the cut tensor by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.errors import SplitError

# Shape-only ops that may sit between the projection and the bound chain (and around the codes).
RESHAPE_OPS = ("Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity")
# Ops that may compute a constant from other constants (unfolded exports).
_CONST_OPS_MAX = 64
# Relative tolerance for float32 constants (half_l, offset, shift) against FSQ's formulas.
_RTOL = 1e-5


class FsqNotFound(SplitError):
    """No Round in the graph has an FSQ bound chain as input; the message lists the Round nodes."""


@dataclass
class FsqQuantizer:
    """Where FSQ sits in a graph and which levels its constants encode."""

    round_node: str  # the Round that computes the integer levels
    round_index: int  # its index in graph.node
    bound_tensor: str  # its input: the bounded tensor (cut 'after_bound')
    projection_tensor: str  # the chain's input z, before any leading reshape (cut 'after_projection')
    chain_nodes: list[str]  # bound-chain nodes, input side first
    levels: list[int]  # L per dimension, derived from half_l
    eps: float  # (1 + eps) factor in half_l
    half_l: list[float]
    offset: list[float]
    shift: list[float]
    straight_through: bool  # exported as x + (Round(x) - x)
    levels_tensor: str  # tensor holding the integer levels (Round output or the STE Add)
    other_rounds: list[str] = field(default_factory=list)  # e.g. the Round that computes code indices

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ---- graph helpers --------------------------------------------------------------------------------
def _producers(proto: onnx.ModelProto) -> dict[str, tuple[int, onnx.NodeProto]]:
    return {t: (i, n) for i, n in enumerate(proto.graph.node) for t in n.output}


def _consumers(proto: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in proto.graph.node:
        for t in n.input:
            out.setdefault(t, []).append(n)
    return out


def constant_tensors(proto: onnx.ModelProto) -> set[str]:
    """Tensors that do not depend on a graph input: initializers, Constant outputs and any node output
    computed from those alone (exports without constant folding compute FSQ's constants in-graph)."""
    graph_inputs = {i.name for i in proto.graph.input}
    consts = {i.name for i in proto.graph.initializer} - graph_inputs
    changed = True
    while changed:
        changed = False
        for n in proto.graph.node:
            if all(o in consts for o in n.output):
                continue
            if n.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"):
                continue
            if all((not t) or t in consts for t in n.input):
                consts.update(o for o in n.output if o)
                changed = True
    return consts


class _ConstantEvaluator:
    """Values of constant tensors, computed with ONNX's reference evaluator where needed."""

    def __init__(self, proto: onnx.ModelProto, consts: set[str]):
        self.proto = proto
        self.consts = consts
        self.inits = {i.name: i for i in proto.graph.initializer}
        self.prod = _producers(proto)
        self.cache: dict[str, np.ndarray] = {}

    def value(self, name: str) -> Optional[np.ndarray]:
        if name not in self.consts:
            return None
        if name in self.cache:
            return self.cache[name]
        if name in self.inits:
            val = numpy_helper.to_array(self.inits[name])
        else:
            _, node = self.prod[name]
            if node.op_type == "Constant":
                val = self._constant_node(node)
            else:
                val = self._evaluate(name)
        self.cache[name] = None if val is None else np.asarray(val)
        return self.cache[name]

    @staticmethod
    def _constant_node(node: onnx.NodeProto) -> Optional[np.ndarray]:
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name in ("value_float", "value_int"):
                return np.asarray(onnx.helper.get_attribute_value(a))
            if a.name in ("value_floats", "value_ints"):
                return np.asarray(list(onnx.helper.get_attribute_value(a)))
        return None

    def _evaluate(self, name: str) -> Optional[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        needed: list[onnx.NodeProto] = []
        seen: set[str] = set()
        stack = [name]
        inits: list[onnx.TensorProto] = []
        while stack:
            t = stack.pop()
            if t in seen or not t:
                continue
            seen.add(t)
            if t in self.inits:
                inits.append(self.inits[t])
                continue
            if t not in self.prod:
                return None
            _, node = self.prod[t]
            if node not in needed:
                needed.append(node)
            stack.extend(node.input)
            if len(needed) > _CONST_OPS_MAX:
                return None
        order = {id(n): i for i, n in enumerate(self.proto.graph.node)}
        needed.sort(key=lambda n: order[id(n)])
        graph = onnx.helper.make_graph(
            needed, "const", [], [onnx.helper.make_empty_tensor_value_info(name)], initializer=inits
        )
        model = onnx.helper.make_model(graph, opset_imports=list(self.proto.opset_import))
        try:
            return np.asarray(ReferenceEvaluator(model).run(None, {})[0])
        except Exception:  # an op the reference evaluator lacks: the constant stays unknown (not FSQ)
            return None


# ---- the chain ------------------------------------------------------------------------------------
@dataclass
class _Step:
    node: onnx.NodeProto
    data: str  # the non-constant input
    const: Optional[np.ndarray]
    const_first: bool


def _single_data_step(node: onnx.NodeProto, consts: set[str], ev: _ConstantEvaluator) -> Optional[_Step]:
    ins = [t for t in node.input if t]
    data = [t for t in ins if t not in consts]
    if len(data) != 1:
        return None
    if node.op_type in ("Add", "Sub", "Mul", "Div"):
        other = [t for t in ins if t in consts]
        if len(other) != 1:
            return None
        val = ev.value(other[0])
        if val is None:
            return None
        return _Step(node, data[0], val.astype(np.float64), const_first=ins.index(data[0]) == 1)
    return _Step(node, data[0], None, False)


def _per_dim(val: np.ndarray, dims: int) -> Optional[np.ndarray]:
    flat = np.asarray(val, dtype=np.float64).reshape(-1)
    if flat.size == 1:
        return np.full(dims, float(flat[0]))
    if flat.size == dims:
        return flat
    return None


def _chain_dim(proto: onnx.ModelProto, tensor: str, steps: Sequence[_Step]) -> Optional[int]:
    """Size of the last axis of the bound tensor (from shape inference, else from the constants)."""
    for vi in list(proto.graph.value_info) + list(proto.graph.output) + list(proto.graph.input):
        if vi.name == tensor:
            dims = vi.type.tensor_type.shape.dim
            if dims and dims[-1].HasField("dim_value"):
                return int(dims[-1].dim_value)
    sizes = {int(np.asarray(s.const).size) for s in steps if s.const is not None}
    sizes.discard(1)
    return sizes.pop() if len(sizes) == 1 else None


def _match_chain(
    proto: onnx.ModelProto,
    round_input: str,
    consts: set[str],
    ev: _ConstantEvaluator,
    prod: dict[str, tuple[int, onnx.NodeProto]],
) -> tuple[Optional[dict], str]:
    """Walk back from a Round input over ``[Sub|Add](offset) <- Mul(half_l) <- Tanh <- [Add](shift)``.

    Returns (chain description, '') or (None, why it is not FSQ).
    """
    steps: list[_Step] = []
    tensor = round_input
    # outermost: optional offset (Sub c, Add -c), possibly after a Mul(half_l); then Mul(half_l); Tanh
    offset_step: Optional[_Step] = None
    scale_step: Optional[_Step] = None
    while tensor in prod and prod[tensor][1].op_type in RESHAPE_OPS and prod[tensor][1].input[0] not in consts:
        tensor = prod[tensor][1].input[0]  # a reshape between the chain and the Round
    if tensor not in prod:
        return None, "its input is a graph input"
    node = prod[tensor][1]
    st = _single_data_step(node, consts, ev)
    if st is not None and node.op_type in ("Sub", "Add"):
        if node.op_type == "Sub" and st.const_first:
            return None, f"{node.op_type} {node.name!r} subtracts the data from a constant (c - x), not FSQ"
        offset_step = st
        steps.append(st)
        tensor = st.data
        if tensor not in prod:
            return None, "the chain starts at a graph input"
        node = prod[tensor][1]
        st = _single_data_step(node, consts, ev)
    if st is None or node.op_type not in ("Mul", "Div") or (node.op_type == "Div" and st.const_first):
        return None, (f"its input comes from {node.op_type} {node.name!r}, not from Mul(tanh(..), half_l) [- offset]")
    scale_step = st
    steps.append(st)
    tensor = st.data
    if tensor not in prod or prod[tensor][1].op_type != "Tanh":
        got = prod[tensor][1].op_type if tensor in prod else "a graph input"
        return None, f"the {node.op_type} {node.name!r} scales {got}, not a Tanh"
    tanh = prod[tensor][1]
    steps.append(_Step(tanh, tanh.input[0], None, False))
    tensor = tanh.input[0]
    shift_step: Optional[_Step] = None
    if tensor in prod:
        node = prod[tensor][1]
        st = _single_data_step(node, consts, ev)
        if st is not None and node.op_type in ("Add", "Sub") and not (node.op_type == "Sub" and st.const_first):
            shift_step = st
            steps.append(st)
            tensor = st.data
    chain_input = tensor
    # leading reshapes (vector-quantize-pytorch packs (B, D) into (B, 1, 1, D)) belong to the projection side
    projection = chain_input
    while projection in prod and prod[projection][1].op_type in RESHAPE_OPS:
        node = prod[projection][1]
        if node.input[0] in consts:  # the data operand of every reshape-like op is input 0
            break
        projection = node.input[0]
    dims = _chain_dim(proto, round_input, steps)
    if dims is None:
        return None, "the size of its last axis is unknown (run shape inference)"
    half_l = _per_dim(scale_step.const, dims)
    if half_l is None:
        return None, f"the scale constant has {scale_step.const.size} values for {dims} dimensions"
    if scale_step.node.op_type == "Div":
        half_l = 1.0 / half_l
    offset = np.zeros(dims)
    if offset_step is not None:
        o = _per_dim(offset_step.const, dims)
        if o is None:
            return None, f"the offset constant has {offset_step.const.size} values for {dims} dimensions"
        offset = o if offset_step.node.op_type == "Sub" else -o
    shift = np.zeros(dims)
    if shift_step is not None:
        s = _per_dim(shift_step.const, dims)
        if s is None:
            return None, f"the shift constant has {shift_step.const.size} values for {dims} dimensions"
        shift = s if shift_step.node.op_type == "Add" else -s
    return {
        "half_l": half_l,
        "offset": offset,
        "shift": shift,
        "steps": steps[::-1],
        "chain_input": chain_input,
        "projection": projection,
    }, ""


def levels_from_constants(
    half_l: np.ndarray, offset: np.ndarray, shift: np.ndarray
) -> tuple[Optional[list[int]], float, str]:
    """Derive L per dimension from half_l and check offset/shift against FSQ's formulas.

    Returns (levels, eps, '') or (None, nan, why these constants are not FSQ's).
    """
    half_l = np.asarray(half_l, np.float64)
    if not np.all(np.isfinite(half_l)) or np.any(half_l <= 0):
        return None, float("nan"), f"half_l {half_l.tolist()} is not positive"
    levels = np.rint(2.0 * half_l + 1.0).astype(np.int64)
    if np.any(levels < 2):
        return None, float("nan"), f"half_l {half_l.tolist()} gives fewer than 2 levels"
    eps_per_dim = 2.0 * half_l / (levels - 1) - 1.0
    eps = float(np.median(eps_per_dim))
    if (
        np.any(eps_per_dim < -1e-6)
        or np.any((levels - 1) * eps_per_dim >= 0.5)
        or np.ptp(eps_per_dim) > 1e-5 * max(1.0, abs(eps)) + 1e-6
    ):
        return (
            None,
            float("nan"),
            (
                f"half_l {np.round(half_l, 6).tolist()} is not (L - 1)(1 + eps) / 2 with "
                f"one small eps >= 0 for integer L"
            ),
        )
    want_offset = np.where(levels % 2 == 0, 0.5, 0.0)
    if not np.allclose(offset, want_offset, rtol=_RTOL, atol=1e-6):
        return (
            None,
            float("nan"),
            (f"offset {np.round(offset, 6).tolist()} is not 0.5 for even and 0 for odd levels {levels.tolist()}"),
        )
    want_shift = np.arctanh(want_offset / half_l)
    if not np.allclose(shift, want_shift, rtol=1e-4, atol=1e-6):
        return (
            None,
            float("nan"),
            (f"shift {np.round(shift, 6).tolist()} is not atanh(offset / half_l) = {np.round(want_shift, 6).tolist()}"),
        )
    return [int(v) for v in levels], eps, ""


def _straight_through(round_node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]) -> Optional[str]:
    """The output tensor of ``x + (Round(x) - x)`` when the Round is used that way, else None."""
    x, r = round_node.input[0], round_node.output[0]
    for sub in consumers.get(r, []):
        if sub.op_type == "Sub" and list(sub.input) == [r, x]:
            for add in consumers.get(sub.output[0], []):
                if add.op_type == "Add" and sorted(add.input) == sorted([x, sub.output[0]]):
                    return add.output[0]
    return None


def _describe_round(
    proto: onnx.ModelProto, i: int, n: onnx.NodeProto, prod: dict[str, tuple[int, onnx.NodeProto]]
) -> str:
    src = prod.get(n.input[0])
    feeder = f"{src[1].op_type} {src[1].name!r}" if src else "a graph input"
    return f"{n.name or f'node_{i}'!r} (node {i}, input tensor {n.input[0]!r} from {feeder})"


def find_fsq(proto: onnx.ModelProto, expected_levels: Optional[Sequence[int]] = None) -> FsqQuantizer:
    """The FSQ quantizer of ``proto``; raise FsqNotFound when no Round has an FSQ bound chain.

    With several FSQ Rounds in series (a code-index Round computed from the codes is not one: its input
    is no bound chain) the first in graph order is taken. ``expected_levels`` (the user's ``fsq_levels``)
    must equal the levels the constants encode.
    """
    if not any(vi for vi in proto.graph.value_info):
        try:
            proto = onnx.shape_inference.infer_shapes(proto)
        except Exception:  # shapes only help; constants can still tell the width
            pass
    prod = _producers(proto)
    cons = _consumers(proto)
    consts = constant_tensors(proto)
    ev = _ConstantEvaluator(proto, consts)
    rounds = [(i, n) for i, n in enumerate(proto.graph.node) if n.op_type == "Round"]
    reasons: list[str] = []
    found: list[FsqQuantizer] = []
    for i, n in rounds:
        if n.input[0] in consts:
            reasons.append(f"{_describe_round(proto, i, n, prod)}: rounds a constant")
            continue
        chain, why = _match_chain(proto, n.input[0], consts, ev, prod)
        if chain is None:
            reasons.append(f"{_describe_round(proto, i, n, prod)}: {why}")
            continue
        levels, eps, why = levels_from_constants(chain["half_l"], chain["offset"], chain["shift"])
        if levels is None:
            reasons.append(f"{_describe_round(proto, i, n, prod)}: {why}")
            continue
        ste = _straight_through(n, cons)
        found.append(
            FsqQuantizer(
                round_node=n.name or f"node_{i}",
                round_index=i,
                bound_tensor=n.input[0],
                projection_tensor=chain["projection"],
                chain_nodes=[s.node.name for s in chain["steps"]],
                levels=levels,
                eps=eps,
                half_l=[float(v) for v in chain["half_l"]],
                offset=[float(v) for v in chain["offset"]],
                shift=[float(v) for v in chain["shift"]],
                straight_through=ste is not None,
                levels_tensor=ste or n.output[0],
            )
        )
    if not found:
        raise FsqNotFound(no_fsq_message(rounds, reasons))
    fsq = found[0]
    fsq.other_rounds = [n.name or f"node_{i}" for i, n in rounds if i != fsq.round_index]
    if expected_levels is not None and list(expected_levels) != fsq.levels:
        raise SplitError(
            f"the graph's FSQ quantizer {fsq.round_node!r} encodes levels {fsq.levels} (from its "
            f"constants half_l = {np.round(fsq.half_l, 6).tolist()}), but fsq_levels is "
            f"{list(expected_levels)}; set fsq_levels: {fsq.levels} (or fix the model)"
        )
    return fsq


def no_fsq_message(rounds: Sequence[tuple[int, onnx.NodeProto]], reasons: Sequence[str]) -> str:
    if not rounds:
        head = (
            "the graph has no Round node, so no FSQ quantizer to cut at (was the model exported in eval "
            "mode? FSQ exports torch.round as Round)"
        )
    else:
        head = (
            "no Round in the graph rounds an FSQ bound chain tanh(z + shift) * half_l - offset:\n  - "
            + "\n  - ".join(reasons)
        )
    return (
        f"{head}\nIf the tensor to cut at is known, name it explicitly: -p cut_tensor <tensor name> (the "
        f"NPU part then ends where that tensor is produced and the host runs the rest; fsq_levels must "
        f"then be set by hand)"
    )


def find_fsq_or_none(proto: onnx.ModelProto) -> Optional[FsqQuantizer]:
    """Like find_fsq without the levels check, None when there is no FSQ chain."""
    try:
        return find_fsq(proto)
    except FsqNotFound:
        return None

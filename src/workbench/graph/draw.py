"""Static pictures of an ONNX graph with matplotlib only (no graphviz binary needed).

Why static: Netron is interactive but shows nothing in a rendered HTML report, so the notebooks also
draw the graph as a simple layered DAG (layer = longest path from the input), coloured by Hailo
support, with an optional highlighted cut tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import onnx

from .export import load_onnx

_COLOURS = {"supported": "#cfe8cf", "unsupported": "#f4a6a6", "unknown": "#f8d7a0", None: "#dde6f2"}


def _layers(nodes: list[onnx.NodeProto], keep: set[int]) -> dict[int, int]:
    prod = {t: i for i, n in enumerate(nodes) for t in n.output}
    layer: dict[int, int] = {}
    for i, n in enumerate(nodes):  # graph order is topological
        if i not in keep:
            continue
        parents = [prod[t] for t in n.input if t in prod and prod[t] in keep]
        layer[i] = 1 + max((layer[p] for p in parents), default=-1)
    return layer


def draw_graph(
    model: str | Path | onnx.ModelProto,
    status: Optional[dict[str, str]] = None,
    highlight_tensor: Optional[str] = None,
    focus_op: Optional[str] = None,
    radius: int = 4,
    show_constants: bool = False,
    title: str = "",
    ax: Any = None,
) -> Any:
    """Draw the graph top to bottom; returns the matplotlib Figure.

    ``status`` maps op_type -> 'supported'|'unsupported'|'unknown' (box colour). ``focus_op`` with
    ``radius`` zooms on the layers around the first node of that op type (e.g. 'Round').
    ``highlight_tensor`` draws the edges carrying that tensor in red (the NPU/host cut).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    proto = load_onnx(model)
    proto = onnx.shape_inference.infer_shapes(proto)
    shapes = {
        vi.name: [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim
        ]
        for vi in list(proto.graph.value_info) + list(proto.graph.output)
    }
    nodes = list(proto.graph.node)
    keep = {i for i, n in enumerate(nodes) if show_constants or n.op_type != "Constant"}
    layer = _layers(nodes, keep)
    if focus_op is not None:
        hits = [i for i in keep if nodes[i].op_type == focus_op]
        if not hits:
            raise ValueError(f"no {focus_op} node to zoom on; ops present: {sorted({n.op_type for n in nodes})}")
        centre = layer[min(hits)]
        keep = {i for i in keep if abs(layer[i] - centre) <= radius}
        layer = {i: layer[i] - (centre - radius if centre > radius else 0) for i in keep}
        layer = {i: v - min(layer.values()) for i, v in layer.items()}
    by_layer: dict[int, list[int]] = {}
    for i in sorted(keep):
        by_layer.setdefault(layer[i], []).append(i)
    n_layers = max(by_layer) + 1
    width = max(len(v) for v in by_layer.values())
    pos = {}
    for lay, idx in by_layer.items():
        for k, i in enumerate(idx):
            pos[i] = ((k - (len(idx) - 1) / 2.0) * 3.2, -lay * 1.0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5.0, 3.2 * width + 2.5), max(2.5, 0.62 * n_layers + 1.0)))
    else:
        fig = ax.figure
    prod = {t: i for i, n in enumerate(nodes) for t in n.output}
    for i in keep:
        for t in nodes[i].input:
            p = prod.get(t)
            if p is None or p not in keep:
                continue
            (x0, y0), (x1, y1) = pos[p], pos[i]
            hot = highlight_tensor is not None and t == highlight_tensor
            ax.annotate(
                "",
                xy=(x1, y1 + 0.22),
                xytext=(x0, y0 - 0.22),
                arrowprops=dict(arrowstyle="->", color="#d62728" if hot else "#555555", lw=2.2 if hot else 0.9),
            )
            if hot:
                ax.text(
                    (x0 + x1) / 2 + 0.15, (y0 + y1) / 2, "cut: NPU | host", color="#d62728", fontsize=7, va="center"
                )
    for i in keep:
        n = nodes[i]
        x, y = pos[i]
        st = (status or {}).get(n.op_type)
        box = FancyBboxPatch(
            (x - 1.4, y - 0.22),
            2.8,
            0.44,
            boxstyle="round,pad=0.02",
            fc=_COLOURS.get(st, _COLOURS[None]),
            ec="#d62728" if st == "unsupported" else "#333333",
            lw=1.6 if st == "unsupported" else 0.8,
        )
        ax.add_patch(box)
        shape = shapes.get(n.output[0])
        short = n.name if len(n.name) <= 26 else "..." + n.name[-23:]
        ax.text(x, y + 0.07, f"[{i}] {n.op_type}", ha="center", va="center", fontsize=7.5, weight="bold")
        ax.text(x, y - 0.11, f"{short}  {shape if shape is not None else ''}", ha="center", va="center", fontsize=5.8)
    xs = [p[0] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.8, max(xs) + 2.6)
    ax.set_ylim(-(n_layers - 1) - 0.6, 0.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    if status:
        from matplotlib.patches import Patch

        handles = [Patch(fc=_COLOURS[k], ec="#333333", label=k) for k in ("supported", "unsupported", "unknown")]
        ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def status_by_op(compat: Any) -> dict[str, str]:
    """op_type -> status from a hailo_compatibility() table."""
    return {str(r.op_type): str(r.status) for r in compat.itertuples()}

"""Per-layer quantization sensitivity: which layers move the FSQ codes.

Two passes over every compute node of the NPU graph, each measured as FSQ code-flip rate against FP32
(backend ``ort-int8-emulated``):
- *only this layer INT8* (``nodes_to_quantize=[node]``, all others FP32): the flips one layer causes;
- *all INT8 but this layer* (``nodes_to_exclude=[node]``): what keeping that one layer in higher
  precision buys. Excluding means FP32 here, so the gain is an upper bound of what
  ``precision_mode=a16_w16`` on the Hailo can give.

ONNX node names are not Hailo HN layer names. ``hn_layer_guess`` is a best-effort mapping in the DFC's
naming style (conv1, fc1, ew_add1, ...); stage 06 must check it against ``runner.get_hn_dict()``
(each HN layer lists its ``original_names``) before using a line it emits.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import onnx
import pandas as pd
from tqdm import tqdm

from workbench.graph.export import load_onnx

from .analysis import Postprocess, code_flip_rate, level_flip_rate
from .emulate import BACKEND_INT8, compute_nodes, quantize_npu, run_onnx

# DFC-style layer kinds; activations directly after a conv/dense are fused into it by the DFC.
_HN_KIND = {
    "Conv": "conv",
    "ConvTranspose": "deconv",
    "Gemm": "fc",
    "MatMul": "fc",
    "GlobalAveragePool": "avgpool",
    "AveragePool": "avgpool",
    "ReduceMean": "reduce_mean",
    "MaxPool": "maxpool",
    "Add": "ew_add",
    "Sub": "ew_sub",
    "Mul": "ew_mult",
    "Div": "ew_div",
    "Tanh": "activation",
    "Sigmoid": "activation",
    "Relu": "activation",
    "Concat": "concat",
    "BatchNormalization": "batch_norm",
}
_FUSABLE_ACT = {"Relu", "Clip", "LeakyRelu"}
_FOLDED = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Constant"}


def hn_layer_guesses(model: str | Path | onnx.ModelProto) -> dict[str, str]:
    """ONNX node name -> guessed HN layer name (without the ``<net>/`` prefix).

    A guess, not a fact: Relu after Conv/Gemm maps to that layer (the DFC fuses it), shape-only ops map
    to ``(folded)``, and numbering counts kinds in graph order. Verify against ``get_hn_dict()``.
    """
    m = load_onnx(model)
    producer = {o: n for n in m.graph.node for o in n.output}
    counters: dict[str, int] = defaultdict(int)
    names: dict[str, str] = {}
    for node in m.graph.node:
        src = producer.get(node.input[0]) if node.input else None
        if (
            node.op_type in _FUSABLE_ACT
            and src is not None
            and src.op_type in ("Conv", "Gemm", "MatMul")
            and src.name in names
        ):
            names[node.name] = names[src.name]
            continue
        if node.op_type in _FOLDED:
            names[node.name] = "(folded)"
            continue
        kind = _HN_KIND.get(node.op_type, node.op_type.lower())
        counters[kind] += 1
        names[node.name] = f"{kind}{counters[kind]}"
    return names


def layer_sensitivity(
    fp32_model: str | Path,
    calib_nchw: np.ndarray,
    eval_nchw: np.ndarray,
    postprocess: Postprocess,
    workdir: str | Path,
    *,
    calibrate_method: str = "MinMax",
    nodes: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Code- and level-flip rates with one layer INT8 at a time and one layer kept FP32 at a time.

    Range collection runs once (a calibration cache in ``workdir``); each variant then only rewrites
    the graph, so the pass costs about two quantizations plus two evaluations per node.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cache = workdir / "quant_ranges.json"
    if cache.exists():
        cache.unlink()
    nodes = list(nodes) if nodes is not None else compute_nodes(fp32_model)
    graph = load_onnx(fp32_model)
    op_of = {n.name: n.op_type for n in graph.graph.node}
    unknown = [n for n in nodes if n not in op_of]
    if unknown:
        raise ValueError(f"nodes {unknown} are not in {fp32_model}; names: {list(op_of)}")
    guesses = hn_layer_guesses(graph)
    out_names = {o.name for o in graph.graph.output}
    makes_output = {n.name for n in graph.graph.node if set(n.output) & out_names}

    ref_levels, _ = postprocess(run_onnx(fp32_model, eval_nchw))

    def flips(**kw: Any) -> tuple[float, float]:
        out = workdir / "variant.onnx"
        quantize_npu(fp32_model, out, calib_nchw, calibrate_method=calibrate_method, calibration_cache=cache, **kw)
        lv, _ = postprocess(run_onnx(out, eval_nchw))
        return code_flip_rate(ref_levels, lv), level_flip_rate(ref_levels, lv)

    full_code, full_level = flips()
    rows = []
    for node in tqdm(nodes, desc="per-layer sensitivity", disable=not progress):
        only_code, only_level = flips(nodes_to_quantize=[node])
        rest_code, rest_level = flips(nodes_to_exclude=[node])
        rows.append(
            {
                "node": node,
                "op_type": op_of[node],
                "hn_layer_guess": guesses.get(node, ""),
                "produces_npu_output": node in makes_output,
                "code_flip_only_this_int8": only_code,
                "level_flip_only_this_int8": only_level,
                "code_flip_all_but_this_int8": rest_code,
                "level_flip_all_but_this_int8": rest_level,
                "code_flip_all_int8": full_code,
                "code_flip_reduction_if_kept": full_code - rest_code,
                "backend": BACKEND_INT8,
            }
        )
    df = pd.DataFrame(rows)
    df["rank"] = df["code_flip_reduction_if_kept"].rank(ascending=False, method="first").astype(int)
    return df.sort_values("rank").reset_index(drop=True)


def sixteen_bit_candidates(sens: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
    """Top layers by flip reduction when kept in higher precision; only those that reduce flips at all,
    collapsed to one row per guessed HN layer (a fused Conv+Relu is one Hailo layer)."""
    df = sens[(sens["code_flip_reduction_if_kept"] > 0) & (sens["hn_layer_guess"] != "(folded)")]
    df = df.sort_values("code_flip_reduction_if_kept", ascending=False).drop_duplicates("hn_layer_guess")
    return df.head(top_k).reset_index(drop=True)


def alls_lines(candidates: pd.DataFrame, net_name: str = "<net>") -> list[str]:
    """``quantization_param(<layer>, precision_mode=a16_w16)`` lines for stage 06, each with the ONNX node
    it came from and a reminder that the HN name is a guess to verify with ``runner.get_hn_dict()``."""
    lines = []
    for _, r in candidates.iterrows():
        lines.append(
            f"quantization_param({r['hn_layer_guess']}, precision_mode=a16_w16)  "
            f"# ONNX node {r['node']} ({r['op_type']}), HN name guessed as {net_name}/"
            f'{r["hn_layer_guess"]}: verify in runner.get_hn_dict()["layers"][...]["original_names"]; '
            f"emulated flip reduction {r['code_flip_reduction_if_kept']:.4f} (ort-int8-emulated)"
            + (
                "; it produces the NPU output, so output_layer1 needs a16_w16 too"
                if r.get("produces_npu_output", False)
                else ""
            )
        )
    return lines

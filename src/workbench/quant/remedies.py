"""Post-training remedies against FSQ code flips under INT8, and the ladder that picks one.

Each rung is a combination of
- **input-channel equalization** folded into the first convolution: input channel c is divided by
  s_c = absmax_c / max_c absmax_c (over the quantization calibration set) and the first convolution's
  weights for that channel are multiplied by s_c. In real arithmetic the graph output is unchanged
  (conv is linear in its input); the shared 8-bit input range then covers every channel with the
  same relative resolution instead of being set by the gyroscope extremes (Nagel et al. 2019,
  arXiv 1906.04721 fold scales across a linear layer the same way; Meller et al. 2019,
  arXiv 1902.01917 do it per channel between layers). The division happens on the host, before the
  NPU: the calibration set and every NPU input are in the equalized space, the graph carries the
  rescaled weights (see docs/QUANT.md for why the fold cannot sit inside the NPU graph);
- **input-range clipping**: the (equalized) input is clipped to the [100 - p, p] percentiles of the
  calibration set, so a few outliers do not widen the 8-bit step for everything else (percentile
  calibration, Wu et al. 2020, arXiv 2004.09602). The calibration set is clipped the same way,
  so the quantizer's MinMax range *is* the clip range, in ONNX Runtime and in the DFC alike;
- **mixed precision**: the input layer + first convolution and/or the FSQ tail (projection and the
  bound chain up to the NPU output) at 16 bits, emulated with ONNX Runtime ``TensorQuantOverrides``
  (uint16 activations, int16 weights) and written for the DFC as
  ``quantization_param(<layer>, precision_mode=a16_w16)``.

Every rung is measured on VALIDATION windows (``ort-int8-emulated`` vs ``ort-fp32``); the pick uses
only those. Test windows are reported, never used to choose.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import onnx
import pandas as pd
from onnx import numpy_helper

from workbench.errors import QuantError

from .analysis import Postprocess, QuantReport, compare_npu_outputs
from .emulate import BACKEND_FP32, BACKEND_INT8, io_names, quantize_npu, run_onnx
from .transform import InputTransform, load_remedy  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Remedy:
    """One rung of the ladder."""

    name: str
    equalize: bool = False
    clip: bool = False
    input16: bool = False
    tail16: bool = False

    @property
    def sixteen_bit_parts(self) -> list[str]:
        return [p for p, on in (("input layer + first conv", self.input16), ("FSQ tail", self.tail16)) if on]


# Cheapest first: the order breaks ties when auto-picking.
LADDER: tuple[Remedy, ...] = (
    Remedy("int8"),
    Remedy("equalize", equalize=True),
    Remedy("equalize_clip", equalize=True, clip=True),
    Remedy("equalize_clip_tail16", equalize=True, clip=True, tail16=True),
    Remedy("input16", input16=True),
    Remedy("input16_tail16", input16=True, tail16=True),
)
RUNG_NAMES = tuple(r.name for r in LADDER)


def rung(name: str) -> Remedy:
    for r in LADDER:
        if r.name == name:
            return r
    raise QuantError(f"unknown remedy {name!r}; choose one of {RUNG_NAMES}")


def input_channel_scales(calib_nchw: np.ndarray) -> np.ndarray:
    """s_c = absmax_c / max_c absmax_c over the calibration set: after x_c / s_c every channel spans the
    widest channel's range (so FP32 magnitudes stay where they were, no channel is shrunk)."""
    x = np.asarray(calib_nchw, dtype=np.float64)
    if x.ndim != 4:
        raise QuantError(f"calibration windows must be (N, C, S, T), got {x.shape}")
    amax = np.abs(x).max(axis=(0, 2, 3))
    if not np.all(np.isfinite(amax)):
        raise QuantError("calibration set has NaN or inf values; it cannot set input scales")
    if np.any(amax <= 0):
        dead = np.flatnonzero(amax <= 0).tolist()
        raise QuantError(
            f"input channels {dead} are all zero in the calibration set: no scale can equalize "
            f"them (drop the channel or use a calibration set where it moves)"
        )
    return (amax / amax.max()).astype(np.float32)


def clip_range(x_nchw: np.ndarray, percentile: float) -> list[float]:
    """[lo, hi] = the (100 - p)-th and p-th percentile of every value in the set, zero kept inside."""
    if not (50.0 < percentile <= 100.0):
        raise QuantError(f"clip percentile must be in (50, 100], got {percentile}")
    v = np.asarray(x_nchw, dtype=np.float64).ravel()
    lo, hi = np.percentile(v, [100.0 - percentile, percentile])
    return [float(min(lo, 0.0)), float(max(hi, 0.0))]


# ---- graph surgery ---------------------------------------------------------------------------
def first_conv(model: onnx.ModelProto) -> onnx.NodeProto:
    """The single Conv that reads the graph input; anything else reading it makes a fold inexact."""
    in_name = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}][0]
    readers = [n for n in model.graph.node if in_name in n.input]
    if len(readers) != 1 or readers[0].op_type != "Conv":
        raise QuantError(
            f"input equalization needs the graph input {in_name!r} to feed exactly one Conv; it "
            f"feeds {[(n.name, n.op_type) for n in readers]}"
        )
    return readers[0]


def fold_input_scale(src: str | Path | onnx.ModelProto, dst: str | Path, scale: Sequence[float]) -> Path:
    """Copy of ``src`` whose first Conv weights are multiplied by ``scale`` along the input-channel axis.

    The copy computes from ``x / scale`` (per channel) exactly what ``src`` computes from ``x``
    (up to float rounding). Refuses grouped convolutions, whose input channels are not all mixed.
    """
    m = onnx.ModelProto()
    m.CopyFrom(src if isinstance(src, onnx.ModelProto) else onnx.load(str(src)))
    conv = first_conv(m)
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    if group != 1:
        raise QuantError(f"first Conv {conv.name} is grouped (group={group}); the input fold needs group=1")
    inits = {t.name: t for t in m.graph.initializer}
    if conv.input[1] not in inits:
        raise QuantError(f"first Conv {conv.name} weight {conv.input[1]!r} is not an initializer")
    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float32)
    s = np.asarray(scale, dtype=np.float32)
    if w.shape[1] != s.size:
        raise QuantError(f"{s.size} scales for a Conv with {w.shape[1]} input channels")
    others = [n.name for n in m.graph.node if conv.input[1] in n.input and n is not conv]
    if others:
        raise QuantError(f"first Conv weight is shared with {others}; folding would change them too")
    inits[conv.input[1]].CopyFrom(numpy_helper.from_array(w * s[None, :, None, None], conv.input[1]))
    dst = Path(dst)
    onnx.save(m, str(dst))
    return dst


def _consumers(m: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in m.graph.node:
        for t in n.input:
            out.setdefault(t, []).append(n)
    return out


def sixteen_bit_plan(model: str | Path | onnx.ModelProto, input16: bool, tail16: bool) -> dict:
    """Which ONNX tensors and nodes a rung keeps at 16 bits.

    input16: the graph input, the first Conv's weight and output (and the ReLU fused after it).
    tail16: the projection (the last Gemm/MatMul) weight and output, and every node after it up to
    the NPU output (the FSQ bound chain with the after_bound cut). Returns
    ``{"activations", "weights", "nodes", "inputs", "tail"}``; ``nodes`` (and ``inputs``, graph inputs)
    are the ONNX names stage 06 maps to HN layers for ``precision_mode=a16_w16``.
    """
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    inits = {t.name for t in m.graph.initializer}
    in_name, out_name = io_names(m)
    cons = _consumers(m)
    acts: list[str] = []
    weights: list[str] = []
    nodes: list[str] = []
    inputs: list[str] = []
    if input16:
        conv = first_conv(m)
        inputs.append(in_name)
        acts += [in_name, conv.output[0]]
        weights.append(conv.input[1])
        nodes.append(conv.name)
        nxt = cons.get(conv.output[0], [])
        if len(nxt) == 1 and nxt[0].op_type in ("Relu", "Clip"):
            acts.append(nxt[0].output[0])
            nodes.append(nxt[0].name)
    if tail16:
        proj = [n for n in m.graph.node if n.op_type in ("Gemm", "MatMul")]
        if not proj:
            raise QuantError("no Gemm/MatMul projection in the NPU graph: there is no FSQ tail to keep at 16 bits")
        p = proj[-1]
        weights += [t for t in p.input[1:2] if t in inits]
        start = list(m.graph.node).index(p)
        for n in list(m.graph.node)[start:]:
            if n.op_type in ("Constant",):
                continue
            nodes.append(n.name)
            acts += [o for o in n.output if o]
        if out_name not in acts:
            raise QuantError(
                f"the NPU output {out_name!r} is not after the projection {p.name}; cannot keep the FSQ tail at 16 bits"
            )
    return {
        "activations": list(dict.fromkeys(acts)),
        "weights": list(dict.fromkeys(weights)),
        "nodes": list(dict.fromkeys(nodes)),
        "inputs": inputs,
        "tail": bool(tail16),
    }


def tensor_overrides(plan: dict) -> dict:
    """ONNX Runtime ``TensorQuantOverrides`` for a 16-bit plan (uint16 activations, int16 per-channel weights)."""
    from onnxruntime.quantization import QuantType

    ov: dict = {t: [{"quant_type": QuantType.QUInt16}] for t in plan["activations"]}
    for w in plan["weights"]:
        ov[w] = [{"quant_type": QuantType.QInt16, "axis": 0}]
    return ov


# ---- one rung, end to end ------------------------------------------------------------------------
@dataclass
class RemedyModel:
    """The FP32 graph a rung deploys (equalized when asked), its INT8 emulation and host transform."""

    remedy: Remedy
    fp32_model: Path
    int8_model: Path
    transform: InputTransform
    plan: dict = field(default_factory=dict)
    quant_info: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "remedy": self.remedy.name,
            **asdict(self.remedy),
            "transform": self.transform.to_dict(),
            "sixteen_bit": self.plan,
            "fp32_model": str(self.fp32_model),
            "int8_model": str(self.int8_model),
        }


def build_remedy(
    remedy: Remedy,
    npu_fp32: str | Path,
    calib_nchw: np.ndarray,
    workdir: str | Path,
    *,
    clip_percentile: float = 99.9,
    calibrate_method: str = "MinMax",
) -> RemedyModel:
    """Equalize / clip / 16-bit as ``remedy`` says, then quantize with the transformed calibration set."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    x = np.asarray(calib_nchw, dtype=np.float32)
    transform = InputTransform()
    fp32 = Path(npu_fp32)
    if remedy.equalize:
        transform.scale = input_channel_scales(x).tolist()
        fp32 = fold_input_scale(npu_fp32, workdir / f"{remedy.name}_fp32.onnx", transform.scale)
    if remedy.clip:
        transform.clip = clip_range(transform.apply(x), clip_percentile)
    plan = sixteen_bit_plan(fp32, remedy.input16, remedy.tail16)
    int8 = workdir / f"{remedy.name}_int8.onnx"
    info = quantize_npu(
        fp32,
        int8,
        transform.apply(x),
        calibrate_method=calibrate_method,
        extra_overrides=tensor_overrides(plan) if plan["activations"] else None,
    )
    return RemedyModel(remedy, fp32, int8, transform, plan, info)


def evaluate_remedy(
    rm: RemedyModel,
    ref_npu: np.ndarray,
    x_nchw: np.ndarray,
    postprocess: Postprocess,
    bound_of: Callable[[np.ndarray], np.ndarray],
    fsq_levels: Sequence[int],
    y: Optional[np.ndarray] = None,
) -> tuple[QuantReport, np.ndarray]:
    """QuantReport of the rung's INT8 graph (fed the host-transformed windows) against the FP32 reference."""
    out = run_onnx(rm.int8_model, rm.transform.apply(x_nchw))
    return compare_npu_outputs(ref_npu, out, postprocess, bound_of, fsq_levels, y=y), out


def run_ladder(
    npu_fp32: str | Path,
    calib_nchw: np.ndarray,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    postprocess: Postprocess,
    bound_of: Callable[[np.ndarray], np.ndarray],
    fsq_levels: Sequence[int],
    workdir: str | Path,
    *,
    rungs: Sequence[Remedy] = LADDER,
    clip_percentile: float = 99.9,
    calibrate_method: str = "MinMax",
) -> tuple[pd.DataFrame, dict]:
    """Every rung on every split in ``splits`` (name -> (x, y)); one row per (rung, split).

    Returns the table and the RemedyModels by name (their files live in ``workdir``).
    """
    refs = {s: run_onnx(npu_fp32, x) for s, (x, _) in splits.items()}
    rows, models = [], {}
    for r in rungs:
        try:
            rm = build_remedy(
                r, npu_fp32, calib_nchw, workdir, clip_percentile=clip_percentile, calibrate_method=calibrate_method
            )
        except QuantError as exc:
            if r.name == "int8":
                raise
            # a rung this graph cannot take (e.g. no Conv right after the input to fold scales into): the
            # table says why, its figures stay empty, and the pick ignores it
            rows += [
                {
                    "remedy": r.name,
                    "split": s,
                    "sixteen_bit_layers": len(r.sixteen_bit_parts),
                    "equalize": r.equalize,
                    "clip": r.clip,
                    "input16": r.input16,
                    "tail16": r.tail16,
                    "code_flip_rate": float("nan"),
                    "level_flip_rate": float("nan"),
                    "prediction_agreement": float("nan"),
                    "sqnr_db": float("nan"),
                    "accuracy_fp32": None,
                    "accuracy_int8": None,
                    "windows": 0,
                    "backend": BACKEND_INT8,
                    "reference_backend": BACKEND_FP32,
                    "skipped": str(exc),
                }
                for s in splits
            ]
            continue
        models[r.name] = rm
        for s, (x, y) in splits.items():
            rep, _ = evaluate_remedy(rm, refs[s], x, postprocess, bound_of, fsq_levels, y)
            sm = rep.summary
            rows.append(
                {
                    "remedy": r.name,
                    "split": s,
                    "sixteen_bit_layers": len(r.sixteen_bit_parts),
                    "equalize": r.equalize,
                    "clip": r.clip,
                    "input16": r.input16,
                    "tail16": r.tail16,
                    "code_flip_rate": sm["code_flip_rate"],
                    "level_flip_rate": sm["level_flip_rate"],
                    "prediction_agreement": 1.0 - sm["prediction_flip_rate"],
                    "sqnr_db": sm["sqnr_db"],
                    "accuracy_fp32": sm.get("accuracy_fp32"),
                    "accuracy_int8": sm.get("accuracy_int8"),
                    "windows": sm["windows"],
                    "backend": BACKEND_INT8,
                    "reference_backend": BACKEND_FP32,
                    "skipped": "",
                }
            )
    return pd.DataFrame(rows), models


def pick_remedy(table: pd.DataFrame, *, allow_16bit: bool = True, tolerance: float = 0.002, split: str = "val") -> dict:
    """The rung with the fewest code flips on ``split`` (validation), taking the cheapest rung (ladder
    order) among those within ``tolerance`` of the best. Refuses to pick on test windows."""
    if split == "test":
        raise QuantError("a remedy is never picked on test windows; pick on 'val' and only report test")
    d = table[table["split"] == split]
    if d.empty:
        raise QuantError(f"no {split!r} rows in the ladder table; run the ladder on validation windows")
    if not allow_16bit:
        d = d[d["sixteen_bit_layers"] == 0]
    order = {n: i for i, n in enumerate(RUNG_NAMES)}
    d = d.assign(_order=d["remedy"].map(order)).sort_values("_order")
    best = float(d["code_flip_rate"].min())
    chosen = d[d["code_flip_rate"] <= best + tolerance].iloc[0]
    return {
        "remedy": str(chosen["remedy"]),
        "picked_on": split,
        "code_flip_rate": float(chosen["code_flip_rate"]),
        "best_code_flip_rate": best,
        "tolerance": tolerance,
        "allow_16bit": allow_16bit,
        "rule": "fewest validation code flips; cheapest rung within the tolerance",
    }


# ---- where flips come from --------------------------------------------------------------------
def _qdq_uniform(x: np.ndarray, lo: float, hi: float, bits: int = 8) -> np.ndarray:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    q = 2**bits - 1
    scale = (hi - lo) / q if hi > lo else 1.0
    zp = np.clip(np.round(-lo / scale), 0, q)
    return ((np.clip(np.round(x / scale) + zp, 0, q) - zp) * scale).astype(np.float32)


def weights_only_int8(src: str | Path, dst: str | Path) -> Path:
    """Copy of the FP32 graph with every Conv/Gemm weight replaced by its int8 per-channel symmetric
    quantize-dequantize (activations stay float): isolates the weight error."""
    m = onnx.load(str(src))
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            if n.op_type == "MatMul":
                w2 = w.T
            else:
                w2 = w
            amax = np.abs(w2.reshape(w2.shape[0], -1)).max(axis=1)
            scale = np.where(amax > 0, amax / 127.0, 1.0).reshape((-1,) + (1,) * (w2.ndim - 1))
            wq = (np.clip(np.round(w2 / scale), -127, 127) * scale).astype(np.float32)
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(wq.T if n.op_type == "MatMul" else wq, n.input[1]))
    onnx.save(m, str(dst))
    return Path(dst)


def flip_attribution(
    npu_fp32: str | Path,
    calib_nchw: np.ndarray,
    x_nchw: np.ndarray,
    postprocess: Postprocess,
    workdir: str | Path,
    *,
    calibrate_method: str = "MinMax",
) -> pd.DataFrame:
    """Code flips caused by each quantized part alone (the rest in float), on the given windows.

    - input only: the input tensor 8-bit (MinMax range of the calibration set), the graph in FP32;
    - weights only: int8 per-channel weights, float activations;
    - activations only: ONNX Runtime QDQ with every activation 8-bit but the input and the weights at
      16 bits (the closest ORT gets to float for them);
    - all: the plain INT8 emulation.
    """
    from .analysis import code_flip_rate, level_flip_rate

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ref_lv, _ = postprocess(run_onnx(npu_fp32, x_nchw))
    calib = np.asarray(calib_nchw, np.float32)
    rows = []

    def add(part: str, out: np.ndarray, how: str) -> None:
        lv, _ = postprocess(out)
        rows.append(
            {
                "part": part,
                "code_flip_rate": code_flip_rate(ref_lv, lv),
                "level_flip_rate": level_flip_rate(ref_lv, lv),
                "how": how,
                "backend": BACKEND_INT8,
            }
        )

    xq = _qdq_uniform(np.asarray(x_nchw, np.float32), float(calib.min()), float(calib.max()))
    add("input only", run_onnx(npu_fp32, xq), "input uint8 over the calibration min/max, rest FP32")
    wq = weights_only_int8(npu_fp32, workdir / "weights_only.onnx")
    add("weights only", run_onnx(wq, x_nchw), "int8 per-channel symmetric weights, float activations")
    m = onnx.load(str(npu_fp32))
    weights = [n.input[1] for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1]
    in_name, _ = io_names(m)
    from onnxruntime.quantization import QuantType

    ov = {w: [{"quant_type": QuantType.QInt16, "axis": 0}] for w in weights}
    ov[in_name] = [{"quant_type": QuantType.QUInt16}]
    quantize_npu(npu_fp32, workdir / "acts_only.onnx", calib, calibrate_method=calibrate_method, extra_overrides=ov)
    add("activations only", run_onnx(workdir / "acts_only.onnx", x_nchw), "uint8 activations; input and weights 16-bit")
    quantize_npu(npu_fp32, workdir / "all.onnx", calib, calibrate_method=calibrate_method)
    add("all (INT8)", run_onnx(workdir / "all.onnx", x_nchw), "plain INT8 emulation")
    return pd.DataFrame(rows)


def flips_per_class(
    levels_fp32: np.ndarray, levels_int8: np.ndarray, y: np.ndarray, label_names: Sequence[str]
) -> pd.DataFrame:
    """Windows, code flips and flip rate per true class."""
    flipped = (np.asarray(levels_fp32) != np.asarray(levels_int8)).any(axis=1)
    y = np.asarray(y)
    rows = []
    for k, name in enumerate(label_names):
        sel = y == k
        n = int(sel.sum())
        rows.append(
            {
                "class": str(name),
                "windows": n,
                "code_flips": int(flipped[sel].sum()),
                "code_flip_rate": float(flipped[sel].mean()) if n else float("nan"),
                "share_of_all_flips": float(flipped[sel].sum() / max(flipped.sum(), 1)),
                "backend": BACKEND_INT8,
            }
        )
    return pd.DataFrame(rows)


def save_remedy(path: str | Path, rm: RemedyModel, pick: dict, extra: Optional[dict] = None) -> Path:
    """The chosen remedy as stages 06-08 read it (``quant_remedy.json``)."""
    out = {
        "remedy": rm.remedy.name,
        "pick": pick,
        "input_transform": rm.transform.to_dict(),
        "sixteen_bit_onnx_nodes": rm.plan.get("nodes", []),
        "sixteen_bit_inputs": rm.plan.get("inputs", []),
        "sixteen_bit_tail": bool(rm.plan.get("tail")),
        "sixteen_bit": rm.plan,
        "parts": asdict(rm.remedy),
        "backend": BACKEND_INT8,
        **(extra or {}),
    }
    path = Path(path)
    path.write_text(json.dumps(out, indent=2))
    return path


# ---- stage 05 in one call --------------------------------------------------------------------
@dataclass
class RemedyOutcome:
    """Everything stage 05 shows about the remedies; every INT8 number is ``ort-int8-emulated``."""

    ladder: pd.DataFrame  # one row per (rung, split); split in {val, test}
    pick: dict  # chosen on validation windows only
    chosen: RemedyModel
    attribution: pd.DataFrame  # validation windows, plain INT8
    per_class: pd.DataFrame  # validation windows, plain INT8 and the chosen rung
    margin_val: np.ndarray  # FP32 margins (N, D) on validation windows
    flipped_val: dict  # rung name -> (N, D) bool level flips on validation windows
    reports: dict  # (rung, split) -> QuantReport for int8 and the chosen rung
    models: dict  # rung name -> RemedyModel


def remedy_stage(
    npu_fp32: str | Path,
    calib_nchw: np.ndarray,
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    postprocess: Postprocess,
    bound_of: Callable[[np.ndarray], np.ndarray],
    fsq_levels: Sequence[int],
    label_names: Sequence[str],
    workdir: str | Path,
    *,
    remedy: str = "auto",
    clip_percentile: float = 99.9,
    allow_16bit: bool = True,
    tolerance: float = 0.002,
    calibrate_method: str = "MinMax",
    attribution: bool = True,
) -> RemedyOutcome:
    """Ladder on validation and test windows, pick on validation (or take ``remedy`` when forced),
    attribution and per-class flips on validation windows. Test rows are for reporting only."""
    workdir = Path(workdir)
    table, models = run_ladder(
        npu_fp32,
        calib_nchw,
        {"val": val, "test": test},
        postprocess,
        bound_of,
        fsq_levels,
        workdir / "ladder",
        clip_percentile=clip_percentile,
        calibrate_method=calibrate_method,
    )
    if remedy == "auto":
        pick = pick_remedy(table, allow_16bit=allow_16bit, tolerance=tolerance, split="val")
    else:
        rung(remedy)
        row = table[(table.remedy == remedy) & (table.split == "val")].iloc[0]
        if remedy not in models:
            raise QuantError(
                f"quant_remedy {remedy!r} cannot be applied to this graph: {row.skipped}; choose "
                f"another rung or quant_remedy auto"
            )
        pick = {
            "remedy": remedy,
            "picked_on": "forced by quant_remedy",
            "code_flip_rate": float(row.code_flip_rate),
            "best_code_flip_rate": float(table[table.split == "val"].code_flip_rate.min()),
            "tolerance": tolerance,
            "allow_16bit": allow_16bit,
            "rule": "quant_remedy names the rung",
        }
    chosen = models[pick["remedy"]]
    refs = {s: run_onnx(npu_fp32, xy[0]) for s, xy in (("val", val), ("test", test))}
    reports, flipped = {}, {}
    for name in dict.fromkeys(["int8", chosen.remedy.name]):
        for s, (x, y) in (("val", val), ("test", test)):
            rep, _ = evaluate_remedy(models[name], refs[s], x, postprocess, bound_of, fsq_levels, y)
            reports[(name, s)] = rep
        flipped[name] = reports[(name, "val")].levels_fp32 != reports[(name, "val")].levels_int8
    per_class = pd.concat(
        [
            flips_per_class(
                reports[(n, "val")].levels_fp32, reports[(n, "val")].levels_int8, val[1], label_names
            ).assign(remedy=n, split="val")
            for n in dict.fromkeys(["int8", chosen.remedy.name])
        ],
        ignore_index=True,
    )
    attr = (
        flip_attribution(
            npu_fp32, calib_nchw, val[0], postprocess, workdir / "attribution", calibrate_method=calibrate_method
        ).assign(split="val")
        if attribution
        else pd.DataFrame()
    )
    return RemedyOutcome(
        ladder=table,
        pick=pick,
        chosen=chosen,
        attribution=attr,
        per_class=per_class,
        margin_val=reports[("int8", "val")].margin,
        flipped_val=flipped,
        reports=reports,
        models=models,
    )


def deploy_graph(npu_static: str | Path, dst: str | Path, rm: RemedyModel) -> Path:
    """The batch-1 FP32 graph stage 06 compiles: ``npu.onnx`` with the rung's input fold applied
    (a plain copy when the rung does not equalize)."""
    if rm.transform.scale is not None:
        return fold_input_scale(npu_static, dst, rm.transform.scale)
    m = onnx.load(str(npu_static))
    onnx.save(m, str(dst))
    return Path(dst)

"""Export the inference graph to ONNX and prove it computes what PyTorch computes.

Why the TorchScript exporter (``dynamo=False``): with torch 2.13 the dynamo exporter only implements
opset >= 18 and its down-conversion to 13 fails on ReduceMean (axes as input), so it silently keeps
opset 18. Hailo staff recommend opset 13; the TorchScript exporter honours the requested opset, folds
BatchNorm into the preceding Conv in eval mode (``do_constant_folding``) and names nodes after the
module path (``/project/Gemm``, ``/fsq/Round``), which makes ``split.json`` readable.

Parity is measured on real held-out windows: logits (max abs diff, cosine, argmax agreement) and the
FSQ levels of the pre-Round tensor, which ONNX Runtime exposes once the Round input is added as an
extra graph output on a temporary copy of the model.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import onnx

from workbench.config import ORT_FP32, TORCH_FP32
from workbench.errors import ExportError, ParityError
from workbench.graph.session import ort_session

INPUT_NAME = "imu"
OUTPUT_NAME = "logits"
BACKEND_TORCH = TORCH_FP32
BACKEND_ORT = ORT_FP32
SimplifyMethod = Literal["none", "onnxslim", "onnxsim"]


# ---- export ---------------------------------------------------------------------------------
def export_onnx(
    model: Any, path: str | Path, input_shape: Sequence[int], opset: int = 13, dynamic_batch: bool = False
) -> Path:
    """Export ``model`` (eval mode, BatchNorm folded) with input ``imu`` and output ``logits``.

    ``input_shape`` is (1, C, S, T); with ``dynamic_batch`` the first axis becomes symbolic
    ("batch"), for CPU evaluation of many windows at once. The file is checked (full checker, strict
    shape inference) and verified: requested opset, no BatchNormalization, a Round, no STE.
    """
    import torch

    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or any(s < 1 for s in shape):
        raise ExportError(f"input_shape must be (N, C, S, T) with positive sizes, got {tuple(input_shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()  # eval: BN uses running stats (foldable), FSQ uses Round
    dummy = torch.zeros(shape, dtype=torch.float32)
    kwargs: dict[str, Any] = dict(
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=int(opset),
        do_constant_folding=True,
        dynamo=False,
        training=torch.onnx.TrainingMode.EVAL,
    )
    if dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        with torch.no_grad():
            torch.onnx.export(model, (dummy,), buf, **kwargs)
    proto = onnx.load_from_string(buf.getvalue())
    proto = check_and_infer(proto)
    verify_inference_graph(proto, opset=int(opset))
    onnx.save(proto, str(path))
    return path


def load_onnx(model: "str | Path | onnx.ModelProto") -> onnx.ModelProto:
    """``onnx.load`` that names the file when it is missing or not an ONNX model (protobuf's own
    ``DecodeError: Wire format was corrupt`` says neither which file nor what to do)."""
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise ExportError(
            f"ONNX model not found: {path}; the stage that writes it (02 export, 04 split, "
            f"05 quantization) has not run in this run"
        )
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - DecodeError, RuntimeError, ValueError from protobuf
        raise ExportError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); it is damaged "
            f"or not ONNX. Re-run the stage that wrote it in a new run "
            f"(python -m workbench run --from NN --parent RUN)"
        ) from None


def check_and_infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker with full checks, then strict shape inference (shapes land in value_info)."""
    try:
        onnx.checker.check_model(proto, full_check=True)
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported ONNX graph fails onnx.checker/shape inference: {exc}") from exc


def opset_of(proto: onnx.ModelProto) -> int:
    """The default-domain opset version of a model."""
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ExportError("model has no default-domain opset import")


def verify_inference_graph(
    proto: onnx.ModelProto, opset: Optional[int] = None, round_ops: Sequence[str] = ("Round",)
) -> dict[str, Any]:
    """Raise ExportError unless the graph is a clean inference graph; return a small summary.

    Checks: default-domain opset equals ``opset``; no BatchNormalization left (exported in eval mode
    it must be folded into the Conv); at least one Round; no straight-through arithmetic around a
    Round (an Add/Sub that consumes both a Round's output and its input).
    """
    ops = [n.op_type for n in proto.graph.node]
    got = opset_of(proto)
    if opset is not None and got != int(opset):
        raise ExportError(
            f"exported opset is {got}, expected {opset}: the exporter could not honour the "
            f"'opset' parameter; choose an opset it supports (11-21)"
        )
    bn = [n.name for n in proto.graph.node if n.op_type == "BatchNormalization"]
    if bn:
        raise ExportError(
            f"BatchNormalization nodes remain after export ({bn}): export the model in eval "
            f"mode with constant folding so BN folds into the preceding Conv"
        )
    rounds = [n for n in proto.graph.node if n.op_type in round_ops]
    if not rounds:
        raise ExportError(
            f"no Round node in the exported graph (ops: {sorted(set(ops))}); the FSQ "
            f"quantizer must run its eval path (model.eval()) so torch.round is exported"
        )
    for r in rounds:
        users = [n for n in proto.graph.node if r.output[0] in n.input]
        for u in users:
            if u.op_type in ("Add", "Sub") and r.input[0] in u.input:
                raise ExportError(
                    f"straight-through arithmetic around {r.name!r} ({u.op_type} {u.name!r} "
                    f"uses both the Round input and output): export in eval mode"
                )
    return {"opset": got, "n_nodes": len(ops), "round_nodes": [r.name for r in rounds], "batchnorm_nodes": 0}


def simplify_onnx(src: str | Path, dst: str | Path, method: SimplifyMethod) -> Path:
    """Optionally simplify ``src`` into ``dst`` with onnxslim or onnxsim ('none' copies).

    The result is checked again; parity must be re-proved on it by the caller.
    """
    src, dst = Path(src), Path(dst)
    proto = load_onnx(src)
    if method == "none":
        out = proto
    elif method == "onnxslim":
        import onnxslim

        out = onnxslim.slim(proto)
    elif method == "onnxsim":
        try:
            import onnxsim  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ExportError(
                "simplify='onnxsim' needs the onnxsim package, which is not installed: "
                "`.venv/bin/pip install onnxsim` (and pin it in requirements.txt), or use "
                "simplify='onnxslim' (installed) or 'none'"
            ) from exc
        out, ok = onnxsim.simplify(proto)
        if not ok:
            raise ExportError("onnxsim could not validate the simplified model; use simplify='none'")
    else:
        raise ExportError(f"unknown simplify method {method!r}; use 'none', 'onnxslim' or 'onnxsim'")
    out = check_and_infer(out)
    verify_inference_graph(out, opset=opset_of(proto))
    onnx.save(out, str(dst))
    return dst


# ---- ONNX Runtime helpers -------------------------------------------------------------------
def with_extra_outputs(proto: onnx.ModelProto, tensor_names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``proto`` that also outputs the named intermediate tensors (for parity probes)."""
    out = copy.deepcopy(proto)
    have = {o.name for o in out.graph.output}
    known = {vi.name: vi for vi in out.graph.value_info}
    produced = {t for n in out.graph.node for t in n.output}
    for name in tensor_names:
        if name in have:
            continue
        if name not in produced:
            raise ExportError(f"tensor {name!r} is not produced by any node of the graph")
        vi = known.get(name) or onnx.helper.make_empty_tensor_value_info(name)
        out.graph.output.append(vi)
    return out


def round_nodes(proto: onnx.ModelProto, op_types: Sequence[str] = ("Round",)) -> list[onnx.NodeProto]:
    return [n for n in proto.graph.node if n.op_type in op_types]


def run_onnx_parts(model: str | Path | onnx.ModelProto, x: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """ORT logits and pre-Round tensor ("bound") for windows ``x`` (N, C, S, T) float32.

    A batch-dynamic model runs in chunks of ``batch_size``; a static batch-1 model one by one.
    """
    proto = load_onnx(model)
    rounds = round_nodes(proto)
    if len(rounds) != 1:
        raise ExportError(f"expected exactly one Round node, found {len(rounds)}")
    bound_name = rounds[0].input[0]
    probe = with_extra_outputs(proto, [bound_name])
    sess = ort_session(probe)
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    step = batch_size if not dim0.HasField("dim_value") else int(dim0.dim_value)
    x = np.ascontiguousarray(x, dtype=np.float32)
    logits, bound = [], []
    for i in range(0, len(x), step):
        lo, bo = sess.run([OUTPUT_NAME, bound_name], {INPUT_NAME: x[i : i + step]})
        logits.append(lo)
        bound.append(bo)
    return {"logits": np.concatenate(logits), "bound": np.concatenate(bound), "backend": BACKEND_ORT}


def run_torch_parts(model: Any, x: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """PyTorch (eval, fp32) logits, bound and levels via ``model.forward_parts``."""
    import torch

    model = model.eval()
    out: dict[str, list[np.ndarray]] = {"logits": [], "bound": [], "levels": []}
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            parts = model.forward_parts(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], np.float32)))
            for k in out:
                out[k].append(parts[k].cpu().numpy())
    res: dict[str, Any] = {k: np.concatenate(v) for k, v in out.items()}
    res["backend"] = BACKEND_TORCH
    return res


def parity_metrics(
    ref_logits: np.ndarray,
    ref_levels: np.ndarray,
    logits: np.ndarray,
    bound: np.ndarray,
    ref_bound: Optional[np.ndarray] = None,
) -> dict[str, float]:
    """Agreement of an ONNX run with the PyTorch reference.

    cosine_min is the smallest per-window cosine similarity of the logit vectors (stricter than
    one cosine over all logits, which is also reported as cosine_all).
    """
    if ref_logits.shape != logits.shape:
        raise ParityError(f"logit shapes differ: reference {ref_logits.shape}, candidate {logits.shape}")
    check_finite(
        {
            f"{BACKEND_TORCH} logits": ref_logits,
            f"{BACKEND_ORT} logits": logits,
            f"{BACKEND_ORT} pre-Round tensor": bound,
            **({f"{BACKEND_TORCH} pre-Round tensor": ref_bound} if ref_bound is not None else {}),
        }
    )
    a = ref_logits.astype(np.float64)
    b = logits.astype(np.float64)
    num = (a * b).sum(axis=1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    den = na * nb
    # two zero vectors agree exactly; one zero vector against a non-zero one does not
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where((na == 0) & (nb == 0), 1.0, 0.0))
    levels = np.rint(bound)
    return {
        "n_windows": int(len(a)),
        "max_abs_diff": float(np.abs(a - b).max()),
        "cosine_min": float(cos.min()),
        "cosine_all": float((a.ravel() @ b.ravel()) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300)),
        "argmax_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "level_agreement": float((levels == ref_levels).all(axis=1).mean()),
        "level_element_agreement": float((levels == ref_levels).mean()),
        "bound_max_abs_diff": (
            float(np.abs(bound.astype(np.float64) - ref_bound).max()) if ref_bound is not None else float("nan")
        ),
    }


def check_finite(arrays: dict[str, Optional[np.ndarray]]) -> None:
    """ParityError naming every array with NaN or inf: a NaN makes every comparison false, so the
    parity metrics would read as agreement (or as NaN that a threshold test lets through)."""
    bad = []
    for name, arr in arrays.items():
        if arr is None:
            continue
        arr = np.asarray(arr, dtype=np.float64)
        n = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if n:
            rows = int(np.any(~np.isfinite(arr.reshape(len(arr), -1)), axis=1).sum()) if arr.ndim else 1
            bad.append(f"{name}: {n} non-finite values in {rows} of {len(arr) if arr.ndim else 1} windows")
    if bad:
        raise ParityError(
            "non-finite outputs, parity cannot pass: " + "; ".join(bad) + ". The model's weights "
            "or the input windows hold NaN/inf; check the checkpoint (mode: load) or retrain"
        )


def check_parity(
    model: Any, onnx_path: str | Path, x: np.ndarray, cosine_min: float = 0.99999, batch_size: int = 256
) -> dict[str, Any]:
    """Parity of ``onnx_path`` (ORT, fp32) against the PyTorch model on windows ``x``.

    Returns metrics plus ``passed`` and ``failures``; argmax and FSQ levels must agree on 100% of
    windows and the smallest per-window cosine must reach ``cosine_min``.
    """
    ref = run_torch_parts(model, x, batch_size)
    got = run_onnx_parts(onnx_path, x, batch_size)
    m = parity_metrics(ref["logits"], ref["levels"], got["logits"], got["bound"], ref["bound"])
    failures = []
    if m["argmax_agreement"] < 1.0:
        failures.append(f"argmax agreement {m['argmax_agreement']:.6f} < 1")
    if m["level_agreement"] < 1.0:
        failures.append(f"FSQ level agreement {m['level_agreement']:.6f} < 1")
    if not m["cosine_min"] >= cosine_min:
        failures.append(f"min cosine {m['cosine_min']:.9f} < {cosine_min}")
    return {
        **m,
        "cosine_threshold": float(cosine_min),
        "passed": not failures,
        "failures": failures,
        "reference_backend": BACKEND_TORCH,
        "backend": BACKEND_ORT,
        "onnx": str(onnx_path),
    }


# ---- stage-01 inputs ------------------------------------------------------------------------
def heldout_windows(
    windows_path: str | Path, normalizer: Any, n: Optional[int] = None, split_name: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised held-out windows (X float32, y) from stage 01's windows.npz: the first ``n`` of
    ``split_name`` (all when n is None), so reruns see the same windows. ``normalizer`` is the
    checkpoint's normaliser (a dict with mean/std or a Normalizer)."""
    from workbench.data.windowset import load_split_windows

    data = load_split_windows(windows_path, split_name, limit=n)
    return np.ascontiguousarray(_normalise(data.X, normalizer), dtype=np.float32), data.y


def _normalise(X: np.ndarray, normalizer: Any) -> np.ndarray:
    if hasattr(normalizer, "apply"):
        return normalizer.apply(X)
    if isinstance(normalizer, dict) and "mean" in normalizer and "std" in normalizer:
        from workbench.data import Normalizer

        return Normalizer.from_dict(normalizer).apply(X)
    raise ExportError(
        f"cannot normalise with {type(normalizer).__name__}: expected the checkpoint's "
        f"normalizer dict (mean, std) or a Normalizer"
    )

"""The host side of the split model in plain numpy: what runs next to the NPU.

``HostPostprocessor`` replays host.onnx step by step (the ``host_program`` in split.json, constants
from host_weights.npz) in float32 and in the same op order, so it reproduces ONNX Runtime:

* Round is ``np.rint`` (round half to even), the rule of torch.round and ONNX Round. C ``roundf``
  rounds half away from zero and would disagree on exact .5 ties.
* Add/Sub/Mul/Div are correctly rounded IEEE operations in both, hence bitwise equal.
* Gemm/MatMul sum in a library-dependent order, so logits agree to a few float32 ulp of the row's
  largest logit (``row_scaled_ulp``), not always bitwise.
* Tanh (only in the ``after_projection`` cut) is an approximation in ONNX Runtime (MLAS) and in
  numpy; they differ by a few ulp, so levels can differ only where the bounded value lies within a
  few ulp of a .5 decision threshold. The ``after_bound`` cut has no Tanh on the host.

Speed: intermediate buffers are allocated once per batch size and reused; the weights are stored
pre-transposed and contiguous. Not thread-safe (the buffers are shared); use one instance per thread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from workbench.errors import HostError

# Accepted logit difference vs host.onnx, in float32 ulps of each window's largest |logit|. A dot product
# of K terms summed in another order differs by up to ~K/2 ulps in the worst case; measured: 0 on small
# heads, 3 on the default 64-wide head after training on HAPT. A wrong constant or op order gives >> 1e3.
LOGIT_ROW_ULP_TOL = 16

_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _round_ste(x: np.ndarray, out: np.ndarray) -> None:
    """The straight-through estimator as exported, ``x + (Round(x) - x)``, in ONNX's float32 op order."""
    r = np.rint(x)
    np.subtract(r, x, out=r)
    np.add(x, r, out=out)


def _matmul_step(w: np.ndarray, c: Optional[np.ndarray]) -> Callable[[np.ndarray, np.ndarray], None]:
    if c is None:
        return lambda x, out: np.matmul(x, w, out=out)

    def gemm(x: np.ndarray, out: np.ndarray) -> None:
        np.matmul(x, w, out=out)
        np.add(out, c, out=out)

    return gemm


class HostPostprocessor:
    """Map the NPU output (N, D) float32 to ``(levels, logits)``, exactly as host.onnx does.

    ``levels`` are the FSQ integer levels (float32), ``logits`` the classifier output (N, K).
    """

    _MAX_CACHED_BATCHES = 8
    # Rows per chunk for large batches. OpenBLAS runs a GEMM multi-threaded once m*n*k passes ~2.6e5;
    # on a loaded 2-core machine those threads thrash (measured 28 ms instead of 0.2 ms for 8192 rows).
    # 512-row chunks stay under the threshold for heads up to ~500 wide, so each GEMM is single-threaded.
    chunk_rows = 512

    def __init__(self, steps: Sequence[dict], arrays: dict[str, np.ndarray], split_info: Optional[dict] = None):
        self.split_info = dict(split_info or {})
        self.steps = [dict(s) for s in steps]
        self._fns: list[Callable[[np.ndarray, np.ndarray], None]] = []
        self._widths: list[int] = []
        width: Optional[int] = None
        self._round_index = -1
        for k, s in enumerate(self.steps):
            op = s["op"]
            key = f"{k:02d}"
            if op in _BINARY:
                b = np.ascontiguousarray(np.asarray(arrays[f"{key}_B"], dtype=np.float32))
                f = _BINARY[op]
                if s.get("const_first"):
                    self._fns.append(lambda x, out, f=f, b=b: f(b, x, out=out))
                else:
                    self._fns.append(lambda x, out, f=f, b=b: f(x, b, out=out))
                if width is None and b.ndim >= 1 and b.shape[-1] > 1:
                    width = int(b.shape[-1])
            elif op == "Tanh":
                self._fns.append(lambda x, out: np.tanh(x, out=out))
            elif op == "Round":
                self._fns.append(lambda x, out: np.rint(x, out=out))
                self._round_index = k
            elif op == "RoundSTE":
                self._fns.append(_round_ste)
                self._round_index = k
            elif op == "Relu":
                self._fns.append(lambda x, out: np.maximum(x, np.float32(0.0), out=out))
            elif op in ("Gemm", "MatMul"):
                w = np.ascontiguousarray(np.asarray(arrays[f"{key}_W"], dtype=np.float32))
                c = arrays.get(f"{key}_C")
                c = None if c is None else np.ascontiguousarray(np.asarray(c, dtype=np.float32))
                if width is None:
                    width = int(w.shape[0])
                self._fns.append(_matmul_step(w, c))
                self._widths.append(int(w.shape[1]))
                continue
            elif op in ("Identity", "Flatten"):
                self._fns.append(lambda x, out: np.copyto(out, x))
            else:
                raise HostError(f"host step {k} has op {op!r}, which the post-processor does not implement")
            self._widths.append(-1)  # same width as the input of the step
        if self._round_index < 0:
            raise HostError(
                "host program has no Round step; split.json/host_weights.npz do not describe an "
                "FSQ host part (rerun stage 04)"
            )
        shape = self.split_info.get("npu_output_shape")
        if shape and all(isinstance(d, int) and d > 0 for d in list(shape)[1:]):
            width = int(np.prod([int(d) for d in list(shape)[1:]]))
        if width is None:
            raise HostError("cannot tell the NPU output width from the host program")
        self.input_width = width
        # resolve every step's output width
        cur = width
        for k, wd in enumerate(self._widths):
            cur = cur if wd < 0 else wd
            self._widths[k] = cur
        # A model without class logits (an encoder) ends at the FSQ levels: logits are then (N, 0).
        self.has_logits = self._round_index != len(self._fns) - 1
        self.num_classes = self._widths[-1] if self.has_logits else 0
        self._cache: dict[int, list[np.ndarray]] = {}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_files(cls, split_json: str | Path, host_weights: str | Path) -> "HostPostprocessor":
        """Load from the stage-04 artifacts split.json and host_weights.npz."""
        split_json, host_weights = Path(split_json), Path(host_weights)
        for p in (split_json, host_weights):
            if not p.is_file():
                raise HostError(f"{p} not found: run stage 04 (split_at_round) to produce it")
        info = json.loads(split_json.read_text())
        if "host_program" not in info:
            raise HostError(f"{split_json} has no 'host_program'; it was written by an older stage 04, rerun it")
        with np.load(host_weights) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(info["host_program"], arrays, info)

    # ---- running ------------------------------------------------------------------------
    def _buffers(self, n: int) -> list[np.ndarray]:
        bufs = self._cache.get(n)
        if bufs is None:
            if len(self._cache) >= self._MAX_CACHED_BATCHES:
                self._cache.pop(next(iter(self._cache)))
            bufs = [np.empty((n, w), dtype=np.float32) for w in self._widths]
            self._cache[n] = bufs
        return bufs

    def __call__(self, npu_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``npu_out``: (N, D) or anything reshapeable to it (e.g. NHWC (N, 1, 1, D)) in float32."""
        x = npu_out
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_width:
            if x.ndim == 0 or x.size != x.shape[0] * self.input_width:
                raise HostError(
                    f"NPU output of shape {x.shape} does not hold {self.input_width} values per "
                    f"window; expected (N, {self.input_width}) (the tensor named in split.json "
                    f"npu_output_tensor)"
                )
            x = x.reshape(x.shape[0], self.input_width)
        n = x.shape[0]
        levels = np.empty((n, self._widths[self._round_index]), dtype=np.float32)
        logits = np.empty((n, self.num_classes), dtype=np.float32)
        if n <= self.chunk_rows:
            self._run(x, levels, logits)
        else:
            for i in range(0, n, self.chunk_rows):
                j = min(n, i + self.chunk_rows)
                self._run(x[i:j], levels[i:j], logits[i:j])
        return levels, logits

    def _run(self, x: np.ndarray, levels: np.ndarray, logits: np.ndarray) -> None:
        bufs = self._buffers(x.shape[0])
        last = len(self._fns) - 1
        ri = self._round_index
        cur = x
        for k, fn in enumerate(self._fns):
            out = levels if k == ri else (logits if k == last else bufs[k])
            fn(cur, out)
            cur = out

    def intermediates(self, npu_out: np.ndarray) -> list[np.ndarray]:
        """Every step's output (copies), in host.onnx node order; for debugging and tests."""
        x = np.asarray(npu_out, dtype=np.float32).reshape(len(npu_out), self.input_width)
        outs = []
        cur = x
        for fn, w in zip(self._fns, self._widths):
            out = np.empty((len(x), w), dtype=np.float32)
            fn(cur, out)
            outs.append(out)
            cur = out
        return outs

    def describe(self) -> list[str]:
        """One line per step, e.g. for a notebook."""
        return [f"{k:2d} {s['op']:<6} {s['node']}" for k, s in enumerate(self.steps)]


def levels_to_indices(levels: np.ndarray, fsq_levels: Sequence[int]) -> np.ndarray:
    """Codebook index per window: sum_i (level_i + L_i // 2) * prod_{j<i} L_j (REFERENCE.md §1)."""
    lv = np.asarray(levels)
    L = np.asarray(fsq_levels, dtype=np.int64)
    if lv.ndim != 2 or lv.shape[1] != L.size:
        raise ValueError(f"levels must be (N, {L.size}) for FSQ levels {list(fsq_levels)}, got {lv.shape}")
    lvi = np.rint(lv).astype(np.int64)
    if not np.array_equal(lvi, lv):
        raise ValueError("levels must be integers (round the bound values with rint first)")
    shifted = lvi + L // 2
    if (shifted < 0).any() or (shifted >= L).any():
        raise ValueError(f"levels out of range for FSQ levels {list(fsq_levels)}")
    basis = np.concatenate([[1], np.cumprod(L[:-1])]).astype(np.int64)
    return shifted @ basis


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place (0 = bitwise equal, also for +0 vs -0)."""

    def ordered(x: np.ndarray) -> np.ndarray:
        i = np.ascontiguousarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return np.abs(ordered(a) - ordered(b))


def row_scaled_ulp(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|a - ref| in units of the float32 spacing at each row's largest |ref| value.

    Why not plain ulp: a logit near zero after cancellation can differ by many of its own (tiny) ulps
    while the error is one ulp of the numbers that were summed; the row maximum sets that scale.
    """
    ref32 = np.asarray(ref, dtype=np.float32)
    scale = np.spacing(np.maximum(np.abs(ref32).max(axis=-1, keepdims=True), np.float32(1e-30)))
    return np.abs(np.asarray(a, np.float64) - ref32) / scale.astype(np.float64)


def compare_with_host_onnx(
    post: HostPostprocessor, levels_ref: np.ndarray, logits_ref: np.ndarray, npu_out: np.ndarray
) -> dict[str, Any]:
    """Agreement of the numpy post-processor with host.onnx (ORT) outputs on the same NPU output."""
    levels, logits = post(npu_out)
    levels_ref = np.asarray(levels_ref, np.float32).reshape(levels.shape)
    if logits.shape[1] == 0:  # an encoder: no class logits, the levels are the whole result
        return {
            "n_windows": int(len(levels)),
            "levels_equal": float((levels == levels_ref).all(axis=1).mean()),
            "levels_bitwise": bool(levels.tobytes() == np.ascontiguousarray(levels_ref).tobytes()),
            "logits_bitwise": None,
            "logits_max_ulp": None,
            "logits_max_row_ulp": 0.0,
            "logits_max_abs_diff": None,
            "backend": "numpy-host (vs ort-fp32 host.onnx)",
            "note": "the model has no class logits; only the FSQ levels are compared",
        }
    ulp = ulp_distance(logits, logits_ref)
    row_ulp = row_scaled_ulp(logits, logits_ref)
    return {
        "n_windows": int(len(levels)),
        "levels_equal": float((levels == levels_ref).all(axis=1).mean()),
        "levels_bitwise": bool(levels.tobytes() == np.ascontiguousarray(levels_ref, np.float32).tobytes()),
        "logits_bitwise": bool(int(ulp.max()) == 0),
        "logits_max_ulp": int(ulp.max()),
        "logits_max_row_ulp": float(row_ulp.max()),
        "logits_max_abs_diff": float(np.abs(logits.astype(np.float64) - logits_ref).max()),
        "backend": "numpy-host (vs ort-fp32 host.onnx)",
    }


def measure_host_speed(
    post: "HostPostprocessor",
    npu_out: np.ndarray,
    calls: int = 2000,
    warmup: int = 200,
    batch: int = 8192,
    batch_repeats: int = 20,
) -> tuple[dict[str, float], np.ndarray]:
    """Batch-1 call times (p50/p95 in µs) and batched throughput of the numpy host post-processor on
    this CPU (backend ``numpy-fp32``). Returns the summary and the per-call seconds for a histogram."""
    import time

    npu_out = np.asarray(npu_out).reshape(len(npu_out), -1)  # NPU outputs may be (N, 1, 1, D)
    one = np.ascontiguousarray(npu_out[:1])
    for _ in range(warmup):
        post(one)
    seconds = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        post(one)
        seconds[i] = time.perf_counter() - t0
    big = np.ascontiguousarray(np.resize(npu_out, (batch, npu_out.shape[1])))
    post(big)
    t0 = time.perf_counter()
    for _ in range(batch_repeats):
        post(big)
    throughput = batch_repeats * batch / (time.perf_counter() - t0)
    return (
        {
            "batch1_p50_us": float(np.median(seconds) * 1e6),
            "batch1_p95_us": float(np.percentile(seconds, 95) * 1e6),
            "batched_windows_per_s": float(throughput),
        },
        seconds,
    )

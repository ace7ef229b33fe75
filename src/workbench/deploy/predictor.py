"""Windows in physical units -> label, probabilities, FSQ code and conformal set, from a verified bundle.

The path is the one stage 07 measured, piece by piece: the run's :class:`Normalizer`, the NPU part
(a Hailo-8 through :class:`HailoRTRunner`, or ONNX Runtime on ``npu_int8.onnx`` / ``npu_dynamic.onnx``
with the session settings stage 07 uses), the shared numpy :class:`HostPostprocessor`, then
softmax(logits / T) with stage 08's temperature and stage 08's conformal predictor. So for the same
windows and backend the codes are bit-identical to ``predictions_<backend>.npz``.

No torch, no papermill, no pandas: this module runs on the Pi.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from workbench.config import HAILO8_DEVICE, ORT_FP32, ORT_INT8, SERVE_BACKENDS
from workbench.deploy.bundle import Bundle, conformal_predictor
from workbench.errors import BackendUnavailable, BundleError
from workbench.errors import InferenceInputError as InputError

# `workbench serve --backend` choices: the short CLI name -> the project's backend name (config.py).
SERVE_CHOICES = {"auto": "auto", **SERVE_BACKENDS}
DEFAULT_MAX_WINDOWS = 4096


@dataclass
class Prediction:
    """What the service returns for N windows (arrays, one row per window)."""

    backend: str
    logits: np.ndarray  # (N, K) float32, from the host post-processor
    probabilities: np.ndarray  # (N, K) float64, softmax(logits / T)
    levels: np.ndarray  # (N, D) float32 integer FSQ levels
    code_index: np.ndarray  # (N,) int64 codebook index
    sets: Optional[np.ndarray]  # (N, K) bool conformal membership, None without stage 08
    timings: dict[str, float]  # seconds: normalise, npu, host

    @property
    def class_index(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


def choose_backend(
    bundle: Bundle, requested: str = "auto", hailort_probe: Optional[Callable[[], tuple[bool, str]]] = None
) -> tuple[str, str]:
    """(backend, why). ``auto``: hailo8-device when the bundle has a HEF and HailoRT finds a device,
    else ort-int8-emulated (else ort-fp32 when the bundle has no INT8 model)."""
    if requested not in SERVE_CHOICES and requested not in SERVE_CHOICES.values():
        raise BundleError(f"unknown backend {requested!r}; choose one of {list(SERVE_CHOICES)}")
    name = SERVE_CHOICES.get(requested, requested)
    if hailort_probe is None:
        from workbench.hailo.runtime import hailort_available

        hailort_probe = hailort_available
    if name != "auto":
        bundle.backend_entry(name)  # raises when the bundle lacks it
        if name == HAILO8_DEVICE:
            ok, reason = hailort_probe()
            if not ok:
                raise BackendUnavailable(
                    f"--backend hailo8-device cannot run here: {reason}. Use --backend auto "
                    f"(falls back to ort-int8) or fix the HailoRT installation"
                )
            return name, f"requested; {reason}"
        return name, "requested"
    if HAILO8_DEVICE in bundle.backends:
        ok, reason = hailort_probe()
        if ok:
            return HAILO8_DEVICE, reason
        why = f"bundle has a HEF but {reason}"
    else:
        why = "bundle has no HEF"
    for name in (ORT_INT8, ORT_FP32):
        if name in bundle.backends:
            return name, why
    raise BundleError(f"bundle {bundle.path} has no CPU model and hailo8-device is unavailable ({why})")


class _OrtNpu:
    """ONNX Runtime on the NPU-part ONNX file, with stage 07's session settings (one intra-op thread).
    ``InferenceSession.run`` is thread-safe and releases the GIL, so one session serves every thread."""

    def __init__(self, path: str, output_tensor: Optional[str]):
        from workbench.graph.session import npu_io, ort_session

        self.session = ort_session(path)
        self.input_name, self.output_name, self.static_batch = npu_io(self.session, output_tensor)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        b = self.static_batch
        if b in (None, x.shape[0]):
            return self.session.run([self.output_name], {self.input_name: x})[0]
        pad = (-x.shape[0]) % b  # a static-batch model: run full batches, drop the padding rows
        xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        out = np.concatenate(
            [
                self.session.run([self.output_name], {self.input_name: xp[i : i + b]})[0]
                for i in range(0, xp.shape[0], b)
            ]
        )
        return out[: x.shape[0]]

    def close(self) -> None:
        self.session = None


class _HailoNpu:
    """A Hailo-8 through the project's HailoRTRunner (NHWC in, (N, D) out). One device, one caller at a
    time: HailoRT bindings are not shared between threads, so calls are serialised."""

    def __init__(self, hef: str, runner_factory: Optional[Callable[..., Any]] = None):
        from workbench.hailo.runtime import HailoRTRunner

        self.runner = (runner_factory or HailoRTRunner)(hef, api="auto")
        self.runner.open()
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from workbench.data.layout import nchw_to_nhwc

        nhwc = nchw_to_nhwc(x)
        with self._lock:
            return self.runner.infer(nhwc)

    def close(self) -> None:
        self.runner.close()


class Predictor:
    """The whole inference path for one backend of one bundle. Thread-safe: the host post-processor
    (which reuses buffers) is built once per thread."""

    def __init__(
        self,
        bundle: Bundle,
        backend: str = "auto",
        max_windows: int = DEFAULT_MAX_WINDOWS,
        runner_factory: Optional[Callable[..., Any]] = None,
        hailort_probe: Optional[Callable[[], tuple[bool, str]]] = None,
    ):
        self.bundle = bundle
        self.backend, self.backend_reason = choose_backend(bundle, backend, hailort_probe)
        self.entry = bundle.backend_entry(self.backend)
        self.max_windows = int(max_windows)
        self.input_shape = bundle.input_shape
        self.label_names = bundle.label_names
        self.fsq_levels = bundle.fsq_levels
        self.normalizer = bundle.normalizer()
        if tuple(self.normalizer.mean.shape[:2]) != self.input_shape[:2]:
            raise BundleError(
                f"normalizer.json is fitted on (C, S) = {self.normalizer.mean.shape[:2]} but "
                f"deploy.json says windows are {self.input_shape}; rebuild the bundle"
            )
        self._host_local = threading.local()
        host = self._host()
        if host.num_classes != len(self.label_names):
            raise BundleError(
                f"the host post-processor outputs {host.num_classes} classes but deploy.json "
                f"names {len(self.label_names)}; rebuild the bundle"
            )
        self.temperature = self.entry.get("temperature")
        t = self.entry.get("input_transform") or {}
        self._scale = None if t.get("scale") is None else np.asarray(t["scale"], np.float32)[None, :, None, None]
        self._clip = t.get("clip")
        self.conformal = conformal_predictor(self.entry.get("conformal"))
        npu_path = str(bundle.file(self.entry["npu_file"]))
        split = host.split_info
        if self.backend == HAILO8_DEVICE:
            self.npu: Any = _HailoNpu(npu_path, runner_factory)
        else:
            self.npu = _OrtNpu(npu_path, split.get("npu_output_tensor"))
        from workbench.graph.host import levels_to_indices
        from workbench.reliability.metrics import softmax

        self._levels_to_indices = levels_to_indices
        self._softmax = softmax
        self.conformal_info = (
            None
            if self.conformal is None
            else {"method": self.entry["conformal"]["method"], "alpha": self.conformal.alpha}
        )
        self.expected = (
            f"one window (C, S, T) = {self.input_shape} or a batch (N, "
            f"{', '.join(map(str, self.input_shape))}) with 1 <= N <= {self.max_windows}, "
            f"finite numbers in physical units"
        )

    def _host(self) -> Any:
        host = getattr(self._host_local, "host", None)
        if host is None:
            host = self.bundle.host_postprocessor()
            self._host_local.host = host
        return host

    # ---- input ---------------------------------------------------------------------------------
    def check_windows(self, windows: Any) -> np.ndarray:
        """The request's windows as float32 (N, C, S, T), or :class:`InputError` naming the expected shape."""
        x = windows if isinstance(windows, np.ndarray) else _as_array(windows, self.expected)
        if x.dtype.kind not in "fiu":
            raise InputError(
                "dtype", f"windows have dtype {x.dtype}; expected numbers (float32 or float64): {self.expected}"
            )
        if x.ndim == len(self.input_shape):
            x = x[None]
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise InputError("shape", f"windows have shape {tuple(x.shape)}; expected {self.expected}")
        if x.shape[0] == 0:
            raise InputError("empty", f"no windows in the request; expected {self.expected}")
        if x.shape[0] > self.max_windows:
            raise InputError(
                "too_many",
                f"{x.shape[0]} windows in one request; at most {self.max_windows} "
                f"(split the batch): expected {self.expected}",
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise InputError(
                "not_finite", f"windows contain NaN or inf (or values beyond float32); expected {self.expected}"
            )
        return x

    # ---- inference -----------------------------------------------------------------------------
    def predict(self, windows: Any) -> Prediction:
        x = self.check_windows(windows)
        t0 = time.perf_counter()
        xn = self._transform(self.normalizer.apply(x))
        t1 = time.perf_counter()
        npu_out = np.asarray(self.npu(xn), dtype=np.float32)
        t2 = time.perf_counter()
        levels, logits = self._host()(npu_out)
        probs = self._softmax(logits, 1.0 if self.temperature is None else self.temperature)
        sets = self.conformal.predict_sets(probs) if self.conformal is not None else None
        codes = self._levels_to_indices(levels, self.fsq_levels)
        t3 = time.perf_counter()
        return Prediction(
            backend=self.backend,
            logits=logits,
            probabilities=probs,
            levels=levels,
            code_index=codes,
            sets=sets,
            timings={"normalise": t1 - t0, "npu": t2 - t1, "host": t3 - t2},
        )

    def _transform(self, xn: np.ndarray) -> np.ndarray:
        """Stage 05's host input transform for the deployed graph: x / scale per channel, then clip (the
        same arithmetic as ``workbench.quant.transform.InputTransform.apply``, kept here so serving
        imports nothing of the quantization toolchain; a test holds the two equal)."""
        if self._scale is not None:
            xn = xn / self._scale
        if self._clip is not None:
            xn = np.clip(xn, self._clip[0], self._clip[1])
        return np.ascontiguousarray(xn, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What /healthz reports about the model."""
        hef = self.bundle.backend_entry(HAILO8_DEVICE)["npu_file"] if HAILO8_DEVICE in self.bundle.backends else None
        return {
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "run_id": self.bundle.run_id,
            "model_file": self.entry["npu_file"],
            "model_sha256": self.bundle.sha256(self.entry["npu_file"]),
            "hef_sha256": self.bundle.sha256(hef) if hef else None,
            "input_shape": list(self.input_shape),
            "labels": self.label_names,
            "fsq_levels": self.fsq_levels,
            "temperature": self.temperature,
            "calibrated_on": self.entry.get("calibrated_on"),
            "calibration_borrowed": bool(self.entry.get("borrowed")),
            "conformal": self.conformal_info,
            "max_windows": self.max_windows,
        }

    def close(self) -> None:
        self.npu.close()


def _as_array(obj: Any, expected: str) -> np.ndarray:
    """Nested JSON lists -> ndarray; ragged or non-numeric input becomes an InputError, not a crash."""
    if isinstance(obj, (bool, str, bytes, dict)) or obj is None:
        raise InputError("dtype", f"'windows' must be a nested list of numbers; expected {expected}")
    try:
        x = np.asarray(obj)
    except (ValueError, TypeError) as exc:
        raise InputError("shape", f"'windows' is not a rectangular array ({exc}); expected {expected}") from None
    if x.dtype == object:
        raise InputError("shape", f"'windows' is ragged or mixes types; expected {expected}")
    return x


def prediction_body(pred: Prediction, predictor: Predictor) -> dict[str, Any]:
    """The /infer response: shared facts once, then one object per window."""
    labels = predictor.label_names
    cls = pred.class_index.tolist()
    probs = pred.probabilities.tolist()
    levels = pred.levels.astype(np.int64).tolist()
    codes = pred.code_index.tolist()
    logits = pred.logits.tolist()
    if pred.sets is not None:
        sets: list[Optional[list[str]]] = [[lab for lab, m in zip(labels, row) if m] for row in pred.sets.tolist()]
    else:
        sets = [None] * len(cls)
    conformal = predictor.conformal_info
    return {
        "backend": pred.backend,
        "run_id": predictor.bundle.run_id,
        "n": len(cls),
        "labels": labels,
        "temperature": predictor.temperature,
        "conformal": conformal,
        "predictions": [
            {
                "label": labels[c],
                "class_index": c,
                "probabilities": p,
                "fsq_levels": lv,
                "code_index": k,
                "conformal_set": s,
                "logits": z,
            }
            for c, p, lv, k, s, z in zip(cls, probs, levels, codes, sets, logits)
        ],
    }

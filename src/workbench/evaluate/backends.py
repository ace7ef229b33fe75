"""Evaluation backends behind one interface.

Every backend produces the same tensor: the NPU part's output, cut before ``Round`` (``split.json``
says whether that is the FSQ ``bound`` or the ``projection``). The rest -- Round, the code
normalisation and the classifier head -- always runs in the ONE shared numpy
:class:`~workbench.graph.host.HostPostprocessor`, so a difference between backends can only come from
the NPU part: PyTorch FP32, ONNX Runtime FP32, ONNX Runtime INT8 (QDQ emulation on CPU), the Hailo
Dataflow Compiler's quantized emulator, or a real Hailo-8.

Inputs are NCHW ``(N, C, S, T)`` float32 windows already normalised with the checkpoint's normaliser.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from workbench.config import BACKEND_NAMES, HAILO8_DEVICE, HAILO_EMULATOR, ORT_FP32, ORT_INT8, TORCH_FP32
from workbench.data.layout import nchw_to_nhwc
from workbench.data.windowset import SplitWindows, load_split_windows
from workbench.errors import BackendUnavailable, NonFiniteOutput
from workbench.evaluate.metrics import BackendResult
from workbench.hailo.compile import EMULATOR_FILES

# What stage 06 leaves behind when the DFC emulator ran (SDK_QUANTIZED / SDK_FP_OPTIMIZED on the
# test windows, flattened to (N, D), rows in the order of the stored windows.npz indices).
EMULATOR_QUANTIZED_FILE = EMULATOR_FILES["quantized"]
EMULATOR_FP_FILE = EMULATOR_FILES["fp_optimized"]
EMULATOR_INDEX_FILE = EMULATOR_FILES["indices"]


def check_finite_output(backend: str, what: str, arr: np.ndarray) -> np.ndarray:
    """Return ``arr`` unchanged, or raise NonFiniteOutput naming the backend, the tensor and the windows.

    argmax over NaN logits picks class 0 and accuracies, ECE and coverage would then be computed on
    numbers that mean nothing; stopping here keeps every reported figure real.
    """
    a = np.asarray(arr)
    if a.size and np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        rows = np.flatnonzero(~np.all(np.isfinite(a.reshape(len(a), -1)), axis=1))
        raise NonFiniteOutput(
            f"{backend} produced NaN/inf in its {what} for {len(rows)} of {len(a)} windows "
            f"(first: batch row {int(rows[0])}); no metrics are computed from it. Check the "
            f"model's weights (checkpoint) and the files this backend reads"
        )
    return arr


# ---- what every backend needs ---------------------------------------------------------------------
@dataclass
class EvalContext:
    """Paths and shared objects of one run that the backends read."""

    run_dir: Path
    split: dict  # split.json
    host: Any  # HostPostprocessor: npu_out -> (levels, logits)
    checkpoint: Path
    npu_dynamic_onnx: Path
    npu_int8_onnx: Path
    compile_dir: Path  # stage 06 folder
    hef_path: Optional[Path] = None  # params.hef_path, resolved later if None
    model_meta: Optional[Path] = None  # stage 01 model_meta.json (normaliser, labels; no torch)
    multi_process_service: bool = False  # open the Hailo-8 through HailoRT's multi-process service
    runner_factory: Optional[Callable[..., Any]] = None  # tests inject; default HailoRTRunner
    # Stage 05's chosen remedy (issue 14): per-channel scale + clip the host applies before the deployed
    # NPU graph (npu_int8.onnx / the HEF), which was calibrated in that input space. None = identity.
    input_transform: Any = None

    @property
    def npu_input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.split["npu_input_shape"])

    @property
    def npu_output_dim(self) -> int:
        shape = self.split.get("npu_output_shape")
        if shape:
            return int(np.prod([int(d) for d in list(shape)[1:]]))
        return len(self.split["fsq_levels"])

    @classmethod
    def from_stage(
        cls, stage: Any, hef_path: Optional[str] = None, host: Any = None, multi_process_service: bool = False
    ) -> "EvalContext":
        """Build from an open stage-07 :class:`~workbench.runs.Stage` (artifacts of stages 01-06)."""
        split_path = stage.artifact("split")
        split = json.loads(Path(split_path).read_text())
        if host is None:
            host = load_host_postprocessor(split_path, stage.artifact("host_weights"))
        run = stage.run
        from workbench.quant.transform import InputTransform, load_remedy

        remedy = load_remedy(run.artifact("quant_remedy", must_exist=False))
        transform = InputTransform.from_dict(remedy.get("input_transform"))
        return cls(
            run_dir=run.path,
            split=split,
            host=host,
            input_transform=None if transform.identity else transform,
            checkpoint=run.artifact("checkpoint", must_exist=False),
            model_meta=run.artifact("model_meta", must_exist=False),
            npu_dynamic_onnx=run.artifact("npu_dynamic_onnx", must_exist=False),
            npu_int8_onnx=run.artifact("npu_int8_onnx", must_exist=False),
            compile_dir=run.artifact("hef", must_exist=False).parent,  # no mkdir: 06 may not have run
            hef_path=Path(hef_path).expanduser() if hef_path else None,
            multi_process_service=bool(multi_process_service),
        )


def load_normalizer(model_meta: Optional[Path], checkpoint: Optional[Path] = None) -> tuple[Any, list[str]]:
    """The model's own normaliser (fitted on the training split) and its label names: for an imported
    model from stage 01's imported_model.json, else from model_meta.json (no torch); runs older than that
    file fall back to the checkpoint, which needs torch."""
    from workbench.model.importing import load_run_model

    stage01 = Path(model_meta if model_meta is not None else checkpoint).parent
    rm = load_run_model(stage01)
    return rm.normalizer, list(rm.label_names)


def load_host_postprocessor(split_json: Path, host_weights: Path) -> Any:
    """The shared numpy post-processor of stage 04 (graph/host.py)."""
    from workbench.graph.host import HostPostprocessor

    return HostPostprocessor.from_files(split_json, host_weights)


# ---- the interface --------------------------------------------------------------------------------
class Backend(ABC):
    """One way of running the NPU part of the model. Subclasses implement ``_npu_output`` and
    ``_availability``; ``predict`` always goes through the shared host post-processor."""

    name: ClassVar[str]
    hardware: ClassVar[str]  # what actually computes, for tables ("CPU (PyTorch)", ...)
    timing_meaningful: ClassVar[bool] = True
    timing_note: ClassVar[str] = ""
    #: True for backends that run the deployed graph (stage 05's remedy): they get the host input transform.
    deployed_graph: ClassVar[bool] = False

    def __init__(self, ctx: EvalContext):
        self.ctx = ctx
        self._ready = False

    # -- availability --------------------------------------------------------------------------
    @abstractmethod
    def _availability(self) -> tuple[bool, str]:
        """(True, what will run) or (False, why not and how to make it available)."""

    def available(self) -> tuple[bool, str]:
        try:
            return self._availability()
        except Exception as exc:  # an import or file error is a reason, not a crash, at selection time
            return False, f"{type(exc).__name__}: {exc}"

    # -- inference -----------------------------------------------------------------------------
    def open(self) -> "Backend":
        """Load models / open devices once (idempotent)."""
        if not self._ready:
            ok, reason = self.available()
            if not ok:
                raise BackendUnavailable(f"backend {self.name} is not available: {reason}")
            self._open()
            self._ready = True
        return self

    def _open(self) -> None:  # noqa: B027 - most backends need no set-up
        pass

    def close(self) -> None:
        self._ready = False

    def __enter__(self) -> "Backend":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @abstractmethod
    def _npu_output(self, x: np.ndarray, index: Optional[np.ndarray]) -> np.ndarray: ...

    def npu_output(self, x: np.ndarray, index: Optional[np.ndarray] = None) -> np.ndarray:
        """The pre-Round tensor (N, D) float32 for NCHW normalised windows ``x``.

        ``index``: the windows' indices in windows.npz; only the replaying ``hailo-emulator`` needs it.
        """
        x = self._check_input(x)
        self.open()
        if self.deployed_graph and self.ctx.input_transform is not None:
            x = self.ctx.input_transform.apply(x)
        out = np.asarray(self._npu_output(x, index), dtype=np.float32)
        out = out.reshape(out.shape[0], -1) if out.ndim > 1 else out
        if out.ndim != 2 or out.shape != (x.shape[0], self.ctx.npu_output_dim):
            raise RuntimeError(
                f"{self.name} returned shape {out.shape}; expected "
                f"({x.shape[0]}, {self.ctx.npu_output_dim}) (split.json npu_output_shape)"
            )
        return check_finite_output(self.name, "NPU output (pre-Round tensor)", out)

    def host(self, npu_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shared numpy host post-processor: NPU output -> (levels, logits)."""
        levels, logits = self.ctx.host(npu_out)
        return np.asarray(levels), check_finite_output(self.name, "logits (host post-processor)", np.asarray(logits))

    def predict(self, x: np.ndarray, index: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """(levels (N, D), logits (N, K)); always via the shared host post-processor."""
        return self.host(self.npu_output(x, index))

    #: True for backends that replay outputs stored for the test windows (they cannot run on new windows).
    replays_stored_outputs = False

    def covers(self, index: np.ndarray) -> np.ndarray:
        """Boolean mask: which of these windows this backend can evaluate (all, except replays)."""
        return np.ones(len(index), dtype=bool)

    def verify_windows(self, test_index: np.ndarray) -> None:  # noqa: B027 - only replays check
        """Raise when the backend's stored data does not belong to these test windows (replays only)."""

    def info(self) -> dict[str, Any]:
        """Details for the backend table (hardware, output bits, files used)."""
        return {"hardware": self.hardware}

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        want = self.ctx.npu_input_shape[1:]
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"{self.name}: input must be NCHW (N, {', '.join(map(str, want))}) normalised "
                f"windows (split.json npu_input_shape); got shape {x.shape}"
            )
        return np.ascontiguousarray(x, dtype=np.float32)


def _cut_key(split: dict) -> str:
    cut = split.get("cut", "after_bound")
    if cut == "after_bound":
        return "bound"
    if cut == "after_projection":
        return "projection"
    raise ValueError(f"split.json has unknown cut {cut!r}; expected after_bound or after_projection")


class TorchFP32(Backend):
    """The trained PyTorch model (checkpoint of stage 01), NPU part = forward_parts()[bound|projection]."""

    name = TORCH_FP32
    hardware = "CPU (PyTorch FP32)"

    def _imported(self) -> Optional[Any]:
        from workbench.model.importing import IMPORT_RECORD, ImportedModel

        rec = self.ctx.checkpoint.parent / IMPORT_RECORD
        return ImportedModel.from_dict(json.loads(rec.read_text())) if rec.is_file() else None

    def _availability(self) -> tuple[bool, str]:
        rec = self._imported()
        if rec is not None:
            if not rec.has_torch:
                return False, (
                    "absent for an ONNX import: there is no PyTorch model, so ort-fp32 is the FP32 reference"
                )
            if self.ctx.split.get("cut") != "after_bound" or self.ctx.split.get("cut_source") == "cut_tensor":
                return False, (
                    "an imported PyTorch model exposes its FSQ bound (the input of its first "
                    "torch.round) only; use cut after_bound for torch-fp32"
                )
            return True, f"PyTorch factory {rec.source}, bound = input of its first torch.round"
        if not self.ctx.checkpoint.is_file():
            return False, f"no checkpoint at {self.ctx.checkpoint}; run stage 01"
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return False, (
                f"torch does not import here ({exc}; the Hailo install profiles leave it out); "
                f"ort-fp32 runs the same FP32 NPU graph"
            )
        return True, f"checkpoint {self.ctx.checkpoint.name}, cut {self.ctx.split.get('cut')}"

    def _open(self) -> None:
        rec = self._imported()
        self.record = rec
        if rec is not None:
            from workbench.model.importing import load_imported_torch

            self.model = load_imported_torch(self.ctx.checkpoint.parent, rec)
            return
        import torch

        from workbench.model.checkpoint import load_checkpoint

        # one thread, like the ONNX Runtime sessions: comparable timings, stable on a shared CPU
        torch.set_num_threads(1)
        self.model, _ = load_checkpoint(self.ctx.checkpoint)
        self.model.eval()
        self.key = _cut_key(self.ctx.split)

    def _npu_output(self, x: np.ndarray, index: Optional[np.ndarray]) -> np.ndarray:
        import torch

        if self.record is not None:
            from workbench.model.importing import to_model_layout, torch_round_inputs

            rounds, _ = torch_round_inputs(self.model, to_model_layout(x, self.record.input_layout))
            return rounds[0].reshape(len(x), -1)
        with torch.no_grad():
            return self.model.forward_parts(torch.from_numpy(x))[self.key].cpu().numpy()


class _OrtBackend(Backend):
    """An ONNX Runtime CPU session over an NPU-part ONNX file."""

    path_attr: ClassVar[str]
    produced_by: ClassVar[str]

    def _path(self) -> Path:
        return getattr(self.ctx, self.path_attr)

    def _availability(self) -> tuple[bool, str]:
        import onnxruntime  # noqa: F401  (ImportError becomes the reason)

        p = self._path()
        if not p.is_file():
            return False, f"{p.name} not found in the run; {self.produced_by}"
        return True, f"{p.name} on onnxruntime CPUExecutionProvider"

    def _open(self) -> None:
        from workbench.graph.session import npu_io, ort_session

        self.session = ort_session(self._path())  # one thread: batch-1 windows are tiny, timings stay stable
        self.input_name, self.output_name, self.static_batch = npu_io(
            self.session, self.ctx.split.get("npu_output_tensor")
        )

    def _npu_output(self, x: np.ndarray, index: Optional[np.ndarray]) -> np.ndarray:
        if self.static_batch in (None, x.shape[0]):
            return self.session.run([self.output_name], {self.input_name: x})[0]
        b = self.static_batch
        if x.shape[0] % b:
            raise ValueError(
                f"{self._path().name} has a static batch of {b}; {x.shape[0]} windows is not a multiple of it"
            )
        return np.concatenate(
            [self.session.run([self.output_name], {self.input_name: x[i : i + b]})[0] for i in range(0, x.shape[0], b)]
        )

    def info(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "source": self._path().name}


class OrtFP32(_OrtBackend):
    name = ORT_FP32
    hardware = "CPU (onnxruntime FP32)"
    path_attr = "npu_dynamic_onnx"
    produced_by = "stage 04 writes npu_dynamic.onnx"


class OrtInt8Emulated(_OrtBackend):
    name = ORT_INT8
    hardware = "CPU (onnxruntime INT8 QDQ emulation)"
    path_attr = "npu_int8_onnx"
    produced_by = "stage 05 writes npu_int8.onnx"
    timing_note = "CPU INT8 emulation: not NPU latency"
    deployed_graph = True

    def info(self) -> dict[str, Any]:
        out = super().info()
        try:
            from workbench.quant.emulate import output_quantization

            q = output_quantization(self._path())
            out["output_bits"] = q.get("bits")
        except Exception as exc:  # the table shows why the bit width is unknown instead of guessing
            out["output_bits"] = None
            out["output_quant_error"] = f"{type(exc).__name__}: {exc}"
        return out


class HailoEmulator(Backend):
    """Replays the DFC's SDK_QUANTIZED emulator outputs that stage 06 computed on the test windows.

    The emulator cannot run here (the DFC is x86-only and not on PyPI), so this backend only looks up
    the stored rows by window index; it covers exactly the windows stage 06 emulated.
    """

    name = HAILO_EMULATOR
    hardware = "CPU (Hailo DFC emulator, SDK_QUANTIZED)"
    timing_meaningful = False
    timing_note = "latency not meaningful for the DFC emulator (a numerical simulation); not reported"

    def _index_path(self) -> Optional[Path]:
        p = self.ctx.compile_dir / EMULATOR_INDEX_FILE
        return p if p.is_file() else None

    def _availability(self) -> tuple[bool, str]:
        q = self.ctx.compile_dir / EMULATOR_QUANTIZED_FILE
        if not q.is_file():
            status = stage_status(self.ctx.compile_dir)
            why = f"stage 06 status {status!r}" if status else "stage 06 has not run"
            return False, (
                f"no {EMULATOR_QUANTIZED_FILE} ({why}); the Dataflow Compiler emulator runs "
                f"only where hailo_sdk_client is installed"
            )
        if self._index_path() is None:
            return False, (
                f"{EMULATOR_QUANTIZED_FILE} exists but {EMULATOR_INDEX_FILE} (the windows' "
                f"indices) is missing next to it; re-run stage 06"
            )
        return True, f"stored SDK_QUANTIZED outputs ({q.name})"

    def _open(self) -> None:
        self.outputs = np.load(self.ctx.compile_dir / EMULATOR_QUANTIZED_FILE)
        self.index = np.load(self._index_path()).astype(np.int64).ravel()
        if self.outputs.shape[0] != self.index.shape[0]:
            raise RuntimeError(
                f"{EMULATOR_QUANTIZED_FILE} has {self.outputs.shape[0]} rows but the index "
                f"file has {self.index.shape[0]}; re-run stage 06"
            )
        self.row_of = {int(i): r for r, i in enumerate(self.index)}

    replays_stored_outputs = True

    def covers(self, index: np.ndarray) -> np.ndarray:
        """Which of the windows ``index`` stage 06 emulated (only test windows ever are)."""
        self.open()
        return np.array([int(i) in self.row_of for i in index], dtype=bool)

    def verify_windows(self, test_index: np.ndarray) -> None:
        """Every stored index must be one of the test windows: anything else means the index file holds
        other numbers (e.g. positions within the test split instead of windows.npz indices), and
        replaying would pair outputs with the wrong labels."""
        self.open()
        wanted = {int(i) for i in test_index}
        foreign = [int(i) for i in self.index if int(i) not in wanted]
        if foreign:
            raise RuntimeError(
                f"{EMULATOR_INDEX_FILE} holds {len(foreign)} indices that are not test windows "
                f"of windows.npz (e.g. {foreign[:5]}); stage 06 must store windows.npz indices "
                f"of the emulated test windows. Re-run stage 06"
            )

    def _npu_output(self, x: np.ndarray, index: Optional[np.ndarray]) -> np.ndarray:
        if index is None or len(index) != x.shape[0]:
            raise ValueError(
                "hailo-emulator replays stored DFC outputs and needs the window indices (index=...) of the windows in x"
            )
        missing = [int(i) for i in index if int(i) not in self.row_of]
        if missing:
            raise KeyError(
                f"stage 06 did not emulate windows {missing[:10]}...; use covers() to select the emulated windows"
            )
        return self.outputs[[self.row_of[int(i)] for i in index]]

    def sanity_check(self, data: "EvalData", reference: Backend) -> pd.DataFrame:
        """Stored SDK_FP_OPTIMIZED and SDK_QUANTIZED outputs against ``reference`` (an FP32 backend)
        on the same windows: cosine, SQNR and max |diff|. FP-optimized should be close to FP32; a low
        cosine there means the stored rows do not belong to these windows."""
        from workbench.quant.analysis import cosine, sqnr_db

        mask = self.covers(data.index)
        idx = data.index[mask]
        ref = reference.npu_output(data.X[mask])
        rows = []
        fp = self.fp_optimized()
        stored = [("SDK_QUANTIZED", self.npu_output(data.X[mask], idx))]
        if fp is not None:
            fp_index, fp_out = fp
            pos = {int(i): r for r, i in enumerate(fp_index)}
            stored.insert(0, ("SDK_FP_OPTIMIZED", fp_out[[pos[int(i)] for i in idx]].reshape(len(idx), -1)))
        for ctx_name, out in stored:
            rows.append(
                {
                    "backend": self.name,
                    "dfc_context": ctx_name,
                    "reference": reference.name,
                    "n_windows": int(len(idx)),
                    "cosine": cosine(ref, out),
                    "sqnr_db": sqnr_db(ref, out),
                    "max_abs_diff": float(np.max(np.abs(ref - out))),
                }
            )
        return pd.DataFrame(rows)

    def fp_optimized(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(index, SDK_FP_OPTIMIZED outputs) when stage 06 stored them, else None."""
        p = self.ctx.compile_dir / EMULATOR_FP_FILE
        if not p.is_file():
            return None
        self.open()
        return self.index, np.load(p)

    def info(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "source": EMULATOR_QUANTIZED_FILE}


class Hailo8Device(Backend):
    """A real Hailo-8 through HailoRT (workbench.hailo.runtime.HailoRTRunner), FLOAT32 in and out."""

    name = HAILO8_DEVICE
    hardware = "Hailo-8 NPU (HailoRT)"
    deployed_graph = True
    timing_note = "HailoRT infer() batch 1, host-side quantize/dequantize included"

    def hef(self) -> Path:
        if self.ctx.hef_path is not None:
            return self.ctx.hef_path
        return self.ctx.compile_dir / "model.hef"

    def _availability(self) -> tuple[bool, str]:
        hef = self.hef()
        if not hef.is_file():
            src = "params.hef_path" if self.ctx.hef_path is not None else "stage 06"
            return False, (
                f"no HEF at {hef} ({src}); compile with the DFC (stage 06 / compile.sh) or "
                f"pass -p hef_path PATH or `workbench hailo import-hef`"
            )
        if self.ctx.runner_factory is None:
            from workbench.hailo.runtime import hailort_available

            ok, reason = hailort_available()
            if not ok:
                return False, reason
        return True, f"HEF {hef}"

    def _open(self) -> None:
        factory = self.ctx.runner_factory
        if factory is None:
            from workbench.hailo.runtime import HailoRTRunner

            factory = HailoRTRunner
        self.runner = factory(str(self.hef()), api="auto", multi_process_service=self.ctx.multi_process_service)
        self.runner.__enter__()

    def close(self) -> None:
        if self._ready and getattr(self, "runner", None) is not None:
            self.runner.__exit__(None, None, None)
            self.runner = None
        super().close()

    def _npu_output(self, x: np.ndarray, index: Optional[np.ndarray]) -> np.ndarray:
        return self.runner.infer(nchw_to_nhwc(x))

    @contextlib.contextmanager
    def released(self) -> Iterator[bool]:
        """Let another process (``hailortcli``) use the device, then take it back.

        A Hailo-8 has one holder at a time; a second opener gets HAILO_OUT_OF_PHYSICAL_DEVICES. So the
        HailoRT objects are closed for the block and reopened after it, unless the context uses the
        multi-process service, through which both share the device. Yields whether it was released.
        """
        release = self._ready and not self.ctx.multi_process_service
        if release:
            self.close()
        try:
            yield release
        finally:
            if release:
                self.open()

    def output_bits(self) -> Optional[int]:
        self.open()
        q = getattr(self.runner, "output_quant", None) or {}
        bits = q.get("bits") if isinstance(q, dict) else None
        return int(bits) if bits is not None else None

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hardware": self.hardware, "source": str(self.hef().name)}
        if self._ready:
            out["output_bits"] = self.output_bits()
            out["api"] = getattr(self.runner, "api", None)
            q = getattr(self.runner, "output_quant", None)
            if isinstance(q, dict):
                out["output_quant"] = q
        return out


def stage_status(folder: Path) -> Optional[str]:
    p = folder / "stage_status.json"
    if p.is_file():
        try:
            return json.loads(p.read_text()).get("status")
        except (ValueError, OSError):
            return None
    return None


REGISTRY: dict[str, type[Backend]] = {
    c.name: c for c in (TorchFP32, OrtFP32, OrtInt8Emulated, HailoEmulator, Hailo8Device)
}


# ---- selection ------------------------------------------------------------------------------------
def availability_table(ctx: EvalContext) -> pd.DataFrame:
    """Every known backend, whether it can run here, and why (or why not)."""
    rows = []
    for name in BACKEND_NAMES:
        ok, reason = REGISTRY[name](ctx).available()
        rows.append({"backend": name, "available": ok, "reason": reason})
    return pd.DataFrame(rows)


def select_backends(ctx: EvalContext, requested: Optional[Sequence[str]] = None) -> list[Backend]:
    """None -> every available backend (in BACKEND_NAMES order). An explicit list -> exactly those;
    one that is unknown or unavailable raises :class:`BackendUnavailable` with the reason."""
    if requested is not None:
        requested = list(requested)
        unknown = [n for n in requested if n not in REGISTRY]
        if unknown:
            raise BackendUnavailable(f"unknown backend(s) {unknown}; choose from {list(BACKEND_NAMES)}")
        if not requested:
            raise BackendUnavailable("backends is an empty list; use null for every available backend")
        if len(set(requested)) != len(requested):
            raise BackendUnavailable(f"backends lists a name twice: {requested}")
    names = list(BACKEND_NAMES) if requested is None else requested
    chosen: list[Backend] = []
    problems = []
    for name in names:
        backend = REGISTRY[name](ctx)
        ok, reason = backend.available()
        if ok:
            chosen.append(backend)
        elif requested is not None:
            problems.append(f"  - {name}: {reason}")
    if problems:
        raise BackendUnavailable(
            "requested backend(s) not available:\n"
            + "\n".join(problems)
            + "\nRemove them from `backends` (null = every available one) or provide "
            "what is missing."
        )
    if not chosen:
        raise BackendUnavailable("no backend is available; see availability_table() for the reasons")
    return chosen


# ---- evaluation -----------------------------------------------------------------------------------
EvalData = SplitWindows  # the normalised test windows every backend is evaluated on


def load_test_data(windows_npz: Path, normalizer: Any, split_name: str = "test") -> EvalData:
    """Test-split windows of stage 01, normalised with the checkpoint's normaliser."""
    return load_split_windows(windows_npz, split_name, normalizer)


def evaluate_backend(backend: Backend, data: EvalData, batch_size: int = 256) -> BackendResult:
    """Run ``backend.predict`` over the test windows it covers, in batches, and collect the result."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    backend.open()
    backend.verify_windows(data.index)
    mask = backend.covers(data.index)
    if not mask.any():
        raise BackendUnavailable(f"{backend.name} covers none of the {len(data.index)} test windows")
    X, idx = data.X[mask], data.index[mask]
    levels, logits = [], []
    for i in tqdm(range(0, X.shape[0], batch_size), desc=f"evaluate {backend.name}", leave=False):
        lv, lg = backend.predict(X[i : i + batch_size], idx[i : i + batch_size])
        levels.append(lv)
        logits.append(lg)
    logits_all = np.concatenate(logits).astype(np.float32)
    num_classes = data.num_classes or int(logits_all.shape[1])
    if logits_all.shape[1] not in (num_classes, 0):  # 0: a model without class output (an encoder)
        raise RuntimeError(
            f"{backend.name} produced {logits_all.shape[1]} logits per window but the data has {num_classes} classes"
        )
    info = backend.info()
    if not mask.all():
        info["coverage"] = f"{int(mask.sum())}/{mask.size} test windows"
    return BackendResult(
        backend=backend.name,
        index=idx,
        y=data.y[mask],
        subject=data.subject[mask],
        levels=np.concatenate(levels).astype(np.float32),
        logits=logits_all,
        num_classes=num_classes,
        info=info,
    )

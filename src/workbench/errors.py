"""The workbench's one error family.

Every exception the project raises on purpose derives from `WorkbenchError`, so the CLI (and a user's
script) can catch one class and print the message, which always names the problem and the fix. The
`ValueError`/`RuntimeError` mixins stay where callers rely on them: bad input is a `ValueError`, a
state of the world that stops the work (a missing tool, a failed stage) a `RuntimeError`.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the workbench raises deliberately; the message says what and the fix."""


# ---- input: parameters, data, files a user hands in ------------------------------------------------
class ParamError(WorkbenchError, ValueError):
    """A parameter file or override that does not fit the schema; the message names key and fix."""


class DataError(WorkbenchError, ValueError):
    """A data problem (missing file, bad layout, wrong shape, NaN, label out of range).

    The message names the file or array, what is wrong and how to fix it.
    """


class CheckpointError(WorkbenchError, ValueError):
    """A checkpoint that cannot be read or does not fit the requested model; says what and the fix."""


class ModelImportError(WorkbenchError, ValueError):
    """A model brought in with mode 'import' (or its normaliser/weights) cannot be used; says what and the fix."""


class ModelMetaError(CheckpointError):
    """model_meta.json (what stages 06-08 read instead of the checkpoint) is missing or malformed."""


class HefImportError(WorkbenchError, ValueError):
    """A HEF that cannot be imported; the message says why and what to do."""


class ReliabilityInputError(WorkbenchError, ValueError):
    """Arrays handed to a reliability function have the wrong shape, dtype or values."""


# ---- graph, quantization, compilation ----------------------------------------------------------
class ExportError(WorkbenchError, RuntimeError):
    """The exported graph is not what the Hailo path needs; the message names the problem and fix."""


class ParityError(WorkbenchError, RuntimeError):
    """ONNX and PyTorch disagree beyond the acceptance thresholds."""


class SplitError(WorkbenchError, ValueError):
    """The graph cannot be split as asked; the message names what was found and the fix."""


class HostError(WorkbenchError, ValueError):
    """Bad NPU output or inconsistent host files; the message names the problem and the fix."""


class QuantError(WorkbenchError, ValueError):
    """A quantization-emulation problem; the message says what is wrong and how to fix it."""


class CalibSetError(WorkbenchError, ValueError):
    """A quantization calibration set cannot be built or read; the message names the fix."""


class CompileError(WorkbenchError, RuntimeError):
    """The DFC path cannot run with these inputs; the message names the problem and the fix."""


class BackendUnavailable(WorkbenchError, RuntimeError):
    """A backend that was asked for explicitly cannot run here; the message says why and what to do."""


# ---- non-finite numbers: never a metric, always an error naming where they came from ------------
class NonFiniteModel(WorkbenchError, ValueError):
    """A model whose weights or outputs hold NaN/inf; the message names the tensors."""


class NonFiniteOutput(WorkbenchError, RuntimeError):
    """A backend produced NaN or inf; no metric is computed from such outputs."""


# ---- runs ---------------------------------------------------------------------------------------
class RunError(WorkbenchError, RuntimeError):
    """A run directory problem: missing artifact, unknown run, or an attempt to overwrite."""


class CompareError(WorkbenchError, ValueError):
    """Runs that cannot be compared (unknown, fewer than two, nothing in common)."""


class SweepError(WorkbenchError, ValueError):
    """A sweep file that cannot be run; the message names the key and the fix."""


class StageFailed(WorkbenchError, RuntimeError):
    """A stage's notebook raised; the run directory keeps the partial notebook and the manifest says so."""

    def __init__(self, run_id: str, run_path: str, stage: str, message: str):
        super().__init__(
            f"stage {stage} failed in run {run_id}: {message}\n"
            f"  partial notebook: {run_path}/notebooks/{stage}.ipynb\n"
            f"  manifest:         {run_path}/manifest.json"
        )
        self.run_id = run_id
        self.run_path = run_path
        self.stage = stage


class RunInterrupted(WorkbenchError, RuntimeError):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) ended a run; the manifest records status ``interrupted``."""

    def __init__(self, run_id: str, run_path: str, stage: str, signal_name: str):
        again = (
            f"python -m workbench run -f {run_path}/params.yaml"
            if stage.startswith("01")
            else f"python -m workbench run --from {stage[:2]} --parent {run_id}"
        )
        super().__init__(
            f"run {run_id} interrupted by {signal_name} during stage {stage}; its manifest "
            f"says 'interrupted'. Run it again with: {again}"
        )
        self.run_id = run_id
        self.run_path = run_path
        self.stage = stage
        self.signal_name = signal_name


# ---- deploy -------------------------------------------------------------------------------------
class BundleError(WorkbenchError, ValueError):
    """A deploy bundle that cannot be built or trusted (missing, changed or unlisted file); names the fix."""


class InferenceInputError(WorkbenchError, ValueError):
    """Windows sent to the inference service that cannot be served; ``kind`` names the problem (shape,
    dtype, not_finite, empty, too_many, ...) for the HTTP status and the error metrics."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

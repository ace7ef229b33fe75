"""workbench.evaluate: every backend on the test split through one interface, the same metrics for
all of them, and end-to-end latency against the project's targets (stage 07)."""

from workbench.evaluate.backends import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    EvalContext,
    EvalData,
    availability_table,
    evaluate_backend,
    load_test_data,
    select_backends,
)
from workbench.evaluate.latency import LatencyStats, latency_table, measure_backend, target_table
from workbench.evaluate.metrics import (
    BackendResult,
    accuracy,
    backend_table,
    code_agreement,
    confusion_matrix,
    level_agreement,
    load_predictions,
    macro_f1,
    per_subject_accuracy,
    per_subject_table,
    prediction_flips,
)

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendUnavailable",
    "EvalContext",
    "EvalData",
    "availability_table",
    "evaluate_backend",
    "load_test_data",
    "select_backends",
    "LatencyStats",
    "latency_table",
    "measure_backend",
    "target_table",
    "BackendResult",
    "accuracy",
    "backend_table",
    "code_agreement",
    "confusion_matrix",
    "level_agreement",
    "load_predictions",
    "macro_f1",
    "per_subject_accuracy",
    "per_subject_table",
    "prediction_flips",
]

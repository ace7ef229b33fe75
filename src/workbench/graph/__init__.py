"""workbench.graph: ONNX export with proven parity, graph inspection, the split at the FSQ Round,
and the numpy host post-processor that runs next to the NPU."""
from .export import (
    BACKEND_ORT,
    BACKEND_TORCH,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    ParityError,
    check_and_infer,
    check_parity,
    export_onnx,
    heldout_windows,
    ort_session,
    simplify_onnx,
    verify_inference_graph,
)
from .host import HostError, HostPostprocessor, compare_with_host_onnx, ulp_distance
from .inspect import (
    compat_summary,
    hailo_compatibility,
    load_hailo_ops,
    macs_per_layer,
    node_table,
    op_histogram,
    parameter_count,
)
from .split import CUT_KINDS, SplitError, find_cut, host_onnx_outputs, prove_recomposition, split_model

__all__ = [
    "BACKEND_ORT", "BACKEND_TORCH", "INPUT_NAME", "OUTPUT_NAME", "ExportError", "ParityError",
    "check_and_infer", "check_parity", "export_onnx", "heldout_windows", "ort_session", "simplify_onnx",
    "verify_inference_graph", "HostError", "HostPostprocessor", "compare_with_host_onnx", "ulp_distance",
    "compat_summary", "hailo_compatibility", "load_hailo_ops", "macs_per_layer", "node_table",
    "op_histogram", "parameter_count", "CUT_KINDS", "SplitError", "find_cut", "host_onnx_outputs",
    "prove_recomposition", "split_model",
]
